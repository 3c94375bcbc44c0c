"""Scheduling: what each actor is asked to do next (collect, train, evaluate, flush) and what
their answers change. A mixin of :class:`distwm.runtime.driver.Driver`."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from distwm.loop.schedule import UpdateBudget
from distwm.runtime.progress import count_achievements
from distwm.runtime.supervision import Role

__all__ = ["SchedulingMixin"]


def _is_group_failure(exc: BaseException) -> bool:
    """A learner's call failed because a peer of its data-parallel group died (its collective
    timed out or its connection closed), not because of the learner's own update."""
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer",
                                   "Timed out", "timed out", "DistBackendError", "Gloo",
                                   "NCCL"))


class SchedulingMixin:
    """Keep every actor busy with short calls, and account for their results."""

    def _submit_collect(self, index: int) -> None:
        rt = self.runtime
        chunk_steps = rt.chunk_length * rt.envs_per_worker
        claimed = sum(self.claims.values())
        left = rt.total_steps - self.counters["env_steps"] - claimed
        if left <= 0:
            if self.counters["env_steps"] < rt.total_steps:
                # the rest is claimed by calls in flight, which may bring back less than they
                # were allowed: wait for them (a flushed worker would collect nothing more)
                return
            ref = self.workers[index].flush.remote()
            self.calls[ref] = (Role.WORKER, index, "flush")
            return
        max_steps = max(chunk_steps, left // max(len(self.workers), 1))
        ref = self.workers[index].collect.remote(self.shards, self.weights, rt.collect_seconds, max_steps)
        self.calls[ref] = (Role.WORKER, index, "collect")
        self.claims[ref] = max_steps

    def _remaining_updates(self) -> int:
        """Updates still owed to reach the target ratio on the data collected (after collection)."""
        stats = self._check_shards()
        inserted = sum(s["inserted"] for s in stats)
        sampled = sum(s["sampled"] for s in stats)
        return self._budget(len(stats)).owed_updates(inserted, sampled)

    def _budget(self, shards: int) -> UpdateBudget:
        """The replay-ratio arithmetic of the single-process loop, over all shards (an update
        of ``learners`` data-parallel learners replays ``learners`` batches)."""
        return UpdateBudget(self.spec.train_ratio, self.spec.steps_per_update * self.plan.learners,
                            self.layout.min_size * shards)

    def _submit_train(self) -> None:
        max_updates = 1 << 62
        if self.collect_done:
            max_updates = self._remaining_updates()
            if max_updates <= 0:
                self.learner_done = True
                return
        counters = self._counters_snapshot()
        for rank, learner in enumerate(self.learners):  # every rank gets the same call
            ref = learner.train.remote(self.shards, max_updates, self.runtime.train_seconds,
                                       counters)
            self.calls[ref] = (Role.LEARNER, rank, "train")
            self.learner_calls[ref] = rank

    def _counters_snapshot(self) -> dict[str, Any]:
        out = dict(self.counters)
        out["restarts"] = dict(self.counters["restarts"])
        out["seconds"] = self.counters["seconds"] + (time.monotonic() - self.start_time)
        out["next_eval"] = self.eval_cadence.next
        return out

    def _schedule(self) -> None:
        busy_workers = {idx for role, idx, _ in self.calls.values() if role == Role.WORKER}
        for i in range(len(self.workers)):
            if i not in busy_workers and not self.worker_done[i]:
                self._submit_collect(i)
        if not self.collect_done and all(self.worker_done):
            self.collect_done = True
        if not self.learner_calls and not self.learner_done:
            self._submit_train()
        # no periodic evaluation once the budget is collected: the final one takes its place
        if (self.evaluator is not None and self.eval_call is None and not self.collect_done
                and self.counters["env_steps"] < self.runtime.total_steps
                and self.eval_cadence.due(self.counters["env_steps"])):
            self.eval_call = self.evaluator.evaluate.remote(self.weights, self.runtime.eval_episodes)
            self.calls[self.eval_call] = (Role.EVALUATOR, 0, self.counters["env_steps"])

    def _handle(self, ref: Any) -> None:
        import ray

        role, index, what = self.calls.pop(ref)
        self.claims.pop(ref, None)
        try:
            result = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            # a dead actor is restarted; so is an env worker or evaluator whose env or policy
            # raised (bounded by max_restarts); an error in the learner's update ends the run
            if (isinstance(exc, ray.exceptions.RayTaskError) and role == Role.LEARNER
                    and not _is_group_failure(exc)):
                raise
            if role == Role.EVALUATOR:
                self.eval_call = None
            self._restart(role, index, exc)
            return
        if role == Role.WORKER:
            self._on_worker(index, what, result)
        elif role == Role.LEARNER:
            self.learner_calls.pop(ref, None)
            self.learner_results[index] = result
            if not self.learner_calls:  # the whole group answered
                results = [self.learner_results[r] for r in sorted(self.learner_results)]
                self.learner_results.clear()
                self._on_learner(results)
        else:
            self._on_eval(what, result)

    def _on_worker(self, index: int, what: str, result: dict[str, Any]) -> None:
        for shard in result["failed_shards"]:
            self._shard_suspect.add(shard)
        if result.get("pid"):
            self.pids[(Role.WORKER, index)] = result["pid"]
        acked = result["acked"]
        self.counters["acked_steps"] += len(acked) * self.runtime.chunk_length
        if self.acked_chunks is not None:
            self.acked_chunks.update((str(s), int(t)) for s, t in acked)
        if what == "flush":
            self.worker_done[index] = True
            return
        self.counters["env_steps"] += result["steps"]
        self.counters["episodes"] += len(result["episodes"])
        self.window["episodes"].extend(result["episodes"])
        self.recent_returns.extend(r for r, _ in result["episodes"])
        count_achievements(self.counters, result.get("achievements", ()))
        self.worker_versions[index] = result["version"]
        self.worker_steps[index] = self.worker_steps.get(index, 0) + result["steps"]
        for key in ("act_time", "env_time", "wait_time", "seconds"):
            self.worker_time[key] += result[key]

    def _on_learner(self, results: list[dict[str, Any]]) -> None:
        """Rank 0's answer carries weights, checkpoint, report and metrics; every rank's
        answer its dead shards."""
        result = results[0]
        for rank, r in enumerate(results):
            self.pids[(Role.LEARNER, rank)] = r["pid"]
        for other in results[1:]:
            self._shard_suspect.update(other["dead_shards"])
        self.updates = max(self.updates, int(result["updates"]))
        if result["weights"] is not None:
            self.weights = result["weights"]
        if result["checkpoint"]:
            self.checkpoint = result["checkpoint"]
        self._log_media(result["report"])
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
        self.pids[(Role.EVALUATOR, 0)] = result["pid"]
        self.evals.append({"step": step, **result})
        self.logger.log_scalars({"eval/return": result["return_mean"],
                                 "eval/length": float(np.mean(result["lengths"])),
                                 "eval/version": result["version"]}, step)
        self._say(f"[distwm] eval at {step:,d} steps: return {result['return_mean']:.2f} over "
                  f"{len(result['returns'])} episodes (weights v{result['version']})")
