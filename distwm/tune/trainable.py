"""The Tune trainable: each trial is one distributed training run of ``distwm.runtime``.

A trial's config holds ``agent`` (a label of ``sweep.agents``), ``game``, ``seed`` and the sampled
``search`` entries (``agent.<field>`` / ``runtime.<field>``); the sweep itself comes in as a
parameter (``tune.with_parameters``), the dict the sweep saved as ``sweep.yaml``.

:func:`train_trial` builds the run's :class:`~distwm.configs.runtime_config.RunConfig` and calls
``distwm.runtime.run`` with a progress callback that reports to Tune every progress interval:
``env_steps`` (the schedulers' time attribute), ``score`` (the latest evaluation return, or the
recent training return before the first evaluation), rates, replay ratio, and whenever the learner
has written a new checkpoint, a Tune checkpoint that points at it. The run directory
(``<runs_root>/<label>-<trial id>``) survives the trial, so a restarted trial (``FailureConfig``,
``Tuner.restore``) resumes the run from its last learner checkpoint. Under PBT a trial may be
handed another trial's checkpoint: it then continues that run's latest checkpoint in its own
directory with its own (mutated) runtime settings.

A dataset-trained model's Ray Train run is a trial too (Ray Train V2's documented form: the
trial function launches the trainer): :func:`data_parallel_tuner` builds a ``tune.Tuner``
over :func:`train_data_parallel_trial`, whose ``param_space`` holds ``model_config`` and
``data_parallel`` entries (Tune domains) laid over a base
:class:`~distwm.configs.runtime_config.DataParallelRunConfig`; each trial runs
``distwm.runtime.data_parallel.run`` in ``<runs root>/<trial id>`` and reports ``updates``,
``loss`` (``train/loss``) and ``score`` (``-loss``) every progress line, with a Tune checkpoint
pointing at the run; a restarted trial resumes its run. Its final result also has the model's
last report scalars as ``report/<name>`` (DiT: ``report/eval/sample_class_accuracy``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from typing import Any, Mapping

from distwm.configs.runtime_config import (DataParallelConfig, DataParallelRunConfig, RunConfig,
                                           RuntimeConfig)
from distwm.tune.sweep_config import SweepConfig

__all__ = [
    "TRIAL_STATE_FILE",
    "REPORT_PREFIX",
    "trial_label",
    "search_overrides",
    "trial_run_config",
    "trial_run_dir",
    "achievement_metrics",
    "TrialReporter",
    "train_trial",
    "data_parallel_trial_config",
    "train_data_parallel_trial",
    "data_parallel_tuner",
]

_log = logging.getLogger(__name__)

#: the file inside a Tune checkpoint that points at the run and its learner checkpoint
TRIAL_STATE_FILE = "distwm_trial.json"
#: progress-record keys reported to Tune as they are
REPORTED_KEYS = ("env_steps", "updates", "env_steps_per_s", "updates_per_s", "replay_ratio",
                 "replay_fill", "weight_lag", "learner_idle", "episodes")
#: prefix of the model's report scalars (``Trainable.report``) in a data-parallel trial's final
#: result, as in the run's TensorBoard: ``report/eval/sample_class_accuracy``
REPORT_PREFIX = "report/"
#: final-result keys of an env that reports achievements (Crafter): the training episodes that
#: reported them, and ``<prefix><name>``: the percent of those episodes that unlocked ``name``
ACHIEVEMENT_EPISODES_KEY = "achievement_episodes"
ACHIEVEMENT_SUCCESS_PREFIX = "achievement_success/"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-")


def search_overrides(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sampled ``agent.*`` / ``runtime.*`` entries of a trial config, sorted by key."""
    return {k: config[k] for k in sorted(config) if k.startswith(("agent.", "runtime."))}


def trial_label(config: Mapping[str, Any]) -> str:
    """``<agent>-<game>-s<seed>`` (file-name safe)."""
    return f"{_slug(config['agent'])}-{_slug(config['game'])}-s{config['seed']}"


def trial_run_dir(sweep: SweepConfig, config: Mapping[str, Any], trial_id: str) -> str:
    return os.path.join(sweep.runs_root(), f"{trial_label(config)}-{trial_id}")


def trial_run_config(sweep: SweepConfig, config: Mapping[str, Any], run_dir: str | None) -> RunConfig:
    """The run of one trial: the agent's config for ``game`` and ``seed`` with the sampled
    overrides, the sweep's runtime settings and budget, placed in the trial's placement group."""
    label = config["agent"]
    if label not in sweep.agents:
        raise ValueError(f"trial agent {label!r} is not one of the sweep's agents {sorted(sweep.agents)}")
    spec = sweep.agents[label]
    agent = {**spec.agent, "env": config["game"], "seed": int(config["seed"])}
    runtime = {**RuntimeConfig.canonical_names(sweep.runtime), "total_steps": sweep.budget.env_steps,
               "eval_episodes": sweep.budget.eval_episodes,
               "eval_interval": sweep.budget.eval_interval, "run_dir": run_dir}
    for key, value in search_overrides(config).items():
        section, _, name = key.partition(".")
        if section == "runtime":
            name = RuntimeConfig.aliases().get(name, name)
        (agent if section == "agent" else runtime)[name] = value
    runtime["placement_group"] = "current"  # bundle 0 is the trial driver's, then the run's
    return RunConfig(model=spec.model, agent=agent,
                     runtime=RuntimeConfig.from_dict(runtime, _prefix="runtime.").validate())


def _adopt_run(donor_run_dir: str, run_dir: str) -> None:
    """Continue another trial's run (PBT exploit): copy its ``run.yaml``, its replay (each
    shard's snapshot and log) and its newest learner checkpoint into ``run_dir`` (whatever was
    there is replaced). Run directories may be paths or URIs."""
    from distwm.runtime.checkpoints import LATEST, latest_checkpoint, replay_dir
    from distwm.runtime.setup import RUN_CONFIG_FILE
    from distwm.utils import storage

    for _ in range(3):  # the donor keeps running: it may prune what we are copying
        storage.delete_dir(run_dir)
        try:
            # replay first: a log part cut short by the copy is ignored on restore, and the
            # checkpoint copied after it is never newer than the replay
            if storage.exists(replay_dir(donor_run_dir)):
                storage.copy_dir(replay_dir(donor_run_dir), replay_dir(run_dir))
            source = latest_checkpoint(donor_run_dir)
            if source is None:
                raise RuntimeError(f"PBT donor run {donor_run_dir!r} has no checkpoint to continue")
            name = source.rstrip("/").rpartition("/")[2]
            storage.copy_dir(source, storage.join(run_dir, "checkpoints", name))
        except (FileNotFoundError, OSError):
            continue
        storage.write_bytes(storage.join(run_dir, RUN_CONFIG_FILE),
                            storage.read_bytes(storage.join(donor_run_dir, RUN_CONFIG_FILE)))
        storage.write_text(storage.join(run_dir, "checkpoints", LATEST), name)
        return
    raise RuntimeError(f"could not copy a checkpoint of PBT donor run {donor_run_dir!r}")


def resume_point(run_config: RunConfig, run_dir: str, checkpoint: Any) -> tuple[RunConfig, bool]:
    """``(run config, resume?)`` for a trial that starts with Tune ``checkpoint`` (or None).

    A run directory that already holds a run is resumed (a restarted trial). A checkpoint of
    another trial (PBT) makes this trial continue that run: its model and agent config (seed
    included) are kept, the runtime settings are this trial's.
    """
    from distwm.runtime.setup import RUN_CONFIG_FILE, load_run_config
    from distwm.utils import storage

    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            with open(os.path.join(path, TRIAL_STATE_FILE), encoding="utf-8") as f:
                donor = json.load(f)["run_dir"]
        if storage.normalize(donor) != storage.normalize(run_dir):
            _log.info("continuing the run of %s in %s", donor, run_dir)
            _adopt_run(donor, run_dir)
            saved = load_run_config(run_dir)
            run_config = run_config.replace(model=saved.model, agent=saved.agent)
    return run_config, storage.is_file(storage.join(run_dir, RUN_CONFIG_FILE))


def achievement_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The final-result entries of a run summary's ``achievements`` (empty for envs without):
    ``achievement_episodes`` and ``achievement_success/<name>`` (percent of those episodes)."""
    achievements = summary.get("achievements")
    if not achievements:
        return {}
    out: dict[str, Any] = {ACHIEVEMENT_EPISODES_KEY: int(achievements["episodes"])}
    out.update({f"{ACHIEVEMENT_SUCCESS_PREFIX}{name}": float(rate)
                for name, rate in achievements["success_rates"].items()})
    return out


class TrialReporter:
    """Turns the runtime's progress records into Tune results and checkpoints."""

    def __init__(self, run_dir: str, total_steps: int):
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.train_return: float | None = None
        self.reported_checkpoint: str | None = None

    def metrics(self, record: Mapping[str, Any], evals: list[Mapping[str, Any]]) -> dict[str, Any] | None:
        """Tune metrics of a progress record, or ``None`` while there is no score yet."""
        if record.get("episode_return") is not None:
            self.train_return = float(record["episode_return"])
        out: dict[str, Any] = {k: record[k] for k in REPORTED_KEYS if record.get(k) is not None}
        out.update({k: v for k, v in record.items() if k.startswith("train/") and v is not None})
        out["budget_fraction"] = record["env_steps"] / max(self.total_steps, 1)
        out["final"] = False
        if self.train_return is not None:
            out["episode_return"] = self.train_return
        if evals:
            out["eval_return"] = float(evals[-1]["return_mean"])
            out["score"] = out["eval_return"]
        elif self.train_return is not None:
            out["score"] = self.train_return
        else:
            return None
        return out

    def report(self, metrics: Mapping[str, Any], learner_checkpoint: str | None) -> None:
        from ray import tune

        if not learner_checkpoint or learner_checkpoint == self.reported_checkpoint:
            tune.report(dict(metrics))
            return
        with tempfile.TemporaryDirectory(prefix="distwm-trial-") as tmp:
            state = {"run_dir": self.run_dir, "checkpoint": learner_checkpoint,
                     "env_steps": metrics.get("env_steps"), "updates": metrics.get("updates")}
            with open(os.path.join(tmp, TRIAL_STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(state, f)
            tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(tmp))
        self.reported_checkpoint = learner_checkpoint

    def on_progress(self, record: Mapping[str, Any], driver: Any) -> None:
        metrics = self.metrics(record, getattr(driver, "evals", []))
        if metrics is not None:
            self.report(metrics, getattr(driver, "checkpoint", None))

    def finish(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """The last result: the final evaluation is the trial's score."""
        final_eval = summary.get("final_eval")
        metrics: dict[str, Any] = {
            "env_steps": int(summary["env_steps"]), "updates": int(summary["updates"]),
            "env_steps_per_s": float(summary["env_steps_per_s"]),
            "updates_per_s": float(summary["updates_per_s"]),
            "replay_ratio": float(summary["replay_ratio"]),
            "budget_fraction": summary["env_steps"] / max(self.total_steps, 1),
            "final": True, "total_seconds": float(summary.get("total_seconds", 0.0)),
            "resumed": int(summary.get("epoch", 0)),
            "actor_restarts": int(sum(summary.get("restarts", {}).values())),
            **achievement_metrics(summary),
        }
        last_train = summary.get("last_train_return")
        if last_train is not None:
            metrics["episode_return"] = float(last_train)
        if final_eval is not None:
            metrics["eval_return"] = float(final_eval["return_mean"])
            metrics["eval_returns"] = [float(r) for r in final_eval["returns"]]
            metrics["score"] = metrics["eval_return"]
            metrics["score_source"] = "final_eval"
        elif last_train is not None:
            metrics["score"] = float(last_train)
            metrics["score_source"] = "train"
        else:
            raise RuntimeError(
                f"the run in {self.run_dir} ended without an evaluation or a finished episode: "
                "no score (raise budget.env_steps or lower the env's time limit)"
            )
        self.report(metrics, summary.get("checkpoint"))
        return metrics


def train_trial(config: dict[str, Any], sweep: Mapping[str, Any]) -> None:
    """The Tune function trainable (see the module docstring)."""
    from ray import tune

    from distwm.runtime.driver import run

    sweep = SweepConfig.from_dict(sweep)
    run_dir = trial_run_dir(sweep, config, tune.get_context().get_trial_id())
    run_config = trial_run_config(sweep, config, run_dir)
    run_config, resume = resume_point(run_config, run_dir, tune.get_checkpoint())
    reporter = TrialReporter(run_dir, run_config.runtime.total_steps)
    result = run(run_config, resume=run_dir if resume else None, on_progress=reporter.on_progress)
    reporter.finish(result.summary)


# -- dataset-trained models: one Ray Train run per trial ------------------------------------------

def data_parallel_trial_config(base: DataParallelRunConfig, config: Mapping[str, Any],
                               run_dir: str) -> DataParallelRunConfig:
    """The run of one trial: the sampled ``config["model_config"]`` / ``config["data_parallel"]``
    entries over ``base``, in ``run_dir``."""
    unknown = sorted(set(config) - {"model_config", "data_parallel"})
    if unknown:
        raise ValueError(f"a data-parallel trial's param_space has 'model_config' and "
                         f"'data_parallel' entries, got {unknown}")
    dp = {**base.data_parallel.to_dict(), **config.get("data_parallel", {}), "run_dir": run_dir}
    return DataParallelRunConfig(
        model=base.model, model_config={**base.model_config, **config.get("model_config", {})},
        data_parallel=DataParallelConfig.from_dict(dp, _prefix="data_parallel.")).validate()


def _data_parallel_metrics(record: Mapping[str, Any], final: bool) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    loss = record.get("train/loss")
    if loss is not None:
        out.update(loss=float(loss), score=-float(loss))
    out["final"] = final
    return out


def train_data_parallel_trial(config: dict[str, Any], run: Mapping[str, Any]) -> None:
    """The Tune function trainable of a data-parallel run (see the module docstring); ``run``
    is the base ``DataParallelRunConfig.to_dict()`` whose ``run_dir`` is the runs root."""
    from ray import tune

    from distwm.runtime.data_parallel import run as run_data_parallel
    from distwm.runtime.setup import RUN_CONFIG_FILE
    from distwm.utils import storage

    base = DataParallelRunConfig.from_dict(run)
    run_dir = storage.join(base.data_parallel.run_dir, tune.get_context().get_trial_id())
    run_config = data_parallel_trial_config(base, config, run_dir)
    resume = run_dir if storage.is_file(storage.join(run_dir, RUN_CONFIG_FILE)) else None
    reporter = TrialReporter(run_dir, run_config.data_parallel.total_updates)
    result = run_data_parallel(
        run_config, resume=resume,
        on_progress=lambda rec, driver: reporter.report(_data_parallel_metrics(rec, False),
                                                        driver.checkpoint))
    summary = result.summary
    report_scalars = (summary.get("media") or {}).get("scalars") or {}
    final = {"updates": summary["updates"], "updates_per_s": summary["updates_per_s"],
             **summary["final_metrics"],
             **{f"{REPORT_PREFIX}{k}": v for k, v in report_scalars.items()}}
    reporter.report(_data_parallel_metrics(final, True), summary.get("checkpoint"))


def data_parallel_tuner(base: DataParallelRunConfig, param_space: Mapping[str, Any], *,
                        name: str = "data-parallel", storage_path: str = "~/ray_results",
                        metric: str | None = "loss", mode: str | None = "min", num_samples: int = 1,
                        max_concurrent_trials: int | None = None, max_failures: int = 0,
                        driver_cpus: float = 1.0, keep_checkpoints: int | None = None,
                        verbose: int | None = None, resume: bool = False) -> Any:
    """A ``tune.Tuner`` whose trials are Ray Train runs of ``base`` with ``param_space``
    (``{"model_config": {...}, "data_parallel": {...}}`` of values or Tune domains) laid over
    it. Runs go to ``base.data_parallel.run_dir`` (default ``<storage_path>/<name>/runs``). A
    trial reserves ``driver_cpus`` for its driver (as a sweep's ``tune.driver_cpus``); its Ray
    Train workers reserve theirs when they start, so bound ``max_concurrent_trials`` to the runs
    the cluster holds at once. ``metric=None``: Tune checks no metric in the results (a metric
    that only the final result has, e.g. a ``report/`` scalar). ``keep_checkpoints``: Tune
    checkpoints kept per trial (``None``: all); ``verbose``: Tune's (``None``: its default).
    ``resume``: continue the experiment at ``<storage_path>/<name>`` (``Tuner.restore``:
    unfinished and errored trials from their checkpoints; the experiment keeps its own
    settings, ``param_space`` is not used)."""
    from ray import tune

    from distwm.utils import storage

    if "://" not in storage_path:
        storage_path = os.path.abspath(os.path.expanduser(storage_path))
    runs = base.data_parallel.run_dir or storage.join(storage_path, name, "runs")
    base = base.replace(data_parallel=base.data_parallel.replace(run_dir=runs)).validate()
    trainable = tune.with_resources(
        tune.with_parameters(train_data_parallel_trial, run=base.to_dict()), {"cpu": driver_cpus})
    if resume:
        return tune.Tuner.restore(storage.join(storage_path, name), trainable=trainable,
                                  resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=dict(param_space),
        tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent_trials),
        run_config=tune.RunConfig(name=name, storage_path=storage_path,
                                  failure_config=tune.FailureConfig(max_failures=max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=keep_checkpoints),
                                  verbose=verbose))
