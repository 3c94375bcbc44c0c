"""Score normalisation: human-normalised Atari, return / 1000 for DeepMind Control.

* Atari: ``(score - random) / (human - random)`` with the per-game HUMAN and RANDOM scores of
  the Atari 100k reference (26 games). They ship as ``atari_human_random.json``, a table derived
  from ``shared/reference/atari100k/{HUMAN,RANDOM}.json`` (regenerate it with
  ``python -m distwm.benchmarks.normalization REFERENCE_DIR``).
* DeepMind Control: ``return / 1000`` (episodes of 1000 steps with rewards in [0, 1]).

Task names are recognised in the usual spellings: ``ALE/Pong-v5``, ``PongNoFrameskip-v4``,
``pong``, ``atari_pong``, ``MsPacman`` / ``ms_pacman``; ``walker-walk``, ``walker_walk``,
``dmc_walker_walk``, ``ball_in_cup-catch``.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

__all__ = [
    "SUITES",
    "DMC_DOMAINS",
    "atari_human_random",
    "canonical_atari_game",
    "canonical_dmc_task",
    "infer_suite",
    "canonical_task",
    "normalize_score",
    "normalize_scores",
    "derive_atari_table",
]

SUITES = ("atari", "dmc")
TABLE_PATH = Path(__file__).with_name("atari_human_random.json")
DMC_DOMAINS = (
    "acrobot", "ball_in_cup", "cartpole", "cheetah", "dog", "finger", "fish", "hopper",
    "humanoid", "humanoid_CMU", "lqr", "manipulator", "pendulum", "point_mass", "quadruped",
    "reacher", "stacker", "swimmer", "walker",
)
_DMC_ALIASES = {"cup": "ball_in_cup"}
DMC_MAX_RETURN = 1000.0


@functools.lru_cache(maxsize=1)
def atari_human_random() -> dict[str, tuple[float, float]]:
    """``{Game: (random, human)}`` for the 26 Atari 100k games."""
    with open(TABLE_PATH, encoding="utf-8") as f:
        games = json.load(f)["games"]
    return {g: (float(v["random"]), float(v["human"])) for g, v in games.items()}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_atari_game(task: str) -> str | None:
    """``ALE/MsPacman-v5`` -> ``MsPacman``; None when it is not one of the table's games."""
    name = str(task)
    name = re.sub(r"^(ALE/|atari[_-])", "", name, flags=re.IGNORECASE)
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    return {_squash(g): g for g in atari_human_random()}.get(_squash(name))


def canonical_dmc_task(task: str) -> str | None:
    """``dmc_ball_in_cup_catch`` / ``walker_walk`` -> ``ball_in_cup-catch`` / ``walker-walk``."""
    name = re.sub(r"^dmc[_-]", "", str(task), flags=re.IGNORECASE).replace("-", "_")
    for alias, domain in _DMC_ALIASES.items():
        if name.startswith(alias + "_"):
            name = domain + name[len(alias):]
    for domain in sorted(DMC_DOMAINS, key=len, reverse=True):
        if name.startswith(domain + "_") and len(name) > len(domain) + 1:
            return f"{domain}-{name[len(domain) + 1:]}"
    return None


def infer_suite(task: str) -> str:
    """``'atari'`` or ``'dmc'``; ``ValueError`` naming the task when neither knows it."""
    if canonical_atari_game(task) is not None:
        return "atari"
    if canonical_dmc_task(task) is not None:
        return "dmc"
    raise ValueError(
        f"cannot normalise task {task!r}: it is neither one of the Atari 100k games "
        f"{sorted(atari_human_random())} nor a DeepMind Control 'domain-task' id "
        f"(domains: {list(DMC_DOMAINS)})"
    )


def _check_suite(suite: str | None, task: str) -> str:
    if suite is None:
        return infer_suite(task)
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {SUITES}")
    return suite


def canonical_task(task: str, suite: str | None = None) -> str:
    """The canonical name of ``task`` in ``suite`` (inferred when None)."""
    suite = _check_suite(suite, task)
    name = canonical_atari_game(task) if suite == "atari" else canonical_dmc_task(task)
    if name is None:
        if suite == "atari":
            raise ValueError(f"{task!r} is not an Atari 100k game; known: {sorted(atari_human_random())}")
        raise ValueError(f"{task!r} is not a DeepMind Control 'domain-task' id; domains: "
                         f"{list(DMC_DOMAINS)}")
    return name


def normalize_score(task: str, score, suite: str | None = None):
    """Normalise one score or an array of scores of ``task``."""
    suite = _check_suite(suite, task)
    name = canonical_task(task, suite)
    arr = np.asarray(score, dtype=np.float64)
    if suite == "atari":
        random, human = atari_human_random()[name]
        out = (arr - random) / (human - random)
    else:
        out = arr / DMC_MAX_RETURN
    return float(out) if out.ndim == 0 else out


def normalize_scores(scores: Mapping[str, Iterable[float]],
                     suite: str | None = None) -> dict[str, list[float]]:
    """``{task: runs}`` raw -> ``{canonical task: normalised runs}``."""
    out: dict[str, list[float]] = {}
    for task, runs in scores.items():
        name = canonical_task(task, _check_suite(suite, task))
        if name in out:
            raise ValueError(f"tasks {task!r} and another spelling both map to {name!r}")
        out[name] = np.atleast_1d(normalize_score(task, list(runs), suite)).tolist()
    return out


def derive_atari_table(reference_dir=None) -> dict:
    """Rebuild the shipped table from ``{reference_dir}/atari100k/{HUMAN,RANDOM}.json``."""
    from distwm.benchmarks.reference import load_published_scores

    human = load_published_scores("HUMAN", reference_dir=reference_dir)
    random = load_published_scores("RANDOM", reference_dir=reference_dir)
    if set(human) != set(random):
        raise ValueError(f"HUMAN and RANDOM games differ: {sorted(set(human) ^ set(random))}")
    return {
        "_source": json.load(open(TABLE_PATH, encoding="utf-8"))["_source"],
        "games": {g: {"random": float(np.mean(random[g])), "human": float(np.mean(human[g]))}
                  for g in sorted(human)},
    }


if __name__ == "__main__":  # python -m distwm.benchmarks.normalization [REFERENCE_DIR]
    table = derive_atari_table(sys.argv[1] if len(sys.argv) > 1 else None)
    TABLE_PATH.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {TABLE_PATH} ({len(table['games'])} games)")
