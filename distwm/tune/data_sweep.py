"""``distwm sweep`` for dataset-trained models (Genie, I-JEPA, DiT): :class:`DataSweepConfig`
and :func:`run_data_sweep`.

Every trial is one Ray Train run (:func:`distwm.tune.trainable.data_parallel_tuner`): the
sweep's ``run`` with one data set, one seed and the sampled ``search`` entries laid over it::

    kind: dataset-trained          # not an RL sweep (agents x games x seeds)
    name: dit-digits-seeds         # results go to <tune.storage_path>/<name>
    run: dit-digits                # a run preset (`distwm train --config` takes it), a run.yaml
                                   # path, or inline {model: dit, model_config: {...}, data_parallel: {...}}
    data: [sklearn:digits:16]      # each sets data_parallel.data (default: the run's)
    seeds: [0, 1, 2]               # each sets data_parallel.seed
    budget: {updates: 300}         # data_parallel.total_updates of every trial (default: the run's)
    workers: 1                     # data_parallel.workers of every trial (default: the run's)
    search: {model_config.LR: {loguniform: [1.0e-4, 1.0e-3]}}   # optional, as SweepConfig.search
    tune: {metric: report/eval/sample_class_accuracy, mode: max, max_concurrent_trials: 1}

``tune`` is :class:`~distwm.tune.sweep_config.TuneSettings`: ``metric``/``mode`` name the
final-result value the outcome table and ``distwm report`` rank by (``score`` is ``-train/loss``;
``report/<name>`` the model's last report scalars; ``train/<name>`` its last training metrics).
Before Tune starts, each data set is opened once, and the trials are fitted to the cluster:
a trial reserves ``tune.driver_cpus`` plus its Ray Train workers' CPUs and GPUs, and
``tune.max_concurrent_trials`` is bounded so that the trials running at once fit
(:func:`fit_data_sweep`; a trial that cannot fit at all is a ``ValueError``). The resolved sweep
(its run inline) is saved as ``<experiment>/sweep.yaml``, which ``--resume`` and
``distwm report`` read back (:mod:`distwm.tune.data_sweep_report`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional, Union

from distwm.configs.base import ConfigBase
from distwm.configs.runtime_config import (DATASET_TRAINED, DataParallelConfig,
                                           DataParallelRunConfig)
from distwm.tune.sweep import search_domain
from distwm.tune.sweep_config import (_NAME, SweepConfig, TuneSettings, _check_unique,
                                      check_search_domain)

__all__ = ["DATASET_TRAINED", "DataBudget", "DataSweepConfig", "SWEEP_OWNED_DATA_PARALLEL_FIELDS",
           "load_sweep_file", "saved_sweep_kind", "load_saved_data_sweep", "build_data_param_space",
           "fit_data_sweep", "check_data_sets", "run_data_sweep", "resume_data_sweep"]

#: data_parallel fields the sweep sets for every trial, and where to set them instead
SWEEP_OWNED_DATA_PARALLEL_FIELDS = {
    "data": "`data:` (one axis of the sweep)", "seed": "`seeds:`",
    "total_updates": "budget.updates",
    "run_dir": "tune.runs_path (each trial's run lives under <storage_path>/<name>/runs)",
    "address": "`distwm sweep --address`",
}
#: the layout every trial shares (the sweep is fitted to the cluster by it): not searchable
LAYOUT_FIELDS = ("workers", "cpus_per_worker", "gpus_per_worker")
_SEARCH_SECTIONS = ("model_config", "data_parallel")


@dataclass
class DataBudget(ConfigBase):
    """What each trial gets: ``updates`` (``data_parallel.total_updates``; ``None``: the run's)."""

    updates: Optional[int] = None


@dataclass
class DataSweepConfig(ConfigBase):
    """A sweep of a dataset-trained model (see the module docstring); build with :meth:`load`,
    :func:`load_sweep_file` or ``from_dict``."""

    kind: Literal["dataset-trained"] = DATASET_TRAINED
    name: str = "data-sweep"
    run: Union[str, dict[str, Any]] = ""
    data: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    budget: DataBudget = field(default_factory=DataBudget)
    workers: Optional[int] = None
    search: dict[str, Any] = field(default_factory=dict)
    tune: TuneSettings = field(default_factory=TuneSettings)

    # the same places as an RL sweep's: <storage_path>/<name> and its runs/ (or tune.runs_path)
    experiment_path = SweepConfig.experiment_path
    runs_root = SweepConfig.runs_root

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], _prefix: str = "") -> "DataSweepConfig":
        if isinstance(data, Mapping) and data.get("kind", DATASET_TRAINED) != DATASET_TRAINED:
            raise ValueError(f"kind: {data['kind']!r} is not {DATASET_TRAINED!r} (leave `kind` out "
                             "for an RL sweep of agents x games x seeds)")
        return super().from_dict(data, _prefix).validate()

    # parse and validate a sweep YAML file; errors name the file (as SweepConfig.load)
    load = classmethod(SweepConfig.load.__func__)

    # -- the run every trial starts from --------------------------------------------------------
    def run_config(self) -> DataParallelRunConfig:
        """``run`` as a :class:`DataParallelRunConfig` (a preset, a run.yaml or inline)."""
        from pathlib import Path

        from distwm.configs.runtime_config import is_data_parallel_run_yaml
        from distwm.runtime.cli import list_presets, resolve_config_path

        if isinstance(self.run, Mapping):
            return DataParallelRunConfig.from_dict(self.run, _prefix="run.")
        if not self.run:
            raise ValueError("run: the sweep needs a run: a preset name, a run.yaml path or "
                             "{model: ..., model_config: {...}, data_parallel: {...}}")
        try:
            path = resolve_config_path(self.run)
        except ValueError as exc:
            raise ValueError(f"run: {exc}".replace("--config ", "")) from None
        text = Path(path).read_text(encoding="utf-8")
        if not is_data_parallel_run_yaml(text):
            presets = [p for p in list_presets() if is_data_parallel_run_yaml(
                Path(resolve_config_path(p)).read_text(encoding="utf-8"))]
            raise ValueError(f"run: {self.run!r} is an actor-learner (RL) run, not a data-parallel "
                             f"one; data-parallel presets: {', '.join(presets)}")
        try:
            return DataParallelRunConfig.from_yaml(text)
        except ValueError as exc:
            raise ValueError(f"run {self.run!r}: {exc}") from None

    def data_sets(self) -> list[str]:
        """The data axis, each source as a run records it (a path made absolute)."""
        from distwm.datasets.training_data import normalize_source

        sources = self.data or [self.run_config().data_parallel.data]
        return [normalize_source(s) for s in sources if s]

    def base_run(self) -> DataParallelRunConfig:
        """The run of every trial before its data set, seed and search values: ``run`` with
        the budget, the workers and ``run_dir`` (the runs root) set."""
        run = self.run_config()
        fields: dict[str, Any] = {"run_dir": self.runs_root(), "data": self.data_sets()[0]}
        if self.budget.updates is not None:
            fields["total_updates"] = self.budget.updates
        if self.workers is not None:
            fields["workers"] = self.workers
        return run.replace(data_parallel=run.data_parallel.replace(**fields))

    def resolved(self) -> "DataSweepConfig":
        """A copy that no longer depends on files or the working directory: the run inline,
        the data sets and ``tune.storage_path`` absolute (what the experiment saves)."""
        storage = self.tune.storage_path
        if "://" not in storage:
            storage = os.path.abspath(os.path.expanduser(storage))
        run = self.run_config()
        if run.data_parallel.data:
            run = run.replace(data_parallel=run.data_parallel.replace(data=self.data_sets()[0]))
        return DataSweepConfig.from_dict({
            **self.to_dict(), "run": run.to_dict(), "data": self.data_sets() if self.data else [],
            "tune": {**self.tune.to_dict(), "storage_path": storage}})

    def num_grid_trials(self) -> int:
        """Trials of data sets x seeds x grid entries, times ``tune.num_samples``."""
        n = len(self.data_sets()) * len(self.seeds) * self.tune.num_samples
        for spec in self.search.values():
            if "grid" in spec:
                n *= len(spec["grid"])
        return n

    def describe(self) -> str:
        """One line: what the sweep runs."""
        data = self.data_sets()
        run = self.base_run()
        return (f"{self.name}: {self.num_grid_trials()} trials of {run.model} ({len(data)} data "
                f"set{'s' if len(data) != 1 else ''} x {len(self.seeds)} seeds"
                + (f", search over {', '.join(self.search)}" if self.search else "")
                + f"; {run.data_parallel.total_updates:,d} updates, {run.data_parallel.workers} "
                f"Ray Train worker(s) each; ranked by {self.tune.metric} ({self.tune.mode})")

    # -- validation -------------------------------------------------------------------------------
    def validate(self) -> "DataSweepConfig":
        if not _NAME.match(self.name):
            raise ValueError(f"sweep name {self.name!r} must be letters, digits, '_', '-', '.'")
        _check_unique("seeds", self.seeds)
        if self.data:
            _check_unique("data", self.data)
        if self.budget.updates is not None and self.budget.updates < 1:
            raise ValueError(f"budget.updates must be >= 1 or null, got {self.budget.updates!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or null, got {self.workers!r}")
        self.tune.validate()
        run = self.run_config()
        for name in ("run_dir", "address"):
            if getattr(run.data_parallel, name) is not None:
                raise ValueError(f"run: data_parallel.{name} is set by the sweep: use "
                                 f"{SWEEP_OWNED_DATA_PARALLEL_FIELDS[name]}")
        if not self.data and not run.data_parallel.data:
            raise ValueError("data: the run names no data set (data_parallel.data); list one or "
                             "more under `data:` (e.g. [sklearn:digits:16] or a shard directory)")
        base = self.base_run()
        if base.data_parallel.workers == "auto":
            raise ValueError("workers: give a number; 'auto' would give every trial the whole "
                             "cluster while trials run side by side")
        try:
            base.replace(data_parallel=base.data_parallel.replace(seed=self.seeds[0])).validate()
        except ValueError as exc:
            raise ValueError(f"run: {exc}") from None
        self._check_search(base)
        return self

    def _check_search(self, base: DataParallelRunConfig) -> None:
        """Each key names a field of the model's config or a searchable data_parallel field,
        and every value the domain may give builds (the bounds of a range)."""
        for key, spec in self.search.items():
            section, _, name = key.partition(".")
            if section not in _SEARCH_SECTIONS or not name:
                raise ValueError(f"search: key {key!r} must be 'model_config.<field>' or "
                                 "'data_parallel.<field>'")
            check_search_domain(key, spec)
            kind, arg = next(iter(spec.items()))
            if kind in ("grid", "choice"):
                values = list(arg)
            elif kind.endswith("randint"):  # Tune's upper bound is exclusive
                values = [int(arg[0]), int(arg[1]) - 1]
            else:  # uniform / loguniform draw floats
                values = [float(arg[0]), float(arg[1])]
            if section == "data_parallel":
                canonical = DataParallelConfig.aliases().get(name, name)
                if canonical in SWEEP_OWNED_DATA_PARALLEL_FIELDS:
                    raise ValueError(f"search: {key} is set by the sweep: use "
                                     f"{SWEEP_OWNED_DATA_PARALLEL_FIELDS[canonical]}")
                if canonical in LAYOUT_FIELDS:
                    raise ValueError(f"search: {key}: every trial has the same layout "
                                     f"({', '.join(LAYOUT_FIELDS)}): set it in the run or `workers:`")
                if canonical not in DataParallelConfig.field_names():
                    raise DataParallelConfig.unknown_field_error(name, "search: data_parallel.")
            for value in values:
                try:
                    if section == "data_parallel":
                        base.replace(data_parallel=base.data_parallel.replace(**{name: value})).validate()
                    else:
                        base.replace(model_config={**base.model_config, name: value}).build_model_config()
                except ValueError as exc:
                    raise ValueError(f"search.{key} = {value!r}: {exc}") from None


def load_sweep_file(path: str) -> SweepConfig | DataSweepConfig:
    """A sweep YAML as the config its ``kind`` names: none, an RL :class:`SweepConfig`;
    ``dataset-trained``, a :class:`DataSweepConfig`."""
    import yaml

    try:
        with open(os.path.expanduser(str(path)), encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ValueError(f"sweep file {str(path)!r} does not exist") from None
    if isinstance(data, Mapping) and "kind" in data:
        return DataSweepConfig.load(path)
    return SweepConfig.load(path)


def saved_sweep_kind(experiment_path: str) -> str | None:
    """``kind`` of the sweep saved in an experiment directory (``"rl"`` for an RL sweep), or
    ``None`` when there is no readable ``sweep.yaml`` there."""
    import yaml

    from distwm.tune.storage import SWEEP_FILE
    from distwm.utils import storage

    try:
        data = yaml.safe_load(storage.read_text(f"{str(experiment_path).rstrip('/')}/{SWEEP_FILE}"))
    except (FileNotFoundError, OSError, ValueError):
        return None
    return str(data.get("kind", "rl")) if isinstance(data, Mapping) else None


def load_saved_data_sweep(experiment_path: str) -> DataSweepConfig:
    """The :class:`DataSweepConfig` an experiment directory was produced by."""
    from distwm.tune.storage import SWEEP_FILE
    from distwm.utils import storage

    path = f"{str(experiment_path).rstrip('/')}/{SWEEP_FILE}"
    try:
        return DataSweepConfig.from_yaml(storage.read_text(path))
    except FileNotFoundError:
        raise ValueError(f"{experiment_path!r} is not a distwm sweep directory (no {SWEEP_FILE})") from None


# -- trials -----------------------------------------------------------------------------------

def build_data_param_space(sweep: DataSweepConfig) -> dict[str, Any]:
    """``{"data_parallel": {data, seed grids, searched fields}, "model_config": {searched}}``."""
    from ray import tune

    space: dict[str, Any] = {"model_config": {}, "data_parallel": {
        "data": tune.grid_search(sweep.data_sets()), "seed": tune.grid_search(list(sweep.seeds))}}
    for key, spec in sweep.search.items():
        section, _, name = key.partition(".")
        space[section][name] = search_domain(spec)
    return space


def fit_data_sweep(sweep: DataSweepConfig, resources: Mapping[str, float]) -> tuple[int, list[str]]:
    """``(trials at once, lines saying why)``: each trial reserves ``tune.driver_cpus`` and its
    workers' CPUs and GPUs (``gpus_per_worker: auto``: 1 on a cluster with GPUs); at most as
    many run at once as the cluster holds (and ``tune.max_concurrent_trials``).
    ``ValueError`` when one trial alone does not fit."""
    from distwm.runtime.data_parallel_setup import _resolve_layout

    dp = sweep.base_run().data_parallel
    workers, gpus = _resolve_layout(dp, int(dp.workers), resources)
    cpu = sweep.tune.driver_cpus + workers * dp.cpus_per_worker
    gpu = workers * gpus
    have_cpu, have_gpu = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    need = (f"a trial reserves {cpu:g} CPUs (tune.driver_cpus {sweep.tune.driver_cpus:g} + "
            f"{workers} Ray Train worker(s) x {dp.cpus_per_worker:g} CPU) and {gpu:g} GPUs")
    if cpu > have_cpu + 1e-9 or gpu > have_gpu + 1e-9:
        raise ValueError(f"sweep {sweep.name!r}: {need}; the cluster has {have_cpu:g} CPUs and "
                         f"{have_gpu:g} GPUs: lower `workers`, run.data_parallel.cpus_per_worker, "
                         "gpus_per_worker or tune.driver_cpus (on an autoscaling cluster whose nodes "
                         "have not started yet: --no-fit-check)")
    fits = math.floor((have_cpu + 1e-9) / cpu) if cpu > 0 else sweep.num_grid_trials()
    if gpu > 0:
        fits = min(fits, math.floor((have_gpu + 1e-9) / gpu))
    asked = sweep.tune.max_concurrent_trials
    concurrent = max(1, min(fits, asked or fits, sweep.num_grid_trials()))
    lines = [f"{need}; the cluster has {have_cpu:g} CPUs, {have_gpu:g} GPUs: {concurrent} "
             f"trial(s) at once" + (f" (tune.max_concurrent_trials {asked} lowered)"
                                    if asked and asked > concurrent else "")]
    return concurrent, lines


def check_data_sets(sweep: DataSweepConfig) -> None:
    """Open each data set's description once: a missing one, or one with fewer shard files
    (images) than workers, fails before Tune starts."""
    from distwm.datasets.training_data import check_ranks, describe_training_data

    workers = int(sweep.base_run().data_parallel.workers)
    for source in sweep.data_sets():
        try:
            check_ranks(describe_training_data(source), workers)
        except (ValueError, OSError) as exc:
            raise ValueError(f"data: {source}: {exc}") from None


def run_data_sweep(config: DataSweepConfig, address: str | None = None, resume: bool = False, *,
                   fit_to_cluster: bool | None = None,
                   echo: Callable[[str], None] | None = None) -> Any:
    """Run (or with ``resume`` continue) the sweep; returns its outcome table
    (:class:`~distwm.tune.data_sweep_report.DataSweepOutcome`). A new sweep
    saves its resolved form as ``<experiment>/sweep.yaml``; ``resume`` reads it back from there.
    ``fit_to_cluster`` (default ``tune.fit_to_cluster``) bounds the trials at once to what the
    cluster holds and raises ``ValueError`` when one cannot fit; ``echo`` gets the sizing line."""
    return _run(config, config.experiment_path(), resume, address, fit_to_cluster, echo)


def resume_data_sweep(path: str, address: str | None = None, *, fit_to_cluster: bool | None = None,
                      echo: Callable[[str], None] | None = None) -> Any:
    """Continue the data sweep whose experiment directory is ``path``."""
    path = str(path)
    if "://" not in path:
        path = os.path.abspath(os.path.expanduser(path))
    return _run(load_saved_data_sweep(path), path.rstrip("/"), True, address, fit_to_cluster, echo)


def _run(sweep: DataSweepConfig, path: str, resume: bool, address: str | None,
         fit_to_cluster: bool | None, echo: Callable[[str], None] | None) -> Any:
    import logging

    import ray
    from ray import tune

    from distwm.runtime.placement import connect
    from distwm.tune.data_sweep_report import sweep_outcome
    from distwm.tune.storage import SWEEP_FILE
    from distwm.tune.trainable import data_parallel_tuner
    from distwm.utils import storage

    if not resume and tune.Tuner.can_restore(path):
        raise ValueError(f"{path} already holds sweep {sweep.name!r}: continue it with --resume, "
                         "or change `name` (or tune.storage_path) to start a new one")
    if resume and not tune.Tuner.can_restore(path):
        raise ValueError(f"--resume: no sweep to continue at {path}")
    sweep = load_saved_data_sweep(path) if resume else sweep.resolved()
    check_data_sets(sweep)
    started = connect(address)
    try:
        concurrent = sweep.tune.max_concurrent_trials
        if sweep.tune.fit_to_cluster if fit_to_cluster is None else fit_to_cluster:
            concurrent, lines = fit_data_sweep(sweep, ray.cluster_resources())
            for line in lines:
                (echo or logging.getLogger(__name__).info)(line)
        if not resume:
            storage.write_text(f"{path}/{SWEEP_FILE}", sweep.to_yaml())
        t = sweep.tune
        tuner = data_parallel_tuner(
            sweep.base_run(), build_data_param_space(sweep), name=sweep.name,
            storage_path=path.rsplit("/", 1)[0], metric=None, mode=None, num_samples=t.num_samples,
            max_concurrent_trials=concurrent, max_failures=t.max_failures,
            driver_cpus=t.driver_cpus, keep_checkpoints=t.keep_checkpoints, verbose=t.verbose,
            resume=resume)
        return sweep_outcome(path, tuner.fit(), sweep)
    finally:
        if started:
            ray.shutdown()
