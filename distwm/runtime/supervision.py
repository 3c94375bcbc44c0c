"""Supervision of a run's actors: their factories (placement, seeds, restore from the last
checkpoint) and their restarts. A mixin of :class:`distwm.runtime.driver.Driver`, whose
``__init__`` creates every attribute used here."""

from __future__ import annotations

import os
from typing import Any

from distwm.loop.env_loop import derive_seed
from distwm.runtime import placement
from distwm.runtime.learner import latest_checkpoint, shard_snapshot_name

__all__ = ["Role", "SupervisionMixin", "kill_actor"]


class Role:
    WORKER, LEARNER, SHARD, EVALUATOR = "worker", "learner", "shard", "evaluator"


def kill_actor(actor: Any) -> None:
    import ray

    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone
        pass


class SupervisionMixin:
    """Create, restore and restart the env workers, replay shards, learner and evaluator."""

    def _options(self, role: str, index: int = 0) -> dict[str, Any]:
        plan = self.plan
        if role == Role.LEARNER:
            cpus, bundle = plan.learner_cpus, 0
        elif role == Role.WORKER:
            cpus, bundle = plan.worker_cpus, plan.worker_bundle(index)
        elif role == Role.SHARD:
            cpus, bundle = plan.shard_cpus, plan.shard_bundle(index)
        else:
            cpus, bundle = plan.evaluator_cpus, plan.evaluator_bundle()
        if bundle >= 0:
            bundle += self.bundle_offset
        options = {"num_cpus": cpus, "scheduling_strategy": placement.scheduling(self.pg, bundle)}
        if role == Role.LEARNER:
            options["num_gpus"] = plan.learner_gpus
        return options

    def _new_shard(self, index: int, snapshot: str | None, wait: bool = True):
        """A replay shard, restored from ``snapshot`` when given (``wait=False``: returns
        ``(shard, pending restore ref or None)``)."""
        import ray

        from distwm.runtime.replay_shard import ReplayShard

        lay, spec = self.layout, self.spec
        incarnation = self.counters["restarts"].get(Role.SHARD, 0)
        shard = ray.remote(ReplayShard).options(**self._options(Role.SHARD, index)).remote(
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
        learner = ray.remote(Learner).options(**self._options(Role.LEARNER)).remote(
            self.run_config.to_dict(), spec.observation_space, spec.action_space,
            self.plan.learner_device, self.run_dir, self.plan.learner_cpus)
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
        worker = ray.remote(EnvWorker).options(**self._options(Role.WORKER, index)).remote(
            self.run_config.to_dict(), index, incarnation, self.counters["epoch"], self.spec.seed,
            self.plan.worker_cpus)
        return worker

    def _new_evaluator(self):
        import ray

        from distwm.runtime.env_worker import Evaluator

        return ray.remote(Evaluator).options(**self._options(Role.EVALUATOR)).remote(
            self.run_config.to_dict(), min(self.runtime.envs_per_worker, self.runtime.eval_episodes),
            self.counters["epoch"], self.spec.seed, max(self.plan.evaluator_cpus, 1.0),
            self.counters["restarts"].get(Role.EVALUATOR, 0))

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
        if role == Role.WORKER:
            kill_actor(self.workers[index])
            self.worker_incarnation[index] += 1
            self.workers[index] = self._new_worker(index)
        elif role == Role.LEARNER:
            kill_actor(self.learner)
            self.checkpoint = latest_checkpoint(self.run_dir) or self.checkpoint
            self.counters["updates"] = self.updates
            self.counters["version"] = max(int(self.counters.get("version", 0)), self.weights[0])
            self.learner_call = None
            self.learner = self._new_learner()
            event["restored_from"] = self.checkpoint
        elif role == Role.SHARD:
            kill_actor(self.shards[index])
            self.checkpoint = latest_checkpoint(self.run_dir) or self.checkpoint
            snapshot = self._snapshot_path(index)
            self.shards[index] = self._new_shard(index, snapshot)
            event["restored_from"] = snapshot if snapshot and os.path.isfile(snapshot) else None
            import ray

            event["restored_steps"] = ray.get(self.shards[index].get_stats.remote())["inserted"]
        else:
            kill_actor(self.evaluator)
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
                self._restart(Role.SHARD, i, exc)
                stats.append(ray.get(self.shards[i].get_stats.remote()))
        self.shard_stats = stats
        return stats

    def _cleanup(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in [*self.workers, self.evaluator, self.learner, *self.shards]:
            if actor is not None:
                kill_actor(actor)
        if getattr(self, "pg", None) is not None and self.owns_pg:
            try:
                remove_placement_group(self.pg)
            except Exception:  # pragma: no cover
                pass
        if getattr(self, "logger", None) is not None:
            self.logger.close()
        if getattr(self, "started_ray", False):
            ray.shutdown()
