"""Every class, function and method the seed documents resolves in distwm with the documented
parameter names (``world_models.X`` is ``distwm.X``, ``torchwm`` is ``distwm``).

The documented names come from ``tests/fixtures/seed_api.json``, which
``scripts/extract_seed_api.py`` writes from the seed's API reference; when the seed text is
beside the checkout (``../shared/seed``), the fixture must match a fresh extraction.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "seed_api.json"
ENTRIES = json.loads(FIXTURE.read_text(encoding="utf-8"))


def _owner(entry: dict) -> str:
    """The module or class an entry is documented under (methods go with their class)."""
    parts = entry["qualname"].split(".")
    return ".".join(parts[:-2] if entry["kind"] == "method" else parts[:-1])


GROUPS: dict[str, list[dict]] = defaultdict(list)
for _entry in ENTRIES:
    GROUPS[_owner(_entry)].append(_entry)


def resolve(qualname: str):
    """The object ``qualname`` names: the longest importable module prefix, then attributes."""
    parts = qualname.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):  # that prefix is not a module
                continue
            raise  # the module exists but a dependency of it is missing
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module of {qualname!r} can be imported")


def problems(entry: dict) -> list[str]:
    """What is missing of one documented name: the name itself, or parameters."""
    try:
        obj = resolve(entry["qualname"])
    except (AttributeError, ImportError) as exc:
        return [f"{entry['qualname']}: missing ({exc})"]
    if entry["params"] is None:
        return []
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError) as exc:
        return [f"{entry['qualname']}: no inspectable signature ({exc})"]
    accepted = set(signature.parameters)
    aliases = getattr(obj, "aliases", None)  # a config's old field names are accepted too
    if inspect.isclass(obj) and callable(aliases):
        accepted |= set(aliases())
    lacking = [p for p in entry["params"] if p not in accepted]
    if lacking:
        return [f"{entry['qualname']}: lacks documented parameter(s) {lacking}; it takes "
                f"{sorted(signature.parameters)}"]
    return []


def test_the_fixture_has_the_seeds_names():
    kinds = {e["kind"] for e in ENTRIES}
    assert len(ENTRIES) > 800 and {"class", "function", "method"} <= kinds
    assert all(e["qualname"].startswith("distwm") for e in ENTRIES)


def test_the_fixture_matches_the_seed_text_when_it_is_here():
    seed_dir = ROOT.parent / "shared" / "seed"
    texts = sorted(seed_dir.glob("*.txt"))
    if not texts:
        pytest.skip(f"no seed text in {seed_dir} (the fixture is checked where it is)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("extract_seed_api", ROOT / "scripts" / "extract_seed_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = []
    for path in texts:
        fresh.extend(module.extract(path.read_text(encoding="utf-8")))
    assert fresh == ENTRIES, "tests/fixtures/seed_api.json is stale: run scripts/extract_seed_api.py"


test_the_fixture_matches_the_seed_text_when_it_is_here = pytest.mark.skip_ok_in_ci(
    test_the_fixture_matches_the_seed_text_when_it_is_here)


@pytest.mark.parametrize("owner", sorted(GROUPS))
def test_documented_names_resolve_with_their_parameters(owner):
    found = [p for entry in GROUPS[owner] for p in problems(entry)]
    assert not found, "\n".join(found)


def test_the_walker_fails_on_a_missing_name_or_parameter():
    assert problems({"qualname": "distwm.utils.utils.no_such_helper", "kind": "function", "params": []})
    assert problems({"qualname": "distwm.create_model", "kind": "function", "params": ["no_such_param"]})
    assert problems({"qualname": "distwm.no_such_module.Thing", "kind": "class", "params": []})
    assert not problems({"qualname": "distwm.create_model", "kind": "function", "params": ["model"]})
