"""The seed's experiment metrics: TensorBoard scalars and histograms per key, and line plots.

:class:`TensorBoardMetrics` writes each key of a metrics dict to TensorBoard with a step counter
of its own (the number of times that key was logged): numbers as scalars, lists and arrays as
histograms. The ``SummaryWriter`` (``torch.utils.tensorboard``; needs the ``tensorboard``
package, ``pip install 'distwm[logging]'``) is created at the first :meth:`update`.
For run logging with one global step, JSONL and wandb use :class:`distwm.utils.run_logger.Logger`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from distwm.utils.utils import flatten_dict, lineplot

__all__ = ["TensorBoardMetrics", "plot_metrics", "METRIC_KINDS"]

#: how :meth:`TensorBoardMetrics.assign_type` logs a key
METRIC_KINDS = ("scalar", "histogram")


def _as_array(value: Any) -> np.ndarray | None:
    """A numeric array of ``value``, or ``None`` when it is not numeric."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().float().numpy()
    if isinstance(value, (str, bytes)) or value is None:
        return None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        return None
    return arr


class TensorBoardMetrics:
    """Plots and (optionally) stores metrics for an experiment, as TensorBoard event files in
    ``path``.

    :meth:`update` logs ``{key: value}`` (nested dicts are flattened with ``/``); the first
    value of a key decides how it is logged (:meth:`assign_type`), and every key counts its own
    steps from 0. Nothing is opened before the first :meth:`update`. Use as a context manager or
    call :meth:`close`.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.summary: dict[str, str] = {}
        self.steps: dict[str, int] = {}
        self._writer = None

    @property
    def writer(self):
        """The ``SummaryWriter`` (created on first use)."""
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("TensorBoardMetrics needs the tensorboard package: "
                                  "pip install 'distwm[logging]'") from exc
            os.makedirs(self.path, exist_ok=True)
            self._writer = SummaryWriter(log_dir=self.path)
        return self._writer

    @staticmethod
    def _kind(key: str, val: Any) -> str:
        arr = _as_array(val)
        if arr is None:
            raise TypeError(f"metric {key!r}: {type(val).__name__} values cannot be logged; valid "
                            "values are numbers (scalar) and lists / arrays / tensors of numbers "
                            "(histogram)")
        if arr.size == 0:
            raise ValueError(f"metric {key!r} is empty (shape {arr.shape}); nothing to log")
        is_sequence = isinstance(val, (list, tuple)) or arr.size > 1
        return "histogram" if is_sequence else "scalar"

    def assign_type(self, key: str, val: Any) -> str:
        """Decide how ``key`` is logged from its value ``val`` and remember it: ``"scalar"``
        for a number (or a one-element array / tensor), ``"histogram"`` for a list, tuple or
        array of numbers. Returns the kind; other values raise ``TypeError``."""
        kind = self._kind(key, val)
        self.summary[key] = kind
        return kind

    def update(self, metrics: Mapping[str, Any]) -> None:
        """Log every entry of ``metrics`` at its key's next step."""
        if not isinstance(metrics, Mapping):
            raise ValueError(f"metrics must be a dict, got {type(metrics).__name__}")
        for key, val in flatten_dict(metrics, sep="/").items():
            kind = self.summary.get(key) or self.assign_type(key, val)
            if self._kind(key, val) != kind:
                raise ValueError(f"metric {key!r} was logged as a {kind}; got {val!r}, which is "
                                 f"not one (keep one kind per key: {METRIC_KINDS})")
            step = self.steps.get(key, 0)
            arr = _as_array(val)
            if kind == "scalar":
                self.writer.add_scalar(key, float(arr.reshape(())), step)
            else:
                self.writer.add_histogram(key, arr.astype(np.float64).reshape(-1), step)
            self.steps[key] = step + 1

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (idempotent; a later update opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "TensorBoardMetrics":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def plot_metrics(metrics: Mapping[str, Any], path, prefix: str) -> list[str]:
    """One line plot per metric series: ``{path}/{prefix}{key}.png`` (see
    :func:`distwm.utils.utils.lineplot`; a 2-D series ``(steps, runs)`` is drawn as its mean
    and standard deviation). ``/`` in a key becomes ``_`` in the file name. Returns the files."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict of series, got {type(metrics).__name__}")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    files = []
    for key, series in metrics.items():
        values = np.asarray(series, dtype=np.float64)
        if values.ndim not in (1, 2) or values.shape[0] == 0:
            raise ValueError(f"metric {key!r} must be a non-empty 1-D series (or 2-D: steps x runs), "
                             f"got shape {values.shape}")
        title = f"{prefix}{key}".replace("/", "_").replace(os.sep, "_")
        files.append(lineplot(np.arange(values.shape[0]), values, title, path))
    return files
