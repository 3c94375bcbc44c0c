"""What the data-parallel driver (:mod:`distwm.runtime.data_parallel`) checks and resolves
before the trainer starts: the run.yaml of a run directory, and the *plan*, the plain dict
(torch-free) that the trainer and every worker get: the run config, the model's config and
protocol class paths, the data set's ``dataset_info`` (a shard directory's manifest, or an image
data set's description: :func:`distwm.datasets.training_data.describe_training_data`) and the
layout (workers, CPUs and GPUs each), with ``"auto"`` resolved against the cluster."""

from __future__ import annotations

import os
from typing import Any, Mapping

from distwm.configs.runtime_config import DataParallelRunConfig, is_data_parallel_run_yaml
from distwm.runtime.setup import RUN_CONFIG_FILE
from distwm.utils import storage

__all__ = ["absolute", "check_fits", "load_data_parallel_run", "make_plan"]


def load_data_parallel_run(run_dir: str) -> DataParallelRunConfig:
    """The ``run.yaml`` of a data-parallel run directory (``ValueError`` when there is none)."""
    try:
        text = storage.read_text(storage.join(run_dir, RUN_CONFIG_FILE))
    except FileNotFoundError:
        raise ValueError(f"{run_dir!r} is not a distwm run directory (no {RUN_CONFIG_FILE})") from None
    if not is_data_parallel_run_yaml(text):
        raise ValueError(f"{run_dir!r} holds an actor-learner (RL) run, not a data-parallel one")
    return DataParallelRunConfig.from_yaml(text)


def absolute(location: str | None) -> str | None:
    """A path made absolute (a URI or ``None`` as it is)."""
    if location is None or "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def _resolve_layout(dp: Any, most: int, resources: Mapping[str, float] | None) -> tuple[int, float]:
    """``(workers, gpus per worker)`` with ``"auto"`` resolved against the cluster's
    ``resources`` (``None``: no cluster known, ``auto`` means 1 worker / no GPU) and at most
    ``most`` workers (the shard files, or the images, of the data set)."""
    res = dict(resources or {})
    gpus = dp.gpus_per_worker
    if gpus == "auto":
        gpus = 1.0 if res.get("GPU", 0) >= 1 else 0.0
    workers = dp.workers
    if workers == "auto":
        fit = (res.get("GPU", 0) / gpus) if gpus > 0 else (res.get("CPU", 1) / dp.cpus_per_worker)
        workers = max(1, min(int(fit), most))
    return int(workers), float(gpus)


def check_fits(workers: int, cpus: float, gpus: float, resources: Mapping[str, float]) -> None:
    """``ValueError`` when ``workers`` x (``cpus``, ``gpus``) exceed the cluster's ``resources``
    (Ray Train would wait for them for ever)."""
    have_cpu, have_gpu = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if workers * cpus > have_cpu + 1e-9 or workers * gpus > have_gpu + 1e-9:
        raise ValueError(
            f"{workers} Ray Train workers x ({cpus:g} CPU, {gpus:g} GPU) need {workers * cpus:g} "
            f"CPUs and {workers * gpus:g} GPUs; the cluster has {have_cpu:g} CPUs and "
            f"{have_gpu:g} GPUs: lower --workers / data_parallel.cpus_per_worker / --gpus-per-worker")


def make_plan(run_config: DataParallelRunConfig, resources: Mapping[str, float] | None = None,
              queue: Any = None) -> dict[str, Any]:
    """Everything the trainer and its workers need, as plain values (torch-free): the run
    config, the model's config and protocol class paths, the ``dataset_info``, the resolved
    layout. ``ValueError`` for a bad config, a missing or unreadable data set, or fewer shard
    files (a shard directory) or images (an image data set) than workers."""
    from distwm.datasets.training_data import (check_ranks, describe_training_data,
                                               normalize_source, rank_limit)

    run_config.validate()
    spec = run_config.spec()
    dp = run_config.data_parallel
    data = normalize_source(dp.data)
    dataset_info = describe_training_data(data)
    workers, gpus = _resolve_layout(dp, rank_limit(dataset_info), resources)
    check_ranks(dataset_info, workers)  # fewer files (or images) than workers fails here
    run_dir = absolute(dp.run_dir)
    run_config = run_config.replace(data_parallel=dp.replace(data=data, run_dir=run_dir))
    return {"run": run_config.to_dict(), "model": spec.name, "config_path": spec.config_path,
            "protocol_path": spec.protocol_path, "dataset_info": dataset_info, "data": data,
            "workers": workers, "cpus_per_worker": dp.cpus_per_worker, "gpus_per_worker": gpus,
            "use_gpu": gpus > 0, "seed": dp.seed, "run_dir": run_dir, "queue": queue}
