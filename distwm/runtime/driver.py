"""The driver: ``distwm.runtime.run(config)``.

It validates the run (``setup.probe_run``), connects to Ray, reserves one placement group, starts
the replay shards, the learner, the env workers and the evaluator, and then drives them with
short calls (``collect`` for about ``collect_seconds``, ``train`` for about ``train_seconds``), so
that it regains control often: it hands the learner's newest weights to the workers, restarts
dead actors (bounded by ``max_restarts``), runs evaluations, and logs a progress line and
metrics every ``log_interval`` seconds. The run ends with a checkpoint, a final evaluation and a
report (``report.md`` + ``learning_curve.png``) in the run directory.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from distwm.configs.runtime_config import RunConfig, RuntimeConfig
from distwm.runtime import placement
from distwm.runtime.env_runner import derive_seed
from distwm.runtime.learner import latest_checkpoint, load_checkpoint, shard_snapshot_name
from distwm.runtime.report import DashboardGauges, format_progress, write_report
from distwm.runtime.setup import (RUN_CONFIG_FILE, RunSpec, check_resume_compatible,
                                  default_run_dir, load_run_config, probe_run, replay_layout)

__all__ = ["run", "Driver", "RunResult"]

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[Mapping[str, Any], "Driver"], None]


@dataclass
class RunResult:
    """What ``run`` returns: the run directory, the summary the report shows, and the
    progress records (one per ``log_interval``)."""

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


class _Role:
    WORKER, LEARNER, SHARD, EVALUATOR = "worker", "learner", "shard", "evaluator"


class Driver:
    """Owns one run's actors and its main loop (see the module docstring)."""

    def __init__(self, run_config: RunConfig, resume: bool = False,
                 on_progress: ProgressCallback | None = None):
        self.run_config = run_config
        self.runtime = run_config.runtime
        self.resuming = resume
        self.on_progress = on_progress
        self.history: list[dict[str, Any]] = []
        self.workers: list[Any] = []
        self.shards: list[Any] = []
        self.learner: Any = None
        self.evaluator: Any = None

    # == setup ===============================================================================
    def _prepare(self) -> None:
        """All checks that need no Ray, then the run directory."""
        self.spec: RunSpec = probe_run(self.run_config)
        rt = self.runtime
        device = str(getattr(self.spec.agent_config, "device", "auto"))
        self.want_gpu = device == "auto" or device.startswith(("cuda", "gpu"))
        if rt.workers != "auto":
            self.layout = replay_layout(rt, self.spec, rt.workers)
            placement.plan_actors(rt, math.inf, 0)  # stream/shard check before Ray
        self.run_dir = os.path.abspath(rt.run_dir or default_run_dir(self.spec))
        self.counters: dict[str, Any] = {"env_steps": 0, "episodes": 0, "epoch": 0, "seconds": 0.0,
                                         "restarts": {}, "updates_lost": 0}
        self.checkpoint: str | None = None
        if self.resuming:
            self.checkpoint = latest_checkpoint(self.run_dir)
            if self.checkpoint is None:
                _log.warning("%s has no checkpoint yet: starting it from scratch", self.run_dir)
            else:
                saved = load_checkpoint(self.checkpoint)
                self.counters.update(saved.get("counters", {}))
                self.counters["epoch"] = int(self.counters.get("epoch", 0)) + 1
                self.counters["updates"] = int(saved["updates"])
                self.counters["version"] = int(saved["version"])
        elif os.path.isfile(os.path.join(self.run_dir, RUN_CONFIG_FILE)):
            raise ValueError(
                f"run directory {self.run_dir!r} already holds a run: resume it with "
                f"--resume {self.run_dir} or choose another --run-dir"
            )
        os.makedirs(self.run_dir, exist_ok=True)
        self.run_config.replace(runtime=rt.replace(run_dir=self.run_dir)).to_yaml(
            os.path.join(self.run_dir, RUN_CONFIG_FILE))

    def _local_cpus(self) -> int | None:
        rt = self.runtime
        if rt.workers == "auto":
            return None
        need = (rt.learner_cpus + rt.workers * rt.worker_cpus + rt.shards * rt.shard_cpus
                + (rt.evaluator_cpus if rt.eval_episodes else 0))
        return max(os.cpu_count() or 1, math.ceil(need))

    def _plan(self) -> None:
        import ray

        res = ray.cluster_resources()
        cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
        if not self.want_gpu and self.runtime.learner_gpus not in ("auto", 0, 0.0):
            raise ValueError("the agent config asks for device='cpu' but runtime.learner_gpus > 0")
        self.plan = placement.plan_actors(self.runtime, cpus, gpus, self.want_gpu)
        placement.check_fits(self.plan, cpus, gpus)
        if str(getattr(self.spec.agent_config, "device", "auto")).startswith("cuda") and not self.plan.learner_gpus:
            raise ValueError("the agent config asks for a CUDA device but the Ray cluster has no GPU")
        self.layout = replay_layout(self.runtime, self.spec, self.plan.workers)

    # -- actors --------------------------------------------------------------------------------
    def _options(self, role: str, index: int = 0) -> dict[str, Any]:
        plan = self.plan
        if role == _Role.LEARNER:
            cpus, bundle = plan.learner_cpus, 0
        elif role == _Role.WORKER:
            cpus, bundle = plan.worker_cpus, plan.worker_bundle(index)
        elif role == _Role.SHARD:
            cpus, bundle = plan.shard_cpus, plan.shard_bundle(index)
        else:
            cpus, bundle = plan.evaluator_cpus, plan.evaluator_bundle()
        if bundle >= 0:
            bundle += self.bundle_offset
        options = {"num_cpus": cpus, "scheduling_strategy": placement.scheduling(self.pg, bundle)}
        if role == _Role.LEARNER:
            options["num_gpus"] = plan.learner_gpus
        return options

    def _new_shard(self, index: int, snapshot: str | None, wait: bool = True):
        """A replay shard, restored from ``snapshot`` when given (``wait=False``: returns
        ``(shard, pending restore ref or None)``)."""
        import ray

        from distwm.runtime.replay_shard import ReplayShard

        lay, spec = self.layout, self.spec
        incarnation = self.counters["restarts"].get(_Role.SHARD, 0)
        shard = ray.remote(ReplayShard).options(**self._options(_Role.SHARD, index)).remote(
            index, lay.shard_capacity, self.runtime.chunk_length, spec.seq_len, spec.train_ratio,
            lay.min_size, lay.error_buffer,
            derive_seed(spec.seed, 3, self.counters["epoch"], index, incarnation))
        ref = None
        if snapshot is not None and os.path.isfile(snapshot):
            ref = shard.restore.remote(snapshot)
        if not wait:
            return shard, ref
        if ref is not None:
            ray.get(ref)
        return shard

    def _snapshot_path(self, index: int) -> str | None:
        if self.checkpoint is None:
            return None
        return os.path.join(self.checkpoint, shard_snapshot_name(index, self.runtime.snapshot_format))

    def _new_learner(self, wait: bool = True):
        """A learner restored from the last checkpoint, or fresh (``wait=False``: returns
        ``(learner, pending setup ref)``; finish with :meth:`_learner_ready`)."""
        import ray

        from distwm.runtime.learner import Learner

        spec = self.spec
        learner = ray.remote(Learner).options(**self._options(_Role.LEARNER)).remote(
            self.run_config.to_dict(), spec.observation_space, spec.action_space,
            self.plan.learner_device, self.run_dir, spec.batch_size, spec.seq_len,
            self.plan.learner_cpus)
        min_version = int(self.counters.get("version", 0))
        if self.checkpoint is not None:
            ref = learner.restore.remote(self.checkpoint, min_version,
                                         int(self.counters.get("updates", 0)))
        else:
            ref = learner.setup.remote(min_version)
        if not wait:
            return learner, ref
        self._learner_ready(learner, ray.get(ref))
        return learner

    def _learner_ready(self, learner: Any, info: dict[str, Any]) -> None:
        import ray

        if "checkpoint_updates" in info:
            lost = int(self.counters.get("updates", 0)) - int(info["checkpoint_updates"])
            self.counters["updates_lost"] = int(self.counters.get("updates_lost", 0)) + max(lost, 0)
        self.updates = int(info["updates"])
        self.weights = ray.get(learner.weights.remote())

    def _new_worker(self, index: int):
        import ray

        from distwm.runtime.env_worker import EnvWorker

        incarnation = self.worker_incarnation[index]
        worker = ray.remote(EnvWorker).options(**self._options(_Role.WORKER, index)).remote(
            self.run_config.to_dict(), index, incarnation, self.counters["epoch"], self.spec.seed,
            self.plan.worker_cpus)
        return worker

    def _new_evaluator(self):
        import ray

        from distwm.runtime.env_worker import Evaluator

        return ray.remote(Evaluator).options(**self._options(_Role.EVALUATOR)).remote(
            self.run_config.to_dict(), min(self.runtime.envs_per_worker, self.runtime.eval_episodes),
            self.counters["epoch"], self.spec.seed, max(self.plan.evaluator_cpus, 1.0),
            self.counters["restarts"].get(_Role.EVALUATOR, 0))

    def _start_actors(self) -> None:
        """Create every actor, then wait for all of them to be ready (they start in parallel)."""
        import ray

        if self.runtime.placement_group == "current":
            self.pg, self.bundle_offset = placement.current_placement_group(self.plan), 1
            self.owns_pg = False
        else:
            self.pg = placement.create_placement_group(self.plan, self.runtime.placement_strategy)
            self.bundle_offset, self.owns_pg = 0, True
        pending = []
        for i in range(self.runtime.shards):
            shard, ref = self._new_shard(i, self._snapshot_path(i), wait=False)
            self.shards.append(shard)
            pending += [ref] if ref is not None else []
        self.learner, learner_ref = self._new_learner(wait=False)
        self.worker_incarnation = [0] * self.plan.workers
        self.workers = [self._new_worker(i) for i in range(self.plan.workers)]
        pending += [w.setup.remote() for w in self.workers]
        if self.plan.evaluator:
            self.evaluator = self._new_evaluator()
            pending.append(self.evaluator.setup.remote())
        self._learner_ready(self.learner, ray.get(learner_ref))
        ray.get(pending)

    # == supervision =========================================================================
    def _restart(self, role: str, index: int, cause: BaseException) -> None:
        restarts = self.counters["restarts"]
        restarts[role] = restarts.get(role, 0) + 1
        if restarts[role] > self.runtime.max_restarts:
            raise RuntimeError(
                f"{role} {index} failed and the {role} restart budget (runtime.max_restarts="
                f"{self.runtime.max_restarts}) is spent. Last failure: {cause}"
            ) from cause
        self._say(f"[distwm] {role} {index} failed ({type(cause).__name__}: "
                  f"{str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}); "
                  f"restarting ({restarts[role]}/{self.runtime.max_restarts})")
        event = {"role": role, "index": index, "cause": type(cause).__name__,
                 "env_steps": self.counters["env_steps"], "updates": self.updates}
        self.events.append(event)
        if role == _Role.WORKER:
            _kill(self.workers[index])
            self.worker_incarnation[index] += 1
            self.workers[index] = self._new_worker(index)
        elif role == _Role.LEARNER:
            _kill(self.learner)
            self.checkpoint = latest_checkpoint(self.run_dir) or self.checkpoint
            self.counters["updates"] = self.updates
            self.counters["version"] = max(int(self.counters.get("version", 0)), self.weights[0])
            self.learner_call = None
            self.learner = self._new_learner()
            event["restored_from"] = self.checkpoint
        elif role == _Role.SHARD:
            _kill(self.shards[index])
            self.checkpoint = latest_checkpoint(self.run_dir) or self.checkpoint
            snapshot = self._snapshot_path(index)
            self.shards[index] = self._new_shard(index, snapshot)
            event["restored_from"] = snapshot if snapshot and os.path.isfile(snapshot) else None
            import ray

            event["restored_steps"] = ray.get(self.shards[index].get_stats.remote())["inserted"]
        else:
            _kill(self.evaluator)
            self.eval_call = None
            self.evaluator = self._new_evaluator()

    def _check_shards(self) -> list[dict[str, Any]]:
        """Stats of every shard; a shard that does not answer is restored from its snapshot."""
        import ray

        stats = []
        for i in range(len(self.shards)):
            try:
                stats.append(ray.get(self.shards[i].get_stats.remote(), timeout=60))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                self._restart(_Role.SHARD, i, exc)
                stats.append(ray.get(self.shards[i].get_stats.remote()))
        self.shard_stats = stats
        return stats

    # == main loop ===========================================================================
    def _submit_collect(self, index: int) -> None:
        rt = self.runtime
        chunk_steps = rt.chunk_length * rt.envs_per_worker
        claimed = sum(self.claims.values())
        left = rt.steps - self.counters["env_steps"] - claimed
        if left <= 0:
            ref = self.workers[index].flush.remote()
            self.calls[ref] = (_Role.WORKER, index, "flush")
            return
        max_steps = max(chunk_steps, left // max(len(self.workers), 1))
        ref = self.workers[index].collect.remote(self.shards, self.weights, rt.collect_seconds, max_steps)
        self.calls[ref] = (_Role.WORKER, index, "collect")
        self.claims[ref] = max_steps

    def _remaining_updates(self) -> int:
        """Updates still owed to reach the target ratio on the data collected (after collection)."""
        stats = self._check_shards()
        inserted = sum(s["inserted"] for s in stats)
        sampled = sum(s["sampled"] for s in stats)
        owed = self.spec.train_ratio * max(inserted - self.layout.min_size * len(stats), 0) - sampled
        return max(int(owed // (self.spec.batch_size * self.spec.seq_len)), 0)

    def _submit_train(self) -> None:
        max_updates = 1 << 62
        if self.collect_done:
            max_updates = self._remaining_updates()
            if max_updates <= 0:
                self.learner_done = True
                return
        ref = self.learner.train.remote(self.shards, max_updates, self.runtime.train_seconds,
                                        self._counters_snapshot())
        self.calls[ref] = (_Role.LEARNER, 0, "train")
        self.learner_call = ref

    def _counters_snapshot(self) -> dict[str, Any]:
        out = dict(self.counters)
        out["restarts"] = dict(self.counters["restarts"])
        out["seconds"] = self.counters["seconds"] + (time.monotonic() - self.start_time)
        out["next_eval"] = self.next_eval
        return out

    def _schedule(self) -> None:
        busy_workers = {idx for role, idx, _ in self.calls.values() if role == _Role.WORKER}
        for i in range(len(self.workers)):
            if i not in busy_workers and not self.worker_done[i]:
                self._submit_collect(i)
        if not self.collect_done and all(self.worker_done):
            self.collect_done = True
        if self.learner_call is None and not self.learner_done:
            self._submit_train()
        rt = self.runtime
        if (self.evaluator is not None and self.eval_call is None and rt.eval_interval > 0
                and self.counters["env_steps"] >= self.next_eval and not self.collect_done):
            self.eval_call = self.evaluator.evaluate.remote(self.weights, rt.eval_episodes)
            self.calls[self.eval_call] = (_Role.EVALUATOR, 0, self.counters["env_steps"])
            self.next_eval += rt.eval_interval

    def _handle(self, ref: Any) -> None:
        import ray

        role, index, what = self.calls.pop(ref)
        self.claims.pop(ref, None)
        try:
            result = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            # a dead actor is restarted; so is an env worker or evaluator whose env or policy
            # raised (bounded by max_restarts); an error in the learner's update ends the run
            if isinstance(exc, ray.exceptions.RayTaskError) and role == _Role.LEARNER:
                raise
            if role == _Role.LEARNER:
                self.learner_call = None
            if role == _Role.EVALUATOR:
                self.eval_call = None
            self._restart(role, index, exc)
            return
        if role == _Role.WORKER:
            self._on_worker(index, what, result)
        elif role == _Role.LEARNER:
            self._on_learner(result)
        else:
            self._on_eval(what, result)

    def _on_worker(self, index: int, what: str, result: dict[str, Any]) -> None:
        for shard in result["failed_shards"]:
            self._shard_suspect.add(shard)
        if what == "flush":
            self.worker_done[index] = True
            return
        self.counters["env_steps"] += result["steps"]
        self.counters["episodes"] += len(result["episodes"])
        self.window["episodes"].extend(result["episodes"])
        self.recent_returns.extend(r for r, _ in result["episodes"])
        self.worker_versions[index] = result["version"]
        self.worker_steps[index] = self.worker_steps.get(index, 0) + result["steps"]
        for key in ("act_time", "env_time", "wait_time", "seconds"):
            self.worker_time[key] += result[key]

    def _on_learner(self, result: dict[str, Any]) -> None:
        self.learner_call = None
        self.updates = int(result["updates"])
        if result["weights"] is not None:
            self.weights = result["weights"]
        if result["checkpoint"]:
            self.checkpoint = result["checkpoint"]
        for key, value in result["metrics"].items():
            acc = self.window["train"].setdefault(key, [0.0, 0])
            acc[0] += value * result["done"]
            acc[1] += result["done"]
            self.metric_max[key] = max(self.metric_max.get(key, -math.inf), value)
        self.learner_time["wait"] += result["wait_time"]
        self.learner_time["total"] += result["seconds"]
        self._shard_suspect.update(result["dead_shards"])
        if self.collect_done and result["done"] == 0:
            self.learner_done = True  # nothing more can be sampled

    def _on_eval(self, step: int, result: dict[str, Any]) -> None:
        self.eval_call = None
        self.evals.append({"step": step, **result})
        self.logger.log_scalars({"eval/return": result["return_mean"],
                                 "eval/length": float(np.mean(result["lengths"])),
                                 "eval/version": result["version"]}, step)
        self._say(f"[distwm] eval at {step:,d} steps: return {result['return_mean']:.2f} over "
                  f"{len(result['returns'])} episodes (weights v{result['version']})")

    # -- progress ------------------------------------------------------------------------------
    def _new_window(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "env_steps": self.counters["env_steps"], "updates": self.updates,
                "episodes": [], "train": {}, "wait": self.learner_time["wait"],
                "total": self.learner_time["total"]}

    def _tick(self) -> dict[str, Any]:
        stats = self._check_shards()
        win, now = self.window, time.monotonic()
        dt = max(now - win["t"], 1e-9)
        inserted = sum(s["inserted"] for s in stats)
        sampled = sum(s["sampled"] for s in stats)
        past = inserted - self.layout.min_size * len(stats)
        fps = (self.counters["env_steps"] - win["env_steps"]) / dt
        # chunks arrive in bursts, so a window's own rate jumps between 0 and a spike: the
        # progress line and the ETA use a smoothed rate
        self.fps_ema = fps if self.fps_ema is None else 0.7 * self.fps_ema + 0.3 * fps
        busy = self.learner_time["total"] - win["total"]
        versions = [self.worker_versions.get(i, -1) for i in range(len(self.workers))]
        left = self.runtime.steps - self.counters["env_steps"]
        rec: dict[str, Any] = {
            "env_steps": self.counters["env_steps"], "updates": self.updates,
            "env_steps_per_s": self.fps_ema, "updates_per_s": (self.updates - win["updates"]) / dt,
            "replay_ratio": sampled / past if past > 0 else 0.0,
            "target_ratio": self.spec.train_ratio,
            "replay_inserted": inserted, "replay_sampled": sampled,
            "replay_fill": sum(s["size"] for s in stats) / sum(s["capacity"] for s in stats),
            "weight_version": self.weights[0], "weight_lag": self.weights[0] - min(versions),
            "learner_idle": (self.learner_time["wait"] - win["wait"]) / busy if busy > 0 else 0.0,
            "episodes": self.counters["episodes"],
            "episode_return": (float(np.mean([r for r, _ in win["episodes"]]))
                               if win["episodes"] else None),
            "episode_length": (float(np.mean([n for _, n in win["episodes"]]))
                               if win["episodes"] else None),
            "eta_seconds": (0.0 if left <= 0 else left / self.fps_ema if self.fps_ema > 0 else None),
            "elapsed": now - self.start_time,
        }
        for key, (total, count) in win["train"].items():
            rec[f"train/{key}"] = total / count
        self.history.append(rec)
        self.logger.log_scalars({k: v for k, v in rec.items() if v is not None}, rec["env_steps"])
        self.gauges.set(rec)
        self._say(format_progress(rec, self.runtime.steps))
        self.window = self._new_window()
        if self.on_progress is not None:
            self.on_progress(rec, self)
        return rec

    def _say(self, line: str) -> None:
        if self.runtime.verbose:
            print(line, file=sys.stdout, flush=True)
        _log.info(line)
        with open(os.path.join(self.run_dir, "progress.log"), "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _loop(self) -> None:
        import ray

        next_tick = time.monotonic() + self.runtime.log_interval
        while True:
            if self._shard_suspect:
                self._shard_suspect.clear()
                self._check_shards()
            self._schedule()
            if self.collect_done and self.learner_done and not any(
                    role == _Role.WORKER for role, _, _ in self.calls.values()):
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
                next_tick = time.monotonic() + self.runtime.log_interval

    # == finish ==============================================================================
    def _finish(self) -> RunResult:
        import ray

        if self.eval_call is not None:  # let a running evaluation end
            self._handle(self.eval_call)
        self._tick()
        counters = self._counters_snapshot()
        self.checkpoint = ray.get(self.learner.checkpoint.remote(self.shards, counters))
        final_eval = None
        if self.evaluator is not None:
            ref = self.evaluator.evaluate.remote(self.weights, self.runtime.eval_episodes)
            self.calls[ref] = (_Role.EVALUATOR, 0, self.counters["env_steps"])
            self._handle(ref)
            final_eval = self.evals[-1] if self.evals else None
        summary = self._summary(final_eval)
        self.logger.flush()
        md, _ = write_report(self.run_dir, summary)
        with open(md, encoding="utf-8") as f:
            report = f.read()
        self._say(report)
        return RunResult(self.run_dir, summary, report, self.history)

    def _summary(self, final_eval: dict | None) -> dict[str, Any]:
        seconds = time.monotonic() - self.start_time
        stats = self.shard_stats
        inserted = sum(s["inserted"] for s in stats)
        sampled = sum(s["sampled"] for s in stats)
        past = inserted - self.layout.min_size * len(stats)
        return {
            "model": self.run_config.model.rpartition(":")[2], "env": self.spec.env_name,
            "run_dir": self.run_dir, "steps": self.runtime.steps,
            "env_steps": self.counters["env_steps"], "updates": self.updates,
            "updates_lost": int(self.counters.get("updates_lost", 0)),
            "episodes": self.counters["episodes"], "epoch": self.counters["epoch"],
            "seconds": seconds, "total_seconds": self.counters["seconds"] + seconds,
            "env_steps_per_s": (self.counters["env_steps"] - self.start_steps) / seconds,
            "updates_per_s": (self.updates - self.start_updates) / seconds,
            "replay_ratio": sampled / past if past > 0 else 0.0,
            "target_ratio": self.spec.train_ratio,
            "ratio_tolerance_steps": self.layout.tolerance_band(len(stats)),
            "min_fill_steps": self.layout.min_size * len(stats),
            "batch_steps": self.spec.batch_size * self.spec.seq_len,
            "replay_inserted": inserted, "replay_sampled": sampled,
            "shard_stats": stats, "learner_idle": (self.learner_time["wait"] / self.learner_time["total"]
                                                   if self.learner_time["total"] else 0.0),
            "workers": self.plan.workers, "envs_per_worker": self.runtime.envs_per_worker,
            "shards": self.runtime.shards, "learner_device": self.plan.learner_device,
            "worker_steps": dict(self.worker_steps), "worker_versions": dict(self.worker_versions),
            "worker_incarnations": list(self.worker_incarnation),
            "weight_version": self.weights[0], "restarts": dict(self.counters["restarts"]),
            "events": list(self.events),
            "metric_max": dict(self.metric_max), "final_eval": final_eval, "evals": self.evals,
            "last_train_return": (float(np.mean(list(self.recent_returns)))
                                  if self.recent_returns else None),
            "checkpoint": self.checkpoint,
        }

    def _interrupted_checkpoint(self) -> None:
        """On Ctrl-C, checkpoint what the learner has so that ``--resume`` loses nothing."""
        import ray

        self._say("[distwm] interrupted: writing a checkpoint (Ctrl-C again to skip)")
        try:
            path = ray.get(self.learner.checkpoint.remote(self.shards, self._counters_snapshot()),
                           timeout=300)
            self._say(f"[distwm] checkpoint {path}; continue with `distwm train --resume {self.run_dir}`")
        except (KeyboardInterrupt, ray.exceptions.RayError) as exc:
            self._say(f"[distwm] no checkpoint written ({type(exc).__name__})")

    def _cleanup(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in [*self.workers, self.evaluator, self.learner, *self.shards]:
            if actor is not None:
                _kill(actor)
        if getattr(self, "pg", None) is not None and self.owns_pg:
            try:
                remove_placement_group(self.pg)
            except Exception:  # pragma: no cover
                pass
        if getattr(self, "logger", None) is not None:
            self.logger.close()
        if getattr(self, "started_ray", False):
            ray.shutdown()

    # == entry ===============================================================================
    def run(self) -> RunResult:
        from distwm.utils.dreamer_utils import Logger

        self._prepare()
        self.started_ray = placement.connect(self.runtime.address, self._local_cpus())
        try:
            self._plan()
            rt = self.runtime
            self.logger = Logger(self.run_dir, enable_wandb=rt.wandb, wandb_project=rt.wandb_project,
                                 config=self.run_config.to_dict())
            self.gauges = DashboardGauges()
            self.start_time = time.monotonic()
            self.calls: dict[Any, tuple[str, int, Any]] = {}
            self.claims: dict[Any, int] = {}
            self.learner_call = self.eval_call = None
            self.learner_time = {"wait": 0.0, "total": 0.0}
            self.worker_time = {"act_time": 0.0, "env_time": 0.0, "wait_time": 0.0, "seconds": 0.0}
            self.worker_versions: dict[int, int] = {}
            self.worker_steps: dict[int, int] = {}
            self.metric_max: dict[str, float] = {}
            self.recent_returns: deque = deque(maxlen=20)
            self.evals: list[dict] = []
            self._shard_suspect: set[int] = set()
            self.events: list[dict[str, Any]] = []
            self.updates = int(self.counters.get("updates", 0))
            self._start_actors()
            self._check_shards()
            if self.resuming:
                self.counters["env_steps"] = max(int(self.counters["env_steps"]),
                                                 sum(s["inserted"] for s in self.shard_stats))
            self.start_steps, self.start_updates = self.counters["env_steps"], self.updates
            self.next_eval = int(self.counters.get("next_eval", rt.eval_interval))
            self.worker_done = [False] * len(self.workers)
            self.collect_done = self.learner_done = False
            self.window = self._new_window()
            self.fps_ema: float | None = None
            self._say(f"[distwm] run {self.run_dir}: {self.plan.workers} workers x "
                      f"{rt.envs_per_worker} envs, {rt.shards} shards, learner on "
                      f"{self.plan.learner_device}; batch {self.spec.batch_size}x{self.spec.seq_len}, "
                      f"train_ratio {self.spec.train_ratio:g}"
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


def _kill(actor: Any) -> None:
    import ray

    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone
        pass
