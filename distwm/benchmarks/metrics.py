"""Benchmark statistics: IQM, median, mean, optimality gap, probability of improvement and
performance profiles, each with a stratified-bootstrap confidence interval.

Definitions follow rliable (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice",
NeurIPS 2021):

* **IQM** (interquartile mean) is the 25% trimmed mean of all runs of all tasks pooled,
  ``scipy.stats.trim_mean(scores, 0.25, axis=None)``: with N pooled scores, the lowest and the
  highest ``floor(N / 4)`` are dropped and the remaining middle half averaged.
* **median** and **mean** are taken over the per-task mean scores;
* **optimality gap** is ``1 - mean(min(score, 1))`` (task-averaged);
* **probability of improvement** ``P(X > Y)`` is, per task, the probability that a random run
  of X beats a random run of Y (ties count one half, i.e. the Mann-Whitney U statistic divided
  by ``n * m``), averaged over tasks;
* a **performance profile** gives, for each threshold tau, the fraction of runs scoring above
  tau (averaged over tasks).

Confidence intervals are percentile intervals of a **stratified bootstrap** (runs resampled
within each task), seeded by ``seed`` and therefore reproducible. Scores are
``{task: [run scores]}`` mappings (see :func:`distwm.benchmarks.bootstrap.as_per_task`); a
plain list of values is one task.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from distwm.benchmarks.aggregates import AGGREGATES, get_aggregate, iqm
from distwm.benchmarks.bootstrap import as_per_task, check_alpha, interval_estimate

__all__ = [
    "iqm_of_array",
    "bootstrap_ci",
    "bootstrap_iqm_ci",
    "compute_aggregate_metrics",
    "compute_suite_metrics",
    "probability_of_improvement",
    "performance_profile",
    "DEFAULT_METRICS",
    "AGGREGATES",
]

DEFAULT_METRICS = ("iqm", "median", "mean", "optimality_gap")


def iqm_of_array(values: Iterable[float]) -> float:
    """Interquartile mean of ``values``: ``scipy.stats.trim_mean(values, 0.25)``.

    The lowest and highest ``floor(N / 4)`` values are dropped and the middle half averaged
    (rliable's definition; with ``N`` divisible by 4 this is the mean of the values between the
    25th and 75th percentiles). Empty input raises ``ValueError``.
    """
    _, arrays = as_per_task(np.asarray(list(values), dtype=np.float64).reshape(-1))
    return float(iqm(arrays))


def _ci(values: Any, statistic: str, num_samples: int, alpha: float, seed: int | None
        ) -> tuple[float, float]:
    _, arrays = as_per_task(values if isinstance(values, Mapping)
                            else np.asarray(list(values), dtype=np.float64).reshape(-1))
    result = interval_estimate([arrays], get_aggregate(statistic), num_samples, alpha, seed)
    return result["ci_lower"], result["ci_upper"]


def bootstrap_ci(values, num_samples: int = 1000, alpha: float = 0.05,
                 seed: int | None = 0) -> tuple[float, float]:
    """``1 - alpha`` bootstrap CI of the mean, as ``(lower, upper)``.

    ``values`` is a list of run scores (plain bootstrap) or ``{task: runs}`` (stratified
    bootstrap of the task-averaged mean). Seeded by ``seed``.
    """
    return _ci(values, "mean", num_samples, alpha, seed)


def bootstrap_iqm_ci(values, num_samples: int = 1000, alpha: float = 0.05,
                     seed: int | None = 0) -> tuple[float, float]:
    """``1 - alpha`` bootstrap CI of the IQM, as ``(lower, upper)`` (stratified for a mapping)."""
    return _ci(values, "iqm", num_samples, alpha, seed)


def compute_aggregate_metrics(per_seed_means: Iterable[float], num_samples: int = 1000,
                              alpha: float = 0.05, seed: int | None = 0) -> dict[str, Any]:
    """Aggregate one agent's per-seed mean returns on one task.

    Returns ``{"mean", "median", "iqm", "std", "min", "max", "num_seeds", "mean_ci",
    "iqm_ci", "ci_level"}`` where the CIs are ``[lower, upper]`` bootstrap percentile intervals
    (``1 - alpha``, seeded). Empty input raises ``ValueError``: a missing result is never
    reported as a score.
    """
    arr = np.asarray(list(per_seed_means), dtype=np.float64).reshape(-1)
    _, arrays = as_per_task(arr)
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "iqm": float(iqm(arrays)),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "num_seeds": int(arr.size),
        "mean_ci": list(bootstrap_ci(arr, num_samples, alpha, seed)),
        "iqm_ci": list(bootstrap_iqm_ci(arr, num_samples, alpha, seed)),
        "ci_level": 1.0 - alpha,
    }


def compute_suite_metrics(scores, metrics: Sequence[str] = DEFAULT_METRICS,
                          num_samples: int = 2000, alpha: float = 0.05,
                          seed: int | None = 0) -> dict[str, Any]:
    """Aggregate metrics with stratified-bootstrap CIs over a suite of tasks.

    ``scores``: ``{task: runs}`` (normalised scores). Returns ``{metric: {"estimate",
    "ci_lower", "ci_upper"}, ..., "num_tasks", "num_runs"}``.
    """
    names, arrays = as_per_task(scores)
    check_alpha(alpha)
    funcs = [get_aggregate(m) for m in metrics]

    def statistic(per_task):
        return np.stack([np.asarray(f(per_task)) for f in funcs], axis=-1)

    result = interval_estimate([arrays], statistic, num_samples, alpha, seed)
    out: dict[str, Any] = {
        m: {"estimate": result["estimate"][i], "ci_lower": result["ci_lower"][i],
            "ci_upper": result["ci_upper"][i]}
        for i, m in enumerate(metrics)
    }
    out["num_tasks"] = len(names)
    out["num_runs"] = int(sum(a.size for a in arrays))
    return out


def _probability_of_improvement(per_task_x, per_task_y) -> np.ndarray:
    probs = []
    for x, y in zip(per_task_x, per_task_y):
        diff = x[..., :, None] - y[..., None, :]
        probs.append((diff > 0).mean(axis=(-2, -1)) + 0.5 * (diff == 0).mean(axis=(-2, -1)))
    return np.mean(probs, axis=0)


def probability_of_improvement(scores_x, scores_y, num_samples: int = 2000,
                               alpha: float = 0.05, seed: int | None = 0) -> dict[str, float]:
    """``P(X > Y)`` averaged over tasks, with a stratified-bootstrap CI.

    Both ``scores_x`` and ``scores_y`` are ``{task: runs}`` with the same tasks (runs may
    differ). Returns ``{"estimate", "ci_lower", "ci_upper"}``.
    """
    names_x, arrays_x = as_per_task(scores_x)
    names_y, arrays_y = as_per_task(scores_y)
    if set(names_x) != set(names_y):
        raise ValueError(
            f"probability of improvement needs the same tasks for both agents; only in X: "
            f"{sorted(set(names_x) - set(names_y))}, only in Y: {sorted(set(names_y) - set(names_x))}"
        )
    order = {n: i for i, n in enumerate(names_y)}
    arrays_y = [arrays_y[order[n]] for n in names_x]
    return interval_estimate([arrays_x, arrays_y], _probability_of_improvement,
                             num_samples, alpha, seed)


def performance_profile(scores, taus: Sequence[float] | None = None, num_samples: int = 2000,
                        alpha: float = 0.05, seed: int | None = 0) -> dict[str, list[float]]:
    """Score distribution: for each ``tau``, the fraction of runs with score ``> tau``.

    Fractions are computed per task and averaged over tasks (rliable's run-score
    distribution). ``taus`` defaults to 101 points from 0 to the largest score (at least 1).
    Returns ``{"taus", "profile", "ci_lower", "ci_upper"}`` as lists.
    """
    names, arrays = as_per_task(scores)
    if taus is None:
        top = max(1.0, max(float(a.max()) for a in arrays))
        taus = np.linspace(0.0, top, 101)
    taus_arr = np.asarray(taus, dtype=np.float64).reshape(-1)
    if taus_arr.size == 0:
        raise ValueError("taus must hold at least one threshold")

    def statistic(per_task):
        return np.mean([(x[..., :, None] > taus_arr).mean(axis=-2) for x in per_task], axis=0)

    result = interval_estimate([arrays], statistic, num_samples, alpha, seed)
    return {"taus": taus_arr.tolist(), "profile": result["estimate"],
            "ci_lower": result["ci_lower"], "ci_upper": result["ci_upper"]}
