"""The Crafter score (Hafner 2021, "Benchmarking the Spectrum of Agent Capabilities", Sec. 3).

* Success rate ``s_i`` of achievement ``i``: the percentage of *all training episodes* of a run
  in which it was unlocked at least once (Crafter's ``info["achievements"]`` count >= 1 at the
  episode's end).
* Crafter score: the geometric mean with an offset of 1 over the 22 achievements,
  ``S = exp(mean_i ln(1 + s_i)) - 1`` (in percent), so that a rare achievement counts more than
  a common one. It is computed per run (seed), then averaged over seeds, as the crafter
  repository's ``analysis/`` scripts do.

Published scores (DreamerV3 14.5 +- 1.6 at 1M env steps, the Crafter paper's baselines, human
experts) ship in ``crafter_published.json`` with their sources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from distwm.envs.crafter_env import CRAFTER_ACHIEVEMENTS

__all__ = [
    "CRAFTER_ACHIEVEMENTS",
    "PUBLISHED_PATH",
    "unlocked_achievements",
    "success_rates",
    "success_rates_from_counts",
    "crafter_score",
    "load_published_crafter_scores",
    "crafter_report",
    "crafter_markdown",
]

PUBLISHED_PATH = Path(__file__).with_name("crafter_published.json")


def unlocked_achievements(episode: Mapping[str, Any] | Iterable[str]) -> set[str]:
    """The achievements an episode unlocked: ``{name: count}`` (count >= 1) or the names."""
    if isinstance(episode, Mapping):
        return {str(name) for name, count in episode.items() if float(count) >= 1}
    if isinstance(episode, str):
        raise ValueError(f"an episode is a {{name: count}} mapping or a collection of names, got {episode!r}")
    return {str(name) for name in episode}


def success_rates_from_counts(unlocked_episodes: Mapping[str, int], episodes: int,
                              achievements: Sequence[str] | None = CRAFTER_ACHIEVEMENTS) -> dict[str, float]:
    """``{achievement: percent}`` from how many of ``episodes`` unlocked each achievement.
    ``achievements`` lists every name (those missing from the counts were never unlocked);
    ``None``: the names of ``unlocked_episodes``. A name outside ``achievements`` raises."""
    episodes = int(episodes)
    if episodes < 1:
        raise ValueError(f"success rates need at least one episode, got {episodes}")
    names = list(unlocked_episodes) if achievements is None else list(achievements)
    unknown = sorted(set(unlocked_episodes) - set(names))
    if unknown:
        raise ValueError(f"unknown achievements {unknown}; valid: {', '.join(names)}")
    out = {}
    for name in names:
        count = int(unlocked_episodes.get(name, 0))
        if not 0 <= count <= episodes:
            raise ValueError(f"achievement {name!r} unlocked in {count} of {episodes} episodes")
        out[name] = 100.0 * count / episodes
    return out


def success_rates(episodes: Iterable[Mapping[str, Any] | Iterable[str]],
                  achievements: Sequence[str] | None = CRAFTER_ACHIEVEMENTS) -> dict[str, float]:
    """``{achievement: percent of episodes that unlocked it}`` over per-episode achievements
    (``{name: count}`` as in Crafter's ``info["achievements"]``, or the names unlocked)."""
    counts: dict[str, int] = {}
    total = 0
    for episode in episodes:
        total += 1
        for name in unlocked_achievements(episode):
            counts[name] = counts.get(name, 0) + 1
    return success_rates_from_counts(counts, total, achievements)


def crafter_score(rates: Mapping[str, float]) -> float:
    """``exp(mean_i ln(1 + s_i)) - 1`` over the 22 Crafter achievements (percent in, percent out)."""
    missing = sorted(set(CRAFTER_ACHIEVEMENTS) - set(rates))
    unknown = sorted(set(rates) - set(CRAFTER_ACHIEVEMENTS))
    if missing or unknown:
        raise ValueError(f"the Crafter score needs the success rate of each of the 22 achievements "
                         f"{list(CRAFTER_ACHIEVEMENTS)}; missing {missing}, unknown {unknown}")
    values = np.array([float(rates[name]) for name in CRAFTER_ACHIEVEMENTS])
    if not np.all((values >= 0) & (values <= 100)):
        bad = {n: float(v) for n, v in zip(CRAFTER_ACHIEVEMENTS, values) if not 0 <= v <= 100}
        raise ValueError(f"success rates are percentages in [0, 100], got {bad}")
    return float(np.exp(np.mean(np.log1p(values))) - 1.0)


def load_published_crafter_scores(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """``{agent: {"score", "score_std", "reward", "reward_std", "source"}}`` of
    ``crafter_published.json`` (scores at 1M env steps)."""
    with open(PUBLISHED_PATH if path is None else path, encoding="utf-8") as f:
        return json.load(f)["agents"]


def crafter_report(runs: Sequence[Mapping[str, Any]], num_samples: int = 2000, alpha: float = 0.05,
                   seed: int | None = 0, published: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> dict[str, Any]:
    """Crafter scores of ``runs`` (``{"agent", "seed", "episodes", "success_rates"}``, optionally
    ``"env_steps"``): each run's score, and per agent the mean, std over seeds and a ``1 - alpha``
    bootstrap CI of the mean, and the mean success rate of each achievement; ``published``
    (default: the shipped table) beside them."""
    from distwm.benchmarks.metrics import bootstrap_ci

    if not runs:
        raise ValueError("no run with achievement success rates to score")
    scored = [{**dict(run), "score": crafter_score(run["success_rates"])} for run in runs]
    agents: dict[str, Any] = {}
    for agent in sorted({str(r["agent"]) for r in scored}):
        mine = [r for r in scored if str(r["agent"]) == agent]
        scores = np.array([r["score"] for r in mine])
        lower, upper = bootstrap_ci(scores.tolist(), num_samples, alpha, seed)
        agents[agent] = {
            "scores": scores.tolist(), "num_seeds": len(mine), "mean": float(scores.mean()),
            "std": float(scores.std()), "ci_lower": float(lower), "ci_upper": float(upper),
            "episodes": int(sum(int(r["episodes"]) for r in mine)),
            "success_rates": {n: float(np.mean([r["success_rates"][n] for r in mine]))
                              for n in CRAFTER_ACHIEVEMENTS},
        }
    return {"kind": "crafter_report", "alpha": alpha, "num_samples": num_samples, "seed": seed,
            "runs": scored, "agents": agents,
            "published": dict(load_published_crafter_scores() if published is None else published)}


def _steps(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def crafter_markdown(report: Mapping[str, Any]) -> str:
    """The report's Crafter section: scores beside the published ones, runs, success rates."""
    level = round(100 * (1 - report["alpha"]))
    lines = [
        "## Crafter score", "",
        "Crafter score = exp(mean ln(1 + s_i)) - 1 over the 22 achievements, s_i the percentage of "
        "a run's training episodes that unlocked achievement i (Hafner 2021); per run, then the "
        f"mean and std over seeds with a {level}% bootstrap CI of the mean. Published scores: "
        "mean and std over seeds, the agents' at 1M env steps (human experts: no training; "
        "`distwm/benchmarks/crafter_published.json` names each source).", "",
        f"| Agent | Seeds | Crafter score (%) | std | {level}% CI |", "|---|---|---|---|---|",
    ]
    for agent, data in report["agents"].items():
        lines.append(f"| {agent} | {data['num_seeds']} | {data['mean']:.2f} | {data['std']:.2f} | "
                     f"[{data['ci_lower']:.2f}, {data['ci_upper']:.2f}] |")
    for agent, data in report["published"].items():
        lines.append(f"| {agent} (published) | - | {data['score']:.1f} | "
                     f"{data['score_std']:.1f} | - |")
    lines += ["", "| Agent | Seed | Env steps | Episodes | Crafter score (%) |", "|---|---|---|---|---|"]
    for run in report["runs"]:
        lines.append(f"| {run['agent']} | {run['seed']} | {_steps(run.get('env_steps'))} | "
                     f"{int(run['episodes']):,} | {run['score']:.2f} |")
    agents = list(report["agents"])
    lines += ["", "Success rates (% of training episodes, mean over seeds):", "",
              "| Achievement | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    for name in CRAFTER_ACHIEVEMENTS:
        lines.append(f"| {name} | " + " | ".join(f"{report['agents'][a]['success_rates'][name]:.1f}"
                                                  for a in agents) + " |")
    return "\n".join(lines + [""])
