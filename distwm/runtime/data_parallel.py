"""The data-parallel path: dataset-trained models (Genie now, I-JEPA and DiT next) trained by
Ray Train (``ray.train.torch.TorchTrainer``, DDP: gloo on CPU, NCCL on GPU) over a data set
(:mod:`distwm.datasets.training_data`): a shard directory of clips
(:mod:`distwm.datasets.video_shards`) or an image data set (CIFAR-10, an image folder,
``sklearn:digits``).

::

    distwm train genie --data DATA --workers 4 [--gpus-per-worker 1] [--stage tokenizer] --steps 50000
    distwm train jepa --data sklearn:digits:32 --workers 2 --steps 2000
    distwm train --resume RUN_DIR --steps 80000

**The contract of a dataset-trained model** (what this path drives; Genie implements it):

* Registry: ``ModelSpec(name, import_path, config_path, kind="dataset-trained",
  protocol_path="pkg.module:Class")``; plugins: ``distwm.registry.register_model(...,
  kind="dataset-trained", protocol_path=...)``.
* Construction: ``Class.from_config(config, dataset_info, device="cpu")``; ``dataset_info``
  is ``describe_training_data(DATA)``: a shard directory's manifest (``read_manifest(DATA)``:
  ``frame_shape`` ``[C, H, W]``, ``action_dim``, ``steps``, ``episodes``, ``env``, ...), or for
  an image data set ``{"kind": "images", "frame_shape": [C, H, W], "num_classes", "size",
  "test_size", "classes", "split", "source"}``; ``device`` this worker's device.
* ``data_spec()`` -> :class:`distwm.agent.DataSpec` with one or more ``SampleSpec`` (its
  ``batch_size`` is per worker; ``seq_len`` is the clip length, clips never cross an episode
  start; ``train_ratio`` is not used here: give 0); samples with a ``share`` come in the
  updates ``DataSpec.due(k)`` names.
* ``update({sample name: batch}) -> {metric: float}``: a batch is a replay batch, a dict of
  numpy arrays ``(B, T, ...)``: ``image`` uint8 ``(B, T, C, H, W)``, ``action`` float32
  ``(B, T, A)`` (the action that led to the frame, zero at ``is_first``), ``reward``,
  ``is_first``, ``is_terminal``, ``is_last``; from an image data set (``seq_len`` 1) it is
  ``{"image": (B, C, H, W) uint8, "label": (B,) int64}``. The model averages its gradients
  over the group with :func:`distwm.utils.distributed.reduce_gradients` after backward and
  before clipping (Ray Train has initialised the ``torch.distributed`` group), so every replica
  applies the same step; a step it skips still joins the sync point (``join_skipped``).
* ``state_dict()`` / ``load_state_dict()`` in the one checkpoint format
  (:mod:`distwm.utils.checkpoint`: ``format``, ``architecture``, networks, optimisers,
  counters); loaded with ``weights_only=True``.
* Optional ``report(batch) -> {"scalars": {...}, "images": {name: (H, W, 3) uint8},
  "videos": {name: (T, H, W, 3) uint8}}``, as RL agents' (called by rank 0 at each checkpoint;
  the media go to TensorBoard, ``media/`` and the report). Its batch is held-out rows when the
  data set has a test split (:data:`distwm.runtime.data_parallel_loop.REPORT_ROWS` of them, or
  the Trainable's ``report_rows``), else the last batch of the first sample.
* Optional config field ``stage`` (Genie: ``tokenizer | lam | dynamics | all``): ``--stage X``
  sets it; a model whose config has none refuses ``--stage`` by name.

**The run.** :func:`run` checks everything it can without torch (the config, the data set's
description, enough shard files or images for the workers, the cluster's resources), writes
``run.yaml`` and starts one zero-CPU Ray task that builds and fits the trainer
(:func:`build_trainer`; :mod:`distwm.runtime.data_parallel_loop` is what runs inside Ray
Train), so this process imports no torch. The workers' reports reach this process through a queue: each becomes a progress line
(updates/s, frames/s, loss, ETA), a metrics row (``metrics.jsonl``, TensorBoard, wandb, the Ray
dashboard's gauges) and a Tune result when ``on_progress`` reports to Tune. Ray Train keeps the
checkpoints under ``<run_dir>/train`` (``FailureConfig(max_failures)`` restarts the worker group
from the last one; ``--resume`` continues the run from it: Ray Train finds its own snapshot
there); the report (``report.md``, ``loss_curve.png``, ``summary.json``) ends the run. The
counters never go backwards: a restart redoes the updates after its checkpoint, and the report
says how many.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from typing import Any, Callable, Mapping

from distwm.configs.runtime_config import DataParallelRunConfig
from distwm.datasets.training_data import data_layout, normalize_source, source_name
from distwm.runtime import placement
from distwm.runtime.checkpoints import counters_file
from distwm.runtime.data_parallel_report import format_data_progress, write_data_parallel_report
from distwm.runtime.data_parallel_setup import absolute, check_fits, load_data_parallel_run, make_plan
from distwm.runtime.driver import RunResult
from distwm.runtime.progress import ProgressMixin
from distwm.runtime.run_files import RunFilesMixin
from distwm.runtime.run_report import DashboardGauges
from distwm.runtime.setup import RUN_CONFIG_FILE
from distwm.utils import storage

__all__ = ["DataParallelDriver", "build_trainer", "load_data_parallel_run", "make_plan", "run"]

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[Mapping[str, Any], "DataParallelDriver"], None]
_POLL_S = 0.5


def run(config: DataParallelRunConfig | None, *, resume: str | None = None,
        on_progress: ProgressCallback | None = None) -> RunResult:
    """Train a dataset-trained model on Ray Train (see the module docstring).

    ``resume``: a run directory to continue from its last checkpoint (``config`` may then be
    ``None``: its ``run.yaml`` is used; a given config may change only ``data_parallel`` fields
    other than ``data``). ``on_progress(record, driver)`` is called after every progress line.
    """
    if resume is not None:
        saved = load_data_parallel_run(resume)
        run_config = saved if config is None else config
        if (run_config.model, run_config.model_config) != (saved.model, saved.model_config) or \
                _source(run_config.data_parallel.data) != _source(saved.data_parallel.data):
            raise ValueError("a resumed run keeps its model, model config and data; start a new "
                             "run to change them")
        run_config = run_config.replace(data_parallel=run_config.data_parallel.replace(run_dir=resume))
    elif config is None:
        raise ValueError("run() needs a DataParallelRunConfig (or resume=RUN_DIR)")
    else:
        run_config = config
    return DataParallelDriver(run_config, resume=resume is not None, on_progress=on_progress).run()


def _source(data: str | None) -> str | None:
    return None if not data else normalize_source(data)


def build_trainer(run_config: DataParallelRunConfig, queue: Any = None) -> Any:
    """The ``ray.train.torch.TorchTrainer`` of a run (imports torch: not for the driver
    process; :func:`run` builds it in a Ray task). ``auto`` fields are resolved against the
    connected cluster. ``queue``: a ``ray.util.queue.Queue`` that gets every report."""
    import ray

    from distwm.runtime.data_parallel_loop import build_torch_trainer

    if run_config.data_parallel.run_dir is None:
        raise ValueError("build_trainer needs data_parallel.run_dir (Ray Train's storage_path)")
    resources = ray.cluster_resources() if ray.is_initialized() else None
    return build_torch_trainer(make_plan(run_config, resources, queue))


def _fit(plan: dict[str, Any]) -> dict[str, Any]:
    from distwm.runtime.data_parallel_loop import fit_trainer

    return fit_trainer(plan)


class DataParallelDriver(ProgressMixin, RunFilesMixin):
    """One data-parallel run seen from the driver: checks, run directory, the fit task, the
    workers' reports (progress, metrics, media, restarts) and the report. Only ``_say``,
    ``_save_counters`` and ``_upload_logs`` come from the RL driver's mixins."""

    def __init__(self, run_config: DataParallelRunConfig, resume: bool = False,
                 on_progress: ProgressCallback | None = None):
        self.run_config = run_config
        self.runtime = run_config.data_parallel  # what the mixins read (verbose)
        self.resuming, self.on_progress = resume, on_progress
        self.plan: dict[str, Any] = {}
        self.run_dir = self.local_dir = ""
        self.counters: dict[str, Any] = {"updates": 0, "epoch": 0, "seconds": 0.0, "restarts": 0,
                                         "updates_redone": 0}
        self.logger: Any = None
        self.gauges = DashboardGauges()
        self.start_time = 0.0
        self.session_updates = 0  # updates at this session's start
        self.history: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.media: dict[str, Any] = {}
        self.checkpoint: str | None = None
        self.fingerprints: dict[int, str] = {}
        self.replicas_identical: bool | None = None
        self.started: dict[str, Any] | None = None  # rank 0's first start record
        self.last_failure: str | None = None
        self.fatal: str | None = None
        self.ups_ema: float | None = None
        self.frames = 0
        self.data_wait: list[float] = []
        self.last: dict[str, float] = {}

    # -- before Ray ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        dp = self.run_config.data_parallel
        self.plan = make_plan(self.run_config)  # every check that needs no cluster
        location = dp.run_dir or os.path.join(
            "runs", f"{self.plan['model']}-{source_name(self.plan['data'])}-"
                    f"{time.strftime('%Y%m%d-%H%M%S')}")
        self.run_dir = absolute(location)
        self.local_dir = (storage.local_path(self.run_dir) if storage.is_local(self.run_dir)
                          else os.path.join(tempfile.gettempdir(), "distwm-runs",
                                            self.run_dir.rstrip("/").rpartition("/")[2]))
        self.run_config = self.run_config.replace(data_parallel=dp.replace(
            data=self.plan["data"], run_dir=self.run_dir))
        config_file = storage.join(self.run_dir, RUN_CONFIG_FILE)
        if self.resuming:
            self._load_counters()
        elif storage.is_file(config_file):
            raise ValueError(f"run directory {self.run_dir!r} already holds a run: resume it with "
                             f"--resume {self.run_dir} or choose another --run-dir")
        os.makedirs(self.local_dir, exist_ok=True)
        if self.resuming and not storage.is_local(self.run_dir):  # the curve spans the sessions
            for name in ("metrics.jsonl", "progress.log"):
                if storage.is_file(storage.join(self.run_dir, name)):
                    storage.download_file(storage.join(self.run_dir, name), os.path.join(self.local_dir, name))
        storage.write_text(config_file, self.run_config.to_yaml())

    def _load_counters(self) -> None:
        try:
            saved = json.loads(storage.read_text(counters_file(self.run_dir)))
        except FileNotFoundError:
            saved = {}
        for key, value in saved.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.counters[key] = max(self.counters.get(key, value), value)
        self.events = list(saved.get("events", []))  # the restarts of earlier sessions
        self.counters["epoch"] = int(self.counters["epoch"]) + 1
        total = self.run_config.data_parallel.total_updates
        if self.counters["updates"] >= total:
            raise ValueError(f"{self.run_dir} has {self.counters['updates']:,d} updates already "
                             f"(data_parallel.total_updates {total:,d}): continue it with a larger "
                             "--steps")

    def _counters_snapshot(self) -> dict[str, Any]:
        return {**self.counters, "seconds": self.counters["seconds"] + self._elapsed(),
                "events": list(self.events)}

    def _elapsed(self) -> float:
        return time.monotonic() - self.start_time if self.start_time else 0.0

    def _plan_on_cluster(self) -> None:
        import ray

        resources = ray.cluster_resources()
        self.plan = make_plan(self.run_config, resources)
        check_fits(self.plan["workers"], self.plan["cpus_per_worker"], self.plan["gpus_per_worker"],
                   resources)

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> RunResult:
        import ray
        from ray.util.queue import Queue

        from distwm.utils.run_logger import Logger

        self._prepare()
        dp = self.run_config.data_parallel
        plan = self.plan
        started_ray = placement.connect(dp.address, max(os.cpu_count() or 1, math.ceil(
            (plan["workers"] if dp.workers != "auto" else 1) * dp.cpus_per_worker)))
        queue = None
        try:
            self._plan_on_cluster()
            queue = Queue(actor_options={"num_cpus": 0})
            self.plan["queue"] = queue
            self.logger = Logger(self.local_dir, enable_wandb=dp.wandb, wandb_project=dp.wandb_project,
                                 config=self.run_config.to_dict())
            self.start_time = time.monotonic()
            self.session_updates = int(self.counters["updates"])
            device = f"{self.plan['gpus_per_worker']:g} GPU" if self.plan["use_gpu"] else "CPU"
            self._say(f"[distwm] run {self.run_dir}: {self.plan['model']} on {self.plan['data']} "
                      f"({data_layout(self.plan['dataset_info'])}), {self.plan['workers']} "
                      f"Ray Train workers on {device} each, {dp.total_updates:,d} updates"
                      + (f"; resuming at {self.counters['updates']:,d} updates" if self.resuming else ""))
            ref = ray.remote(num_cpus=0, max_retries=0)(_fit).remote(self.plan)
            try:
                result = self._wait(ref, queue)
            except KeyboardInterrupt:
                ray.cancel(ref, force=True)
                self._save_counters()
                self._upload_logs()
                self._say(f"[distwm] interrupted; last checkpoint {self.checkpoint}; continue with "
                          f"`distwm train --resume {self.run_dir}`")
                raise
            return self._finish(result)
        finally:
            if self.logger is not None:
                self.logger.close()
            if queue is not None:
                ray.kill(queue.actor)
            if started_ray:
                ray.shutdown()

    def _wait(self, ref: Any, queue: Any) -> dict[str, Any]:
        import ray

        while True:
            done, _ = ray.wait([ref], timeout=_POLL_S)
            self._drain(queue)
            if self.fatal is not None:
                ray.cancel(ref, force=True)
                raise ValueError(self.fatal)
            if done:
                break
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            self._save_counters()
            raise RuntimeError(f"the data-parallel run {self.run_dir} failed "
                               f"(after {self.counters['restarts']} restarts): {cause}") from None
        self._drain(queue)
        return result

    def _drain(self, queue: Any) -> None:
        size = queue.qsize()
        for item in queue.get_nowait_batch(size) if size else ():
            getattr(self, f"_on_{item['kind']}")(item)

    # -- what the workers and the controller send --------------------------------------------------
    def _on_fatal(self, item: Mapping[str, Any]) -> None:
        self.fatal = self.fatal or str(item["error"])

    def _on_failure(self, item: Mapping[str, Any]) -> None:
        self.last_failure = "; ".join(f"rank {r}: {e}" for r, e in sorted(item["errors"].items()))
        self._say(f"[distwm] worker group failed ({self.last_failure}); Ray Train restarts it "
                  f"from its last checkpoint (max_failures {self.run_config.data_parallel.max_failures})")

    def _on_start(self, item: Mapping[str, Any]) -> None:
        if item["rank"] != 0:
            return
        if self.started is None:
            self.started = dict(item)
            where = f" from {item['restored_from']}" if item.get("restored_from") else ""
            self._say(f"[distwm] workers started at {item['updates']:,d} updates{where}")
            return
        redone = max(0, int(self.counters["updates"]) - int(item["updates"]))
        self.counters["restarts"] += 1
        self.counters["updates_redone"] += redone
        self.events.append({"cause": self.last_failure or "worker group lost",
                            "updates": int(self.counters["updates"]),
                            "restored_from": item.get("restored_from"), "updates_redone": redone})
        self.last_failure = None
        self._say(f"[distwm] worker group restarted at {item['updates']:,d} updates "
                  f"({redone:,d} to redo)")

    def _on_media(self, item: Mapping[str, Any]) -> None:
        report, step = item["report"] or {}, int(item["updates"])
        scalars = {k: float(v) for k, v in (report.get("scalars") or {}).items()}
        if scalars:
            self.logger.log_scalars({f"report/{k}": v for k, v in scalars.items()}, step)
        images = dict(zip(report.get("images") or {}, self.logger.log_images(report.get("images") or {}, step)))
        videos = dict(zip(report.get("videos") or {}, self.logger.log_videos(report.get("videos") or {}, step)))
        self.media = {"updates": step, "scalars": scalars, "images": images, "videos": videos}

    def _on_report(self, item: Mapping[str, Any]) -> None:
        ranks = item["metrics"]
        updates = min(int(m["updates"]) for m in ranks)
        if item.get("checkpoint"):
            self.checkpoint = item["checkpoint"]
        prints = {int(m["rank"]): m.get("fingerprint") for m in ranks}
        if all(prints.values()):
            self.fingerprints = prints
            self.replicas_identical = len(set(prints.values())) == 1
            if not self.replicas_identical:
                _log.error("the replicas differ at %d updates: %s", updates, prints)
        seconds = max(max(float(m["window_seconds"]) for m in ranks), 1e-9)
        ups = float(ranks[0]["window_updates"]) / seconds
        self.ups_ema = ups if self.ups_ema is None else 0.7 * self.ups_ema + 0.3 * ups
        frames = sum(int(m["window_frames"]) for m in ranks)
        self.frames += frames
        wait = sum(float(m["data_wait_seconds"]) / seconds for m in ranks) / len(ranks)
        self.data_wait.append(wait)
        self.counters["updates"] = max(int(self.counters["updates"]), updates)
        keys = sorted({k for m in ranks for k in m if k.startswith("train/")})
        train = {k: sum(float(m[k]) for m in ranks if k in m) / sum(1 for m in ranks if k in m)
                 for k in keys}
        left = self.run_config.data_parallel.total_updates - updates
        rec: dict[str, Any] = {
            "updates": updates, "updates_per_s": self.ups_ema, "frames_per_s": frames / seconds,
            "data_wait": wait, "workers": len(ranks), "restarts": int(self.counters["restarts"]),
            "eta_seconds": 0.0 if left <= 0 else left / self.ups_ema if self.ups_ema > 0 else None,
            "elapsed": self._elapsed(), **train,
        }
        if self.replicas_identical is not None and all(prints.values()):
            rec["replicas_identical"] = 1.0 if self.replicas_identical else 0.0
        self.last = train
        self.history.append(rec)
        self.logger.log_scalars({k: v for k, v in rec.items() if v is not None}, updates)
        self.gauges.set(rec)
        self._say(format_data_progress(rec, self.run_config.data_parallel.total_updates))
        self._save_counters()
        if self.on_progress is not None:
            self.on_progress(rec, self)

    # -- the end --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        seconds = max(self._elapsed(), 1e-9)
        dp, started = self.run_config.data_parallel, self.started or {}
        info = self.plan["dataset_info"]
        return {
            "model": self.plan["model"], "data": self.plan["data"],
            "data_name": source_name(self.plan["data"]), "run_dir": self.run_dir,
            "total_updates": dp.total_updates, "updates": int(self.counters["updates"]),
            "updates_redone": int(self.counters["updates_redone"]),
            "restarts": int(self.counters["restarts"]), "events": list(self.events),
            "epoch": int(self.counters["epoch"]), "seconds": seconds,
            "total_seconds": self.counters["seconds"] + seconds,
            "updates_per_s": (self.counters["updates"] - self.session_updates) / seconds,
            "frames_per_s": self.frames / seconds,
            "data_wait": sum(self.data_wait) / len(self.data_wait) if self.data_wait else 0.0,
            "workers": self.plan["workers"], "files": len(info.get("shards", ())),
            "data_layout": data_layout(info),
            "device": started.get("device", "cpu"), "batches": started.get("batches", "-"),
            "replicas_identical": self.replicas_identical, "fingerprints": dict(self.fingerprints),
            "final_metrics": dict(self.last), "media": dict(self.media), "checkpoint": self.checkpoint,
        }

    def _finish(self, result: Mapping[str, Any]) -> RunResult:
        self.checkpoint = result.get("checkpoint") or self.checkpoint
        summary = self.summary()
        report = self._close_run(summary, write_data_parallel_report)
        return RunResult(self.run_dir, summary, report, self.history)
