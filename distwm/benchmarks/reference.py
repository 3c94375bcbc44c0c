"""Published reference results, read at run time from the shared reference folder.

The folder (``../shared/reference`` beside a distwm checkout) holds

* ``atari100k/{AGENT}.json``: ``{"Game": [run0, run1, ...]}`` final Atari 100k scores of
  published agents (IRIS, DIAMOND, TWM, SPR, ...) and of HUMAN and RANDOM play;
* ``dreamerv3_curves/{suite}-dreamerv3.json.gz``: DreamerV3 training curves, a list of
  ``{"task", "method", "seed", "xs", "ys"}``.

Nothing here is copied into the package. The folder is found from, in order: the
``reference_dir`` argument, the ``DISTWM_REFERENCE_DIR`` environment variable,
``<checkout>/../shared/reference`` and ``./../shared/reference``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "REFERENCE_ENV_VAR",
    "resolve_reference_dir",
    "list_published_agents",
    "load_published_scores",
    "list_published_curve_suites",
    "load_published_curves",
    "curve_final_scores",
]

REFERENCE_ENV_VAR = "DISTWM_REFERENCE_DIR"
ATARI100K = "atari100k"
CURVES_DIR = "dreamerv3_curves"


def _candidates(reference_dir: str | os.PathLike | None) -> list[Path]:
    if reference_dir is not None:
        return [Path(reference_dir)]
    out = []
    if os.environ.get(REFERENCE_ENV_VAR):
        out.append(Path(os.environ[REFERENCE_ENV_VAR]))
    out.append(Path(__file__).resolve().parents[2].parent / "shared" / "reference")
    out.append(Path.cwd().parent / "shared" / "reference")
    return out


def resolve_reference_dir(reference_dir: str | os.PathLike | None = None) -> Path:
    """The reference folder; ``FileNotFoundError`` naming every path tried when none exists."""
    tried = _candidates(reference_dir)
    for path in tried:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "published reference results not found; tried: "
        + ", ".join(str(p) for p in tried)
        + f". Pass reference_dir=... or set {REFERENCE_ENV_VAR} to the folder that holds "
        f"'{ATARI100K}/' and '{CURVES_DIR}/'."
    )


def list_published_agents(suite: str = ATARI100K, reference_dir=None) -> list[str]:
    """Agents with published final scores for ``suite`` (file stems, e.g. ``IRIS``)."""
    folder = resolve_reference_dir(reference_dir) / suite
    if not folder.is_dir():
        raise FileNotFoundError(f"no published results for suite {suite!r}: {folder} is missing")
    return sorted(p.stem for p in folder.glob("*.json"))


def load_published_scores(agent: str, suite: str = ATARI100K,
                          reference_dir=None) -> dict[str, list[float]]:
    """Raw published scores ``{game: [run scores]}`` of ``agent`` (case-insensitive name)."""
    agents = list_published_agents(suite, reference_dir)
    match = {a.lower(): a for a in agents}.get(agent.lower())
    if match is None:
        raise ValueError(f"no published {suite} results for agent {agent!r}; available: {agents}")
    path = resolve_reference_dir(reference_dir) / suite / f"{match}.json"
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {str(game): [float(v) for v in runs] for game, runs in data.items()}


def list_published_curve_suites(reference_dir=None) -> list[str]:
    """Suites with published DreamerV3 curves (e.g. ``atari100k``, ``dmc_proprio``)."""
    folder = resolve_reference_dir(reference_dir) / CURVES_DIR
    return sorted(p.name.split("-")[0] for p in folder.glob("*.json.gz"))


def load_published_curves(suite: str, method: str = "dreamerv3",
                          reference_dir=None) -> list[dict[str, Any]]:
    """Curves ``[{"task", "method", "seed", "xs", "ys"}]`` with ``xs``/``ys`` as float lists."""
    path = resolve_reference_dir(reference_dir) / CURVES_DIR / f"{suite}-{method}.json.gz"
    if not path.is_file():
        available = list_published_curve_suites(reference_dir)
        raise ValueError(f"no published {method} curves for suite {suite!r} ({path} is missing); "
                         f"available suites: {available}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = json.load(f)
    out = []
    for rec in records:
        rec = dict(rec)
        for key in ("xs", "ys"):
            value = json.loads(rec[key]) if isinstance(rec[key], str) else rec[key]
            rec[key] = [float(v) for v in value]
        out.append(rec)
    return out


def curve_final_scores(curves: list[dict[str, Any]], budget: float | None = None,
                       window: int = 1) -> dict[str, list[float]]:
    """``{task: [score per seed]}``: the mean of the last ``window`` points at or before
    ``budget`` env steps (all points when ``budget`` is None) of every curve."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    out: dict[str, list[float]] = {}
    for rec in curves:
        ys = [y for x, y in zip(rec["xs"], rec["ys"]) if budget is None or x <= budget]
        if not ys:
            raise ValueError(
                f"curve {rec['task']!r} seed {rec.get('seed')} has no point at or before "
                f"budget {budget}"
            )
        tail = ys[-window:]
        out.setdefault(str(rec["task"]), []).append(sum(tail) / len(tail))
    return out
