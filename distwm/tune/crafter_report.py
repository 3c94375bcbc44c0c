"""The Crafter section of ``distwm report`` for a sweep with ``suite: crafter``.

Each finished trial's final result carries the success rates of the achievements over all of
its training episodes (``achievement_episodes``, ``achievement_success/<name>``: see
:func:`distwm.tune.trainable.achievement_metrics`). From them the section gives each trial's
Crafter score, per agent the mean and std over seeds with a bootstrap CI, the mean success
rates, and the published Crafter scores beside (:mod:`distwm.benchmarks.crafter_score`); the
numbers are also written to ``crafter_score.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from distwm.tune.trainable import ACHIEVEMENT_EPISODES_KEY, ACHIEVEMENT_SUCCESS_PREFIX

__all__ = ["trial_success_rates", "load_crafter_runs", "crafter_section"]


def trial_success_rates(result: Mapping[str, Any]) -> tuple[int, dict[str, float]] | None:
    """``(episodes, {achievement: percent})`` of a trial's final result; ``None`` without."""
    episodes = result.get(ACHIEVEMENT_EPISODES_KEY)
    if not episodes:
        return None
    rates = {key[len(ACHIEVEMENT_SUCCESS_PREFIX):]: float(value) for key, value in result.items()
             if key.startswith(ACHIEVEMENT_SUCCESS_PREFIX)}
    return int(episodes), rates


def load_crafter_runs(outcomes: Sequence[Any]) -> list[dict[str, Any]]:
    """``[{"agent", "game", "seed", "env_steps", "episodes", "success_rates"}]`` of the finished
    trials (the report's :class:`~distwm.tune.sweep_report.TrialOutcome` s) whose final result
    has achievement success rates."""
    runs = []
    for o in outcomes:
        found = trial_success_rates(o.result) if o.result else None
        if found is not None:
            runs.append({"agent": o.agent, "game": o.game, "seed": o.seed,
                         "env_steps": o.result.get("env_steps"),
                         "episodes": found[0], "success_rates": found[1]})
    return sorted(runs, key=lambda r: (r["agent"], r["game"], r["seed"]))


def crafter_section(outcomes: Sequence[Any], out_dir: str, num_samples: int = 2000, alpha: float = 0.05,
                    seed: int = 0) -> tuple[str, str]:
    """``(markdown, path of crafter_score.json)`` for the sweep's trial ``outcomes`` (with no run
    to score, the JSON has no runs and the markdown says why)."""
    from distwm.benchmarks.crafter_score import (crafter_markdown, crafter_report,
                                                 load_published_crafter_scores)

    runs = load_crafter_runs(outcomes)
    if runs:
        report = crafter_report(runs, num_samples=num_samples, alpha=alpha, seed=seed)
        markdown = crafter_markdown(report)
    else:
        report = {"kind": "crafter_report", "runs": [], "agents": {},
                  "published": load_published_crafter_scores()}
        markdown = ("## Crafter score\n\nNo finished trial recorded achievement success rates (its "
                    "env's info has no `achievements`, or no training episode ended).\n")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "crafter_score.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    return markdown, path
