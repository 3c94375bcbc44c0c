"""Extract the documented API (modules, classes, functions, methods, parameter names) from the
seed's API reference text into ``tests/fixtures/seed_api.json``.

Usage: ``python scripts/extract_seed_api.py [SEED_TEXT ...] [--out PATH]``; with no text given,
every ``*.txt`` in ``../shared/seed`` beside the checkout is read. The test
``tests/test_seed_signatures.py`` walks the JSON this writes, so CI needs no seed folder.

An entry is ``{"qualname": "distwm.x.Y.method", "kind": "class|function|method",
"params": ["a", "b", ...]}``; ``world_models.X`` becomes ``distwm.X`` and ``torchwm`` becomes
``distwm`` (the project's naming rule). ``self`` and ``*``/``/`` markers are not parameters.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SEED_DIR = ROOT.parent / "shared" / "seed"
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "seed_api.json"

_TOP = re.compile(r"^(class |async )?((?:world_models|torchwm)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
                  r"(\((?P<params>.*)\))?(\[source\])?#\s*$")
_MEMBER = re.compile(r"^(async |classmethod |static |property )*(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                     r"\((?P<params>.*)\)(\[source\])?#\s*$")


def rename(dotted: str) -> str:
    """``world_models.X`` -> ``distwm.X``; ``torchwm`` -> ``distwm``."""
    for old in ("world_models", "torchwm"):
        if dotted == old or dotted.startswith(old + "."):
            return "distwm" + dotted[len(old):]
    return dotted


def split_params(text: str) -> list[str]:
    """Parameter names of a documented signature (defaults and annotations dropped)."""
    names, depth, current = [], 0, ""
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            names.append(current)
            current = ""
        else:
            current += char
    names.append(current)
    out = []
    for part in names:
        name = part.split("=", 1)[0].split(":", 1)[0].strip().lstrip("*")
        if name and name not in ("self", "cls", "/") and name.isidentifier():
            out.append(name)
    return out


def extract(text: str) -> list[dict]:
    entries: list[dict] = []
    current_class: str | None = None
    for line in text.splitlines():
        top = _TOP.match(line)
        if top:
            qualname = rename(top.group(2))
            is_class = bool(top.group(1) and top.group(1).startswith("class"))
            params = split_params(top.group("params")) if top.group("params") is not None else None
            kind = "class" if is_class else ("function" if params is not None else "attribute")
            entries.append({"qualname": qualname, "kind": kind, "params": params})
            current_class = qualname if is_class else None
            continue
        member = _MEMBER.match(line)
        if member and current_class is not None:
            entries.append({"qualname": f"{current_class}.{member.group('name')}",
                            "kind": "method", "params": split_params(member.group("params"))})
    unique: dict[str, dict] = {}
    for entry in entries:
        unique.setdefault(entry["qualname"], entry)
    return list(unique.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    texts = args.texts or sorted(DEFAULT_SEED_DIR.glob("*.txt"))
    if not texts:
        parser.error(f"no seed text given and none found in {DEFAULT_SEED_DIR}")
    entries = []
    for path in texts:
        entries.extend(extract(path.read_text(encoding="utf-8")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    print(f"{len(entries)} documented names -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
