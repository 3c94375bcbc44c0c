"""Supervision of a run's actors: their factories (placement, seeds, restore from the last
checkpoint) and their restarts. A mixin of :class:`distwm.runtime.driver.Driver`, whose
``__init__`` creates every attribute used here."""

from __future__ import annotations

from typing import Any

from distwm.loop.env_loop import derive_seed
from distwm.runtime import placement
from distwm.runtime.checkpoints import latest_checkpoint, replay_dir

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
            cpus, bundle = plan.learner_cpus, plan.learner_bundle(index)
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

    def _new_shard(self, index: int, wait: bool = True):
        """A replay shard restored from its snapshot and log (``wait=False``: returns
        ``(shard, pending open ref)``)."""
        import ray

        from distwm.runtime.replay_shard import ReplayShard

        lay, spec, rt = self.layout, self.spec, self.runtime
        incarnation = self.counters["restarts"].get(Role.SHARD, 0)
        shard = ray.remote(ReplayShard).options(**self._options(Role.SHARD, index)).remote(
            index, lay.shard_capacity, rt.chunk_length, spec.seq_len, spec.train_ratio,
            lay.min_size, lay.error_buffer,
            derive_seed(spec.seed, 3, self.counters["epoch"], index, incarnation),
            replay_dir(self.run_dir), rt.snapshot_format, rt.replay_snapshot_steps,
            rt.replay_flush_seconds)
        ref = shard.open.remote()
        if not wait:
            return shard, ref
        return shard, ray.get(ref)

    def _new_learners(self):
        """The learner group, restored from the last checkpoint or fresh; returns
        ``(learners, pending setup refs)`` (finish with :meth:`_learners_ready`)."""
        import ray

        from distwm.runtime.learner import Learner

        spec, plan = self.spec, self.plan
        world = plan.learners
        learners = [ray.remote(Learner).options(**self._options(Role.LEARNER, rank)).remote(
            self.run_config.to_dict(), spec.observation_space, spec.action_space,
            plan.learner_device, self.run_dir, plan.learner_cpus, rank, world)
            for rank in range(world)]
        address = ray.get(learners[0].group_address.remote()) if world > 1 else None
        min_version = int(self.counters.get("version", 0))
        min_updates = int(self.counters.get("updates", 0))
        if self.checkpoint is not None:
            refs = [lr.restore.remote(self.checkpoint, min_version, min_updates, address)
                    for lr in learners]
        else:
            refs = [lr.setup.remote(min_version, min_updates, address) for lr in learners]
        return learners, refs

    def _learners_ready(self, infos: list[dict[str, Any]]) -> int:
        """Count the updates the agent lost with a dead learner (it redoes them from its
        checkpoint); returns that number."""
        import ray

        info = infos[0]
        lost = max(int(self.counters.get("updates", 0)) - int(info["checkpoint_updates"]), 0)
        self.counters["updates_lost"] = int(self.counters.get("updates_lost", 0)) + lost
        self.updates = max(self.updates, int(info["updates"]))
        self.weights = ray.get(self.learners[0].weights.remote())
        return lost

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
        shard_refs = []
        for i in range(self.runtime.shards):
            shard, ref = self._new_shard(i, wait=False)
            self.shards.append(shard)
            shard_refs.append(ref)
        self.learners, learner_refs = self._new_learners()
        pending = []
        self.worker_incarnation = [0] * self.plan.workers
        self.workers = [self._new_worker(i) for i in range(self.plan.workers)]
        pending += [w.setup.remote() for w in self.workers]
        if self.plan.evaluator:
            self.evaluator = self._new_evaluator()
            pending.append(self.evaluator.setup.remote())
        self.restored = ray.get(shard_refs)
        self._learners_ready(ray.get(learner_refs))
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
        elif role == Role.LEARNER:  # one rank dead: the whole group restarts together
            import ray

            for learner in self.learners:
                kill_actor(learner)
            self.checkpoint = latest_checkpoint(self.run_dir) or self.checkpoint
            self.counters["updates"] = self.updates
            self.counters["version"] = max(int(self.counters.get("version", 0)), self.weights[0])
            for ref in self.learner_calls:  # the other ranks' calls die with them
                self.calls.pop(ref, None)
            self.learner_calls.clear()
            self.learner_results.clear()
            self.learners, refs = self._new_learners()
            event["updates_redone"] = self._learners_ready(ray.get(refs))
            event["restored_from"] = self.checkpoint
        elif role == Role.SHARD:
            kill_actor(self.shards[index])
            self.shards[index], info = self._new_shard(index)
            event["restored_from"] = info.get("snapshot")
            event["restored_steps"] = info["inserted"]
            event["restored_log_steps"] = info.get("log_steps", 0)
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
        self.pids.update({(Role.SHARD, i): st["pid"] for i, st in enumerate(stats)})
        return stats

    def _cleanup(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in [*self.workers, self.evaluator, *self.learners, *self.shards]:
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
