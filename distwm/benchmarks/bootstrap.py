"""Stratified bootstrap confidence intervals (rliable's ``StratifiedBootstrap``).

Scores are given per task. One bootstrap replicate resamples, *within each task
independently*, as many runs as the task has, with replacement; the statistic is then computed
on the replicate. The confidence interval is the percentile interval of the replicates.
Everything is driven by ``numpy.random.default_rng(seed)``: the same seed gives the same
interval.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "as_per_task",
    "stratified_bootstrap",
    "percentile_interval",
    "interval_estimate",
    "check_alpha",
]

# replicates per chunk; bounds memory for statistics that build (reps, n, m) comparisons
_CHUNK = 256


def check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_num_samples(num_samples: int) -> int:
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    return int(num_samples)


def as_per_task(scores: Any) -> tuple[list[str], list[np.ndarray]]:
    """Normalise scores to ``(task_names, [runs array per task])``.

    ``scores`` is a mapping ``{task: runs}``, a 2-D array ``(num_runs, num_tasks)`` (rliable's
    layout), or a 1-D sequence of runs (one task). Empty tasks and non-finite scores raise
    ``ValueError`` naming the task.
    """
    if isinstance(scores, Mapping):
        names = [str(k) for k in scores]
        arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in scores.values()]
    else:
        arr = np.asarray(scores, dtype=np.float64)
        if arr.ndim == 1:
            names, arrays = ["task"], [arr]
        elif arr.ndim == 2:
            names = [f"task_{i}" for i in range(arr.shape[1])]
            arrays = [arr[:, i] for i in range(arr.shape[1])]
        else:
            raise ValueError(
                f"scores must be a {{task: runs}} mapping, a (runs, tasks) array or a 1-D array, "
                f"got an array of shape {arr.shape}"
            )
    if not arrays:
        raise ValueError("scores are empty: no tasks")
    for name, arr in zip(names, arrays):
        if arr.size == 0:
            raise ValueError(f"task {name!r} has no runs")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"task {name!r} has non-finite scores: {arr.tolist()}")
    return names, arrays


def stratified_bootstrap(groups: Sequence[Sequence[np.ndarray]],
                         statistic: Callable[..., np.ndarray], num_samples: int = 1000,
                         seed: int | None = 0) -> np.ndarray:
    """Bootstrap distribution of ``statistic(*groups)``; shape ``(num_samples, ...)``.

    ``groups`` holds one or more per-task score lists (e.g. two agents for a probability of
    improvement); every task of every group is resampled independently.
    """
    num_samples = _check_num_samples(num_samples)
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, num_samples, _CHUNK):
        reps = min(_CHUNK, num_samples - start)
        resampled = [
            [x[rng.integers(0, x.shape[-1], size=(reps, x.shape[-1]))] for x in per_task]
            for per_task in groups
        ]
        chunks.append(np.asarray(statistic(*resampled)))
    return np.concatenate(chunks, axis=0)


def percentile_interval(replicates: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``: the ``alpha/2`` and ``1 - alpha/2`` percentiles over axis 0."""
    alpha = check_alpha(alpha)
    lower, upper = np.percentile(replicates, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lower, upper


def interval_estimate(groups: Sequence[Sequence[np.ndarray]], statistic: Callable[..., np.ndarray],
                      num_samples: int = 1000, alpha: float = 0.05,
                      seed: int | None = 0) -> dict[str, Any]:
    """Point estimate and stratified-bootstrap percentile CI of ``statistic(*groups)``.

    Returns ``{"estimate", "ci_lower", "ci_upper"}`` as floats (or lists for a vector statistic).
    """
    check_alpha(alpha)
    estimate = np.asarray(statistic(*groups))
    lower, upper = percentile_interval(
        stratified_bootstrap(groups, statistic, num_samples=num_samples, seed=seed), alpha
    )

    def out(x):
        x = np.asarray(x, dtype=np.float64)
        return float(x) if x.ndim == 0 else x.tolist()

    return {"estimate": out(estimate), "ci_lower": out(lower), "ci_upper": out(upper)}

