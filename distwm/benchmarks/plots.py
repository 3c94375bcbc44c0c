"""Report plots (PNG, matplotlib's Agg renderer, no pyplot global state)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

__all__ = ["plot_performance_profiles", "plot_aggregate_intervals"]

METRIC_TITLES = {"iqm": "IQM", "median": "Median", "mean": "Mean",
                 "optimality_gap": "Optimality gap"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # a bare Figure renders with Agg

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_performance_profiles(profiles: Mapping[str, Mapping[str, Any]], path: str,
                              xlabel: str = "normalised score (tau)") -> str:
    """One curve per agent: fraction of runs with score > tau, with its CI band."""
    if not profiles:
        raise ValueError("no performance profiles to plot")
    fig = _figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    for agent, prof in profiles.items():
        line, = ax.plot(prof["taus"], prof["profile"], label=str(agent))
        ax.fill_between(prof["taus"], prof["ci_lower"], prof["ci_upper"],
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_aggregate_intervals(aggregates: Mapping[str, Mapping[str, Any]], path: str,
                             metrics: Sequence[str] = ("iqm", "median", "mean", "optimality_gap"),
                             xlabel: str = "normalised score") -> str:
    """One panel per metric: each agent's point estimate and CI as a horizontal bar."""
    if not aggregates:
        raise ValueError("no aggregates to plot")
    agents = list(aggregates)
    fig = _figure(3.2 * len(metrics), 0.6 * len(agents) + 1.4)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for j, agent in enumerate(agents):
            stats = aggregates[agent][metric]
            lo, hi = stats["ci_lower"], stats["ci_upper"]
            ax.barh(j, hi - lo, left=lo, height=0.6, alpha=0.6)
            ax.plot([stats["estimate"]] * 2, [j - 0.3, j + 0.3], color="black")
        ax.set_yticks(range(len(agents)))
        ax.set_yticklabels(agents if i == 0 else [""] * len(agents))
        ax.set_title(METRIC_TITLES.get(metric, metric))
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
