"""``distwm sweep``: run a :class:`~distwm.tune.sweep_config.SweepConfig` with Ray Tune.

Every trial (:func:`distwm.tune.trainable.train_trial`) is one actor-learner run. Its
resources are reserved by Tune with ``tune.with_resources`` and a ``PlacementGroupFactory``:
bundle 0 for the trial's driver (``tune.driver_cpus``), then the run's own bundles as
``distwm.runtime.placement`` plans them (:mod:`distwm.tune.resources`). The run places its
actors in that group (``RuntimeConfig.placement_group="current"``).

Before Tune starts, ``workers: auto`` and ``learner_gpus: auto`` are resolved against the
cluster's resources divided by ``tune.max_concurrent_trials``, and the trials are sized to fit
the cluster (:func:`~distwm.tune.resources.fit_sweep`): a trial that cannot fit stops the sweep
with a ``ValueError``. A failed trial restarts from its last checkpoint up to
``tune.max_failures`` times. A sweep stopped by Ctrl-C saves its state and reports its trials
as unfinished (:attr:`SweepOutcome.num_unfinished`); ``resume=True`` or :func:`resume_sweep`
continues it (``Tuner.restore``, unfinished and errored trials from their checkpoints).
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from typing import Any, Callable, Mapping

from distwm.tune.resources import (
    LEARNER_RESOURCE,
    fit_sweep,
    resolve_for_cluster,
    trial_bundles,
)
from distwm.tune.sweep_config import SweepConfig
from distwm.tune.trainable import train_trial, trial_label

_log = logging.getLogger(__name__)

__all__ = [
    "LEARNER_RESOURCE",
    "resolve_for_cluster",
    "trial_bundles",
    "search_domain",
    "build_param_space",
    "build_scheduler",
    "run_sweep",
    "resume_sweep",
    "SweepOutcome",
]


def _placement_group_factory(config: Mapping[str, Any], sweep: Mapping[str, Any],
                             cluster_has_learner_resource: bool) -> Any:
    from ray import tune

    sweep = SweepConfig.from_dict(sweep)
    strategy = str(sweep.runtime.get("placement_strategy", "PACK"))
    return tune.PlacementGroupFactory(
        trial_bundles(sweep, config, cluster_has_learner_resource), strategy=strategy)


def search_domain(spec: Mapping[str, Any]) -> Any:
    """The Tune domain of a ``search`` entry ``{kind: argument}``
    (:data:`~distwm.tune.sweep_config.SEARCH_KINDS`)."""
    from ray import tune

    kind, arg = next(iter(spec.items()))
    if kind == "grid":
        return tune.grid_search(list(arg))
    if kind == "choice":
        return tune.choice(list(arg))
    return getattr(tune, kind)(*arg)


def build_param_space(sweep: SweepConfig) -> dict[str, Any]:
    """agents x games x seeds as grid searches and the search entries as Tune domains."""
    from ray import tune

    space: dict[str, Any] = {
        "agent": tune.grid_search(list(sweep.agents)),
        "game": tune.grid_search(list(sweep.games)),
        "seed": tune.grid_search(list(sweep.seeds)),
    }
    space.update({key: search_domain(spec) for key, spec in sweep.search.items()})
    return space


def build_scheduler(sweep: SweepConfig) -> Any:
    """ASHA or PBT over ``env_steps``, or ``None`` (FIFO)."""
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    s = sweep.scheduler
    if s.type == "asha":
        return ASHAScheduler(time_attr="env_steps", max_t=s.max_t or sweep.budget.env_steps,
                             grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    if s.type == "pbt":
        mutations = {key: (list(spec["choice"]) if "choice" in spec else search_domain(spec))
                     for key, spec in sweep.search.items()}
        return PopulationBasedTraining(
            time_attr="env_steps", perturbation_interval=s.perturbation_interval,
            hyperparam_mutations=mutations, quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability)
    return None


def _trial_name(trial: Any) -> str:
    return trial_label(trial.config)


def _trial_dirname(trial: Any) -> str:
    return f"{trial_label(trial.config)}-{trial.trial_id}"


class SweepOutcome:
    """What a sweep left: its experiment path and one row per trial (status ``DONE``,
    ``STOPPED`` by a scheduler or the time limit, ``ERROR``, or ``UNFINISHED``: the sweep was
    stopped before the trial ended or started)."""

    def __init__(self, path: str, rows: list[dict[str, Any]]):
        self.path = path
        self.rows = rows

    HEADERS = ("trial", "status", "env steps", "score", "error")

    @property
    def num_errors(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "ERROR")

    @property
    def num_unfinished(self) -> int:
        """Trials the sweep did not end (it was interrupted): ``resume`` continues them."""
        return sum(1 for r in self.rows if r["status"] == "UNFINISHED")

    def table_rows(self) -> list[tuple[str, ...]]:
        """One row of text per trial, under :attr:`HEADERS`."""
        return [(r["trial"], r["status"], "-" if r["env_steps"] is None else f"{r['env_steps']:,}",
                 "-" if r["score"] is None else f"{r['score']:.2f}", r["error"] or "")
                for r in self.rows]


_FINISHED = ("TERMINATED", "ERROR")


def _saved_statuses(path: str, result_grid: Any) -> dict[str, str]:
    """``{trial directory name: status}`` as the experiment state on storage has them.

    After Ctrl-C, Tune saves the state (interrupted trials ``RUNNING``/``PENDING``, which
    ``Tuner.restore`` continues) and then stops its trials, so the statuses in memory all read
    ``TERMINATED``; the saved ones say which trials did not end."""
    from ray.tune import ExperimentAnalysis

    try:
        trials = ExperimentAnalysis(path).trials
    except Exception as exc:  # unreadable state: the statuses in memory are all there is
        _log.warning("could not read the saved state of %s (%s): statuses as Tune left them",
                     path, exc)
        trials = getattr(getattr(result_grid, "_experiment_analysis", None), "trials", None) or []
    return {os.path.basename(str(t.path).rstrip("/")): str(t.status) for t in trials}


def _expected_labels(sweep: SweepConfig) -> Counter:
    per_cell = sweep.num_grid_trials() // (len(sweep.agents) * len(sweep.games) * len(sweep.seeds))
    return Counter({trial_label({"agent": a, "game": g, "seed": seed}): per_cell
                    for a in sweep.agents for g in sweep.games for seed in sweep.seeds})


def _outcome(path: str, result_grid: Any, sweep: SweepConfig) -> SweepOutcome:
    statuses = _saved_statuses(path, result_grid)
    rows = []
    for result in result_grid:
        metrics = result.metrics or {}
        config = result.config or {}
        error = result.error
        cause = str(error).strip().splitlines()[-1] if error is not None and str(error).strip() else ""
        saved = statuses.get(os.path.basename(str(result.path).rstrip("/")), "TERMINATED")
        if saved not in _FINISHED:
            status = "UNFINISHED"
        elif error is not None:
            status = "ERROR"
        else:
            status = "DONE" if metrics.get("final") else "STOPPED"
        rows.append({
            "trial": trial_label(config) if config else "?",
            "status": status, "env_steps": metrics.get("env_steps"), "score": metrics.get("score"),
            "error": None if error is None else f"{type(error).__name__}: {cause}",
        })
    # trials Tune had not created yet when the sweep was stopped (it creates them lazily)
    missing = _expected_labels(sweep) - Counter(r["trial"] for r in rows)
    rows += [{"trial": label, "status": "UNFINISHED", "env_steps": None, "score": None,
              "error": None} for label in missing.elements()]
    return SweepOutcome(path, sorted(rows, key=lambda r: r["trial"]))


def run_sweep(sweep: SweepConfig, address: str | None = None, resume: bool = False, *,
              fit_to_cluster: bool | None = None,
              echo: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run (or with ``resume`` continue) the sweep; returns its outcome table.

    A new sweep saves its resolved settings as ``<experiment>/sweep.yaml``; ``resume`` reads
    them back from there (the YAML given only names the experiment). ``fit_to_cluster``
    (default ``tune.fit_to_cluster``) sizes the trials to the cluster first and raises
    ``ValueError`` when one cannot fit; ``echo`` gets the sizing lines.
    """
    return _run(sweep, sweep.experiment_path(), resume, address, fit_to_cluster, echo)


def resume_sweep(path: str, address: str | None = None, *, fit_to_cluster: bool | None = None,
                 echo: Callable[[str], None] | None = None) -> SweepOutcome:
    """Continue the sweep whose experiment directory is ``path`` (``<storage_path>/<name>``):
    unfinished trials from their last checkpoints, errored ones too."""
    from distwm.tune.storage import load_saved_sweep

    path = str(path)
    if "://" not in path:
        path = os.path.abspath(os.path.expanduser(path))
    return _run(load_saved_sweep(path), path.rstrip("/"), True, address, fit_to_cluster, echo)


def _run(sweep: SweepConfig, path: str, resume: bool, address: str | None,
         fit_to_cluster: bool | None, echo: Callable[[str], None] | None) -> SweepOutcome:
    import ray
    from ray import tune

    from distwm.runtime.placement import connect
    from distwm.tune.storage import load_saved_sweep, save_sweep

    if not resume and tune.Tuner.can_restore(path):
        raise ValueError(
            f"{path} already holds sweep {sweep.name!r}: continue it with --resume, or change "
            "`name` (or tune.storage_path) to start a new one"
        )
    if resume and not tune.Tuner.can_restore(path):
        raise ValueError(f"--resume: no sweep to continue at {path}")
    started = connect(address)
    try:
        resources = ray.cluster_resources()
        sweep = load_saved_sweep(path) if resume else resolve_for_cluster(sweep, resources)
        if sweep.tune.fit_to_cluster if fit_to_cluster is None else fit_to_cluster:
            fit = fit_sweep(sweep, resources)
            sweep = fit.sweep
            for line in fit.lines():
                (echo or _log.info)(line)
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, sweep=sweep.to_dict()),
            functools.partial(_placement_group_factory, sweep=sweep.to_dict(),
                              cluster_has_learner_resource=resources.get(LEARNER_RESOURCE, 0) > 0))
        if resume:
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
        else:
            save_sweep(sweep, path)
            os.makedirs(sweep.runs_root(), exist_ok=True)
            tuner = tune.Tuner(
                trainable,
                param_space=build_param_space(sweep),
                tune_config=tune.TuneConfig(
                    metric=sweep.tune.metric, mode=sweep.tune.mode,
                    scheduler=build_scheduler(sweep), num_samples=sweep.tune.num_samples,
                    max_concurrent_trials=sweep.tune.max_concurrent_trials,
                    trial_name_creator=_trial_name,
                    trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(
                    name=sweep.name, storage_path=path.rsplit("/", 1)[0],
                    failure_config=tune.FailureConfig(max_failures=sweep.tune.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=sweep.tune.keep_checkpoints),
                    stop=({"time_total_s": sweep.budget.time_limit_s}
                          if sweep.budget.time_limit_s else None),
                    verbose=sweep.tune.verbose),
            )
        return _outcome(path, tuner.fit(), sweep)
    finally:
        if started:
            ray.shutdown()
