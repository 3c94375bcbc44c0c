"""The driver: ``distwm.runtime.run(config)``.

It validates the run (``setup.probe_run``), connects to Ray, reserves one placement group, starts
the replay shards, the learner, the env workers and the evaluator, and then drives them with
short calls (``collect`` for about ``collect_seconds``, ``train`` for about ``train_seconds``), so
that it regains control often: it hands the learner's newest weights to the workers, restarts
dead actors (bounded by ``max_restarts``), runs evaluations, and logs a progress line and
metrics every ``progress_seconds``. The run ends with a checkpoint, a final evaluation and a
report (``report.md`` + ``learning_curve.png``) in the run directory.

Whatever dies, nothing that reached replay is lost: shards log every chunk
(:mod:`distwm.runtime.replay_store`), learners checkpoint soon and often, and the driver rewrites
its counters at every progress line, so ``distwm train --resume RUN_DIR`` continues a run whose
driver died. The run directory may be a URI (:mod:`distwm.utils.storage`); the driver then keeps
its logs in a local directory and uploads them with the report.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from distwm.configs.runtime_config import RunConfig, RuntimeConfig
from distwm.loop.schedule import Cadence
from distwm.runtime import placement
from distwm.runtime.progress import ProgressMixin
from distwm.runtime.run_files import RunFilesMixin
from distwm.runtime.run_report import DashboardGauges, write_report
from distwm.runtime.scheduling import SchedulingMixin
from distwm.runtime.setup import (RUN_CONFIG_FILE, RunSpec, check_resume_compatible,
                                  default_run_dir, load_run_config, probe_run, replay_layout)
from distwm.runtime.supervision import Role, SupervisionMixin
from distwm.utils import storage

__all__ = ["run", "Driver", "RunResult"]

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[Mapping[str, Any], "Driver"], None]


@dataclass
class RunResult:
    """What ``run`` returns: the run directory, the summary the report shows, and the
    progress records (one per ``progress_seconds``)."""

    run_dir: str
    summary: dict[str, Any]
    report: str
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def env_steps(self) -> int:
        return self.summary["env_steps"]

    @property
    def updates(self) -> int:
        return self.summary["updates"]


def run(config: Any, runtime: RuntimeConfig | None = None, *, resume: str | None = None,
        on_progress: ProgressCallback | None = None) -> RunResult:
    """Train with env workers, replay shards and a learner on Ray.

    ``config``: a :class:`RunConfig`, or an agent config object (an ``RLConfig`` subclass) with
    ``runtime`` given separately. ``resume``: a run directory to continue from its last
    checkpoint (``config`` may then be ``None``: the saved ``run.yaml`` is used).
    ``on_progress(record, driver)`` is called after every progress line.
    """
    if resume is not None:
        saved = load_run_config(resume)
        if config is None:
            run_config = saved
        else:
            run_config = _as_run_config(config, runtime)
            check_resume_compatible(saved, run_config)
        run_config = run_config.replace(runtime=run_config.runtime.replace(run_dir=resume))
    else:
        if config is None:
            raise ValueError("run() needs a config (or resume=RUN_DIR)")
        run_config = _as_run_config(config, runtime)
    return Driver(run_config, resume=resume is not None, on_progress=on_progress).run()


def _as_run_config(config: Any, runtime: RuntimeConfig | None) -> RunConfig:
    if isinstance(config, RunConfig):
        return config if runtime is None else config.replace(runtime=runtime)
    if hasattr(config, "to_dict") and hasattr(type(config), "AGENT_CLASS"):
        return RunConfig.from_agent_config(config, runtime)
    raise ValueError(
        f"run() takes a RunConfig or an RL agent config, got {type(config).__name__}"
    )


class Driver(SupervisionMixin, SchedulingMixin, ProgressMixin, RunFilesMixin):
    """Owns one run's actors and its main loop (see the module docstring).

    Supervision (actor factories, restarts), scheduling, progress/reporting and the run
    directory's files are the four mixins; every attribute they use is created here, and nothing here touches Ray or the
    disk (that starts in :meth:`run`).
    """

    def __init__(self, run_config: RunConfig, resume: bool = False,
                 on_progress: ProgressCallback | None = None):
        self.run_config = run_config
        self.runtime = run_config.runtime
        self.resuming = resume
        self.on_progress = on_progress
        # what the setup finds (``_prepare`` / ``_plan``)
        self.spec: RunSpec | None = None
        self.layout: Any = None
        self.plan: Any = None
        self.want_gpu = False
        self.run_dir = ""  # a path or URI
        self.local_dir = ""  # where logs, metrics and the report are written first
        self.checkpoint: str | None = None
        self.counters: dict[str, Any] = {"env_steps": 0, "episodes": 0, "epoch": 0, "seconds": 0.0,
                                         "restarts": {}, "updates_lost": 0, "acked_steps": 0}
        self.restored: list[dict[str, Any]] = []
        self.acked_chunks: set[tuple[str, int]] | None = None  # runtime.audit_replay
        self.audit: dict[str, Any] | None = None
        # actors (supervision)
        self.started_ray = False
        self.pg: Any = None
        self.bundle_offset, self.owns_pg = 0, False
        self.workers: list[Any] = []
        self.worker_incarnation: list[int] = []
        self.shards: list[Any] = []
        self.shard_stats: list[dict[str, Any]] = []
        self.learners: list[Any] = []
        self.evaluator: Any = None
        self.weights: tuple[int, list] = (0, [])
        self.updates = 0
        self.events: list[dict[str, Any]] = []
        self.pids: dict[tuple[str, int], int | None] = {}  # (role, index) -> process id
        # calls in flight and what they mean (scheduling)
        self.calls: dict[Any, tuple[str, int, Any]] = {}
        self.claims: dict[Any, int] = {}
        self.learner_calls: dict[Any, int] = {}  # train call -> rank
        self.learner_results: dict[int, dict[str, Any]] = {}
        self.eval_call: Any = None
        self.worker_done: list[bool] = []
        self.collect_done = self.learner_done = False
        self.eval_cadence = Cadence(self.runtime.eval_interval)  # every eval_interval env steps
        self._shard_suspect: set[int] = set()
        # what was measured (progress)
        self.logger: Any = None
        self.gauges = DashboardGauges()
        self.start_time = 0.0
        self.start_steps = self.start_updates = 0
        self.history: list[dict[str, Any]] = []
        self.window: dict[str, Any] = {}
        self.fps_ema: float | None = None
        self.learner_time = {"wait": 0.0, "total": 0.0}
        self.worker_time = {"act_time": 0.0, "env_time": 0.0, "wait_time": 0.0, "seconds": 0.0}
        self.worker_versions: dict[int, int] = {}
        self.worker_steps: dict[int, int] = {}
        self.metric_max: dict[str, float] = {}
        self.recent_returns: deque = deque(maxlen=20)
        self.evals: list[dict] = []
        self.media: dict[str, Any] = {}

    @property
    def learner(self) -> Any:
        """Rank 0 of the learner group (it publishes weights and checkpoints)."""
        return self.learners[0] if self.learners else None

    def _prepare(self) -> None:
        """All checks that need no Ray, then the run directory."""
        self.spec = probe_run(self.run_config)
        rt = self.runtime
        device = str(getattr(self.spec.agent_config, "device", "auto"))
        self.want_gpu = device == "auto" or device.startswith(("cuda", "gpu"))
        if rt.workers != "auto":
            self.layout = replay_layout(rt, self.spec, rt.workers)
            placement.plan_actors(rt, math.inf, 0)  # stream/shard check before Ray
        location = rt.run_dir or default_run_dir(self.spec)
        self.run_dir = location if "://" in location else os.path.abspath(location)
        self.local_dir = (storage.local_path(self.run_dir) if storage.is_local(self.run_dir)
                          else os.path.join(tempfile.gettempdir(), "distwm-runs",
                                            self.run_dir.rstrip("/").rpartition("/")[2]))
        config_file = storage.join(self.run_dir, RUN_CONFIG_FILE)
        if self.resuming:
            self._load_resume_state()
        elif storage.is_file(config_file):
            raise ValueError(
                f"run directory {self.run_dir!r} already holds a run: resume it with "
                f"--resume {self.run_dir} or choose another --run-dir"
            )
        os.makedirs(self.local_dir, exist_ok=True)
        if self.resuming and not storage.is_local(self.run_dir):  # the curve spans the sessions
            for name in ("metrics.jsonl", "progress.log"):
                if storage.is_file(storage.join(self.run_dir, name)):
                    storage.download_file(storage.join(self.run_dir, name),
                                          os.path.join(self.local_dir, name))
        storage.write_text(config_file, self.run_config.replace(
            runtime=rt.replace(run_dir=self.run_dir)).to_yaml())
        if rt.audit_replay:
            self.acked_chunks = set()

    def _local_cpus(self) -> int | None:
        rt = self.runtime
        if rt.workers == "auto":
            return None
        need = (rt.learners * rt.learner_cpus + rt.workers * rt.worker_cpus + rt.shards * rt.shard_cpus
                + (rt.evaluator_cpus if rt.eval_episodes else 0))
        return max(os.cpu_count() or 1, math.ceil(need))

    def _plan(self) -> None:
        import ray

        res = ray.cluster_resources()
        cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
        if not self.want_gpu and self.runtime.learner_gpus not in ("auto", 0, 0.0):
            raise ValueError("the agent config asks for device='cpu' but runtime.learner_gpus > 0")
        self.plan = placement.plan_actors(self.runtime, cpus, gpus, self.want_gpu,
                                          learner_resource=res.get(placement.LEARNER_RESOURCE, 0) > 0)
        placement.check_fits(self.plan, cpus, gpus)
        if str(getattr(self.spec.agent_config, "device", "auto")).startswith("cuda") and not self.plan.learner_gpus:
            raise ValueError("the agent config asks for a CUDA device but the Ray cluster has no GPU")
        self.layout = replay_layout(self.runtime, self.spec, self.plan.workers)

    def _loop(self) -> None:
        import ray

        next_tick = time.monotonic() + self.runtime.progress_seconds
        while True:
            if self._shard_suspect:
                self._shard_suspect.clear()
                self._check_shards()
            self._schedule()
            if self.collect_done and self.learner_done and not any(
                    role == Role.WORKER for role, _, _ in self.calls.values()):
                break
            timeout = max(next_tick - time.monotonic(), 0.0)
            ready = []
            if self.calls:
                ready, _ = ray.wait(list(self.calls), num_returns=1, timeout=timeout)
            else:
                time.sleep(min(timeout, 0.05))
            for ref in ready:
                self._handle(ref)
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + self.runtime.progress_seconds

    def _finish(self) -> RunResult:
        import ray

        if self.eval_call is not None:  # let a running evaluation end
            self._handle(self.eval_call)
        self._tick()
        counters = self._counters_snapshot()
        self.checkpoint = ray.get(self.learner.checkpoint.remote(counters))
        self._log_media(ray.get(self.learner.report.remote()))
        self._audit_replay()
        final_eval = None
        while self.evaluator is not None and final_eval is None:  # a dead evaluator restarts
            ref = self.evaluator.evaluate.remote(self.weights, self.runtime.eval_episodes)
            self.calls[ref] = (Role.EVALUATOR, 0, self.counters["env_steps"])
            done = len(self.evals)
            self._handle(ref)  # raises once the evaluator's restart budget is spent
            final_eval = self.evals[-1] if len(self.evals) > done else None
        summary = self._summary(final_eval)
        report = self._close_run(summary, write_report)
        return RunResult(self.run_dir, summary, report, self.history)

    def _interrupted_checkpoint(self) -> None:
        """On Ctrl-C, checkpoint what the learner has so that ``--resume`` loses nothing."""
        import ray

        self._say("[distwm] interrupted: writing a checkpoint (Ctrl-C again to skip)")
        try:
            path = ray.get(self.learner.checkpoint.remote(self._counters_snapshot()), timeout=300)
            self._save_counters()
            self._upload_logs()
            self._say(f"[distwm] checkpoint {path}; continue with `distwm train --resume {self.run_dir}`")
        except (KeyboardInterrupt, ray.exceptions.RayError) as exc:
            self._say(f"[distwm] no checkpoint written ({type(exc).__name__})")

    def run(self) -> RunResult:
        from distwm.utils.run_logger import Logger

        self._prepare()
        self.started_ray = placement.connect(self.runtime.address, self._local_cpus())
        try:
            self._plan()
            rt = self.runtime
            self.logger = Logger(self.local_dir, enable_wandb=rt.wandb, wandb_project=rt.wandb_project,
                                 config=self.run_config.to_dict())
            self.start_time = time.monotonic()
            self.updates = int(self.counters.get("updates", 0))
            self._start_actors()
            self._check_shards()
            if self.resuming:
                self.counters["env_steps"] = max(int(self.counters["env_steps"]),
                                                 sum(s["inserted"] for s in self.shard_stats))
                restored = sum(int(r.get("inserted", 0)) for r in self.restored)
                self._say(f"[distwm] replay restored: {restored:,d} env steps in "
                          f"{len(self.restored)} shards (snapshot + log)")
            self.start_steps, self.start_updates = self.counters["env_steps"], self.updates
            if "next_eval" in self.counters:  # a resumed run keeps its evaluation schedule
                self.eval_cadence.next = float(self.counters["next_eval"])
            self.worker_done = [False] * len(self.workers)
            self.window = self._new_window()
            spec = self.spec.data_spec
            batches = ", ".join(f"{s.name} {s.batch_size}x{s.seq_len}" for s in spec.samples)
            self._say(f"[distwm] run {self.run_dir}: {self.plan.workers} workers x "
                      f"{rt.envs_per_worker} envs, {rt.shards} shards, learner on "
                      f"{self.plan.learner_device}; batches {batches}, "
                      f"train_ratio {spec.train_ratio:g}"
                      + (f"; resumed at {self.counters['env_steps']:,d} steps, {self.updates:,d} "
                         f"updates" if self.checkpoint and self.resuming else ""))
            try:
                self._loop()
            except KeyboardInterrupt:
                self._interrupted_checkpoint()
                raise
            return self._finish()
        finally:
            self._cleanup()
