"""Point aggregates over a suite of tasks, as rliable (Agarwal et al., 2021) defines them.

Every function takes ``per_task``: a sequence with one array per task, each shaped
``(..., n_runs_of_that_task)`` with the same leading shape (a bootstrap replicate axis, or none),
and returns an array of that leading shape. Tasks may have different numbers of runs.

* ``iqm``: interquartile mean, the 25% trimmed mean of *all runs of all tasks pooled*:
  ``scipy.stats.trim_mean(scores, proportiontocut=0.25, axis=None)``: ``floor(0.25 N)`` of the
  N pooled scores are cut from each end and the rest averaged (rliable's ``aggregate_iqm``).
* ``mean``: mean over tasks of each task's mean score.
* ``median``: median over tasks of each task's mean score.
* ``optimality_gap``: ``gamma`` minus the mean over tasks of the mean of ``min(score, gamma)``
  (how far the agent is from ``gamma``, default 1 = human level on normalised scores).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats

__all__ = ["iqm", "mean", "median", "optimality_gap", "AGGREGATES", "get_aggregate"]

PerTask = Sequence[np.ndarray]


def _pooled(per_task: PerTask) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.float64) for x in per_task], axis=-1)


def _task_means(per_task: PerTask) -> np.ndarray:
    return np.stack([np.asarray(x, dtype=np.float64).mean(axis=-1) for x in per_task], axis=-1)


def iqm(per_task: PerTask) -> np.ndarray:
    """25% trimmed mean of all runs of all tasks pooled (see module docstring)."""
    return np.asarray(stats.trim_mean(_pooled(per_task), 0.25, axis=-1))


def mean(per_task: PerTask) -> np.ndarray:
    """Mean over tasks of the per-task mean."""
    return _task_means(per_task).mean(axis=-1)


def median(per_task: PerTask) -> np.ndarray:
    """Median over tasks of the per-task mean."""
    return np.median(_task_means(per_task), axis=-1)


def optimality_gap(per_task: PerTask, gamma: float = 1.0) -> np.ndarray:
    """``gamma - mean_tasks(mean_runs(min(score, gamma)))``."""
    clipped = [np.minimum(np.asarray(x, dtype=np.float64), gamma) for x in per_task]
    return gamma - _task_means(clipped).mean(axis=-1)


AGGREGATES: dict[str, Callable[[PerTask], np.ndarray]] = {
    "iqm": iqm,
    "median": median,
    "mean": mean,
    "optimality_gap": optimality_gap,
}


def get_aggregate(name: str) -> Callable[[PerTask], np.ndarray]:
    try:
        return AGGREGATES[name]
    except KeyError:
        raise ValueError(
            f"unknown aggregate metric {name!r}; choose from {sorted(AGGREGATES)}"
        ) from None
