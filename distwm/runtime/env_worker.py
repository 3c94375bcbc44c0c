"""The ``EnvWorker`` and ``Evaluator`` actors (plain classes; the driver wraps them with Ray).

An env worker owns ``envs_per_worker`` envs and a CPU copy of the policy. Each env is one
stream; stream ``g = worker_index * envs_per_worker + env`` goes to shard ``g % shards`` so
that a stream's chunks stay together. A worker sends a chunk's rows to their shards in one
batched ``insert`` per shard and steps the next chunk while those inserts are in flight; it waits
for them (the shard's rate limiter holds them when the learner is behind) before sending more.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import gymnasium
import numpy as np

from distwm.loop.env_loop import EnvRunner, build_agent, derive_seed, limit_torch_threads, make_envs

__all__ = ["EnvWorker", "Evaluator", "stream_shards"]

#: seed-stream tags keep collection and evaluation envs apart
_COLLECT, _EVAL = 1, 2


def stream_shards(worker_index: int, envs_per_worker: int, num_shards: int) -> list[int]:
    """The shard each of a worker's envs sends to."""
    return [(worker_index * envs_per_worker + e) % num_shards for e in range(envs_per_worker)]


class _AchievementLog(gymnasium.Wrapper):
    """Appends ``info["achievements"]`` (``{name: count}``, e.g. Crafter's) of each episode's
    last step to ``log``; an env whose info has no achievements logs nothing."""

    def __init__(self, env: gymnasium.Env, log: list):
        super().__init__(env)
        self._log = log

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and isinstance(info, Mapping) and "achievements" in info:
            self._log.append({str(k): int(v) for k, v in info["achievements"].items()})
        return obs, reward, terminated, truncated, info


class _PolicyActor:
    """Shared setup of the acting actors: envs, a CPU agent, versioned weights."""

    #: build the envs from the agent config's ``for_evaluation()`` (its evaluation envs)
    EVALUATION = False

    def pid(self) -> int:
        import os

        return os.getpid()

    def __init__(self, run_config: Mapping[str, Any], num_envs: int, seed_parts: Sequence[int],
                 cpus: float = 1.0):
        self._run_config = dict(run_config)
        self._num_envs = num_envs
        self._seed_parts = list(seed_parts)
        self._cpus = cpus
        self.runner: EnvRunner | None = None
        self.version = -1
        self.achievements: list[dict[str, int]] = []  # of the episodes ended since the last collect

    def setup(self) -> dict[str, Any]:
        """Build envs and agent (first call only); returns the spaces, for checks."""
        if self.runner is None:
            from distwm.configs.runtime_config import RunConfig

            limit_torch_threads(self._cpus)
            run = RunConfig.from_dict(self._run_config)
            agent_config = run.build_agent_config()
            if self.EVALUATION and hasattr(agent_config, "for_evaluation"):
                agent_config = agent_config.for_evaluation()
            seeds = [derive_seed(*self._seed_parts, e) for e in range(self._num_envs)]
            envs = make_envs(run.runtime.env_factory, agent_config, seeds)
            if not self.EVALUATION:  # success rates are over training episodes (Crafter's protocol)
                envs = [_AchievementLog(env, self.achievements) if isinstance(env, gymnasium.Env)
                        else env for env in envs]
            agent = build_agent(agent_config, envs[0].observation_space, envs[0].action_space, "cpu")
            self._seed_torch(derive_seed(*self._seed_parts, 10_000))
            self.runner = EnvRunner(envs, agent, seeds)
            self.runtime = run.runtime
        env = self.runner.envs[0]
        return {"observation_space": env.observation_space, "action_space": env.action_space,
                "pid": self.pid()}

    @staticmethod
    def _seed_torch(seed: int) -> None:
        try:
            import torch
        except ImportError:  # pragma: no cover
            return
        torch.manual_seed(seed)

    def _apply_weights(self, weights: tuple[int, list] | None) -> bool:
        """Load ``(version, [ref])`` if newer than what the policy has; ``False`` if the weights
        could not be fetched (their owner died): the policy keeps its current ones."""
        if weights is None or weights[0] <= self.version:
            return True
        import ray

        try:
            state = ray.get(weights[1][0])
        except (ray.exceptions.RayError, ValueError):
            return False
        self.runner.agent.set_weights(state)
        self.version = int(weights[0])
        return True


class EnvWorker(_PolicyActor):
    """Collects experience into replay shards.

    Args:
        run_config: ``RunConfig.to_dict()`` of the run.
        worker_index: stable index (a restarted worker keeps it).
        incarnation: how many times this index was (re)started; with ``epoch`` (how many times
            the run was resumed) it makes seeds and stream names unique.
        seed: the run seed.
    """

    def __init__(self, run_config: Mapping[str, Any], worker_index: int, incarnation: int = 0,
                 epoch: int = 0, seed: int = 0, cpus: float = 1.0):
        runtime = run_config["runtime"]
        super().__init__(run_config, int(runtime.get("envs_per_worker", 1)),
                         (seed, _COLLECT, epoch, worker_index, incarnation), cpus)
        self.worker_index = worker_index
        self.stream_ids = [f"{epoch}/{worker_index}/{incarnation}/{e}" for e in range(self._num_envs)]
        self._pending: list = []
        self._pending_shards: list[int] = []
        self._pending_keys: list[list[tuple[str, int]]] = []
        self._acked: list[tuple[str, int]] = []
        self.steps = 0
        self.wait_time = 0.0
        self.lost_steps = 0

    def _wait_pending(self) -> list[int]:
        """Wait for the in-flight inserts; returns the shards that failed (chunk rows lost).
        The chunks a shard acknowledged (logged, so they survive it) go to ``_acked``."""
        import ray

        failed = []
        t0 = time.perf_counter()
        for shard, ref, keys in zip(self._pending_shards, self._pending, self._pending_keys):
            try:
                ray.get(ref)
                self._acked.extend(keys)
            except ray.exceptions.RayError:
                failed.append(shard)
        self.wait_time += time.perf_counter() - t0
        self._pending, self._pending_shards, self._pending_keys = [], [], []
        return failed

    def _take_acked(self) -> list[tuple[str, int]]:
        acked, self._acked = self._acked, []
        return acked

    def _take_achievements(self) -> list[dict[str, int]]:
        taken = list(self.achievements)
        self.achievements.clear()
        return taken

    def collect(self, shards: Sequence[Any], weights: tuple[int, list] | None = None,
                max_seconds: float = 1.0, max_steps: int | None = None) -> dict[str, Any]:
        """Collect whole chunks for about ``max_seconds`` (at least one chunk, at most
        ``max_steps`` env steps) and send them to ``shards``; returns what happened."""
        self.setup()
        weights_ok = self._apply_weights(weights)
        length = self.runtime.chunk_length
        targets = stream_shards(self.worker_index, self._num_envs, len(shards))
        start = time.perf_counter()
        act0, env0, wait0 = self.runner.act_time, self.runner.env_time, self.wait_time
        steps, episodes, failed = 0, [], []
        while True:
            chunk, start_steps, eps = self.runner.collect_chunk(length, explore=True)
            episodes.extend((ret, n) for _, ret, n in eps)
            failed.extend(self._wait_pending())
            for shard in sorted(set(targets)):
                rows = [e for e, s in enumerate(targets) if s == shard]
                part = {k: v[rows] for k, v in chunk.items()}
                ids = [self.stream_ids[e] for e in rows]
                starts = start_steps[rows].tolist()
                self._pending.append(shards[shard].insert.remote(ids, starts, part))
                self._pending_shards.append(shard)
                self._pending_keys.append(list(zip(ids, starts)))
            steps += self._num_envs * length
            if time.perf_counter() - start >= max_seconds:
                break
            if max_steps is not None and steps + self._num_envs * length > max_steps:
                break
        self.steps += steps
        self.lost_steps += length * len(failed)
        return {
            "worker": self.worker_index, "steps": steps, "episodes": episodes,
            "version": self.version, "weights_ok": weights_ok, "failed_shards": sorted(set(failed)),
            "acked": self._take_acked(), "pid": self.pid(), "achievements": self._take_achievements(),
            "act_time": self.runner.act_time - act0, "env_time": self.runner.env_time - env0,
            "wait_time": self.wait_time - wait0, "seconds": time.perf_counter() - start,
        }

    def flush(self) -> dict[str, Any]:
        """Wait for the last inserts (the end of collection)."""
        failed = self._wait_pending()
        self.lost_steps += self.runtime.chunk_length * len(failed) if self.runner else 0
        return {"worker": self.worker_index, "failed_shards": sorted(set(failed)),
                "acked": self._take_acked(), "pid": self.pid()}

    def ping(self) -> int:
        return self.worker_index


class Evaluator(_PolicyActor):
    """Runs whole episodes with exploration off on its own envs (the agent config's
    evaluation envs)."""

    EVALUATION = True

    def __init__(self, run_config: Mapping[str, Any], num_envs: int = 1, epoch: int = 0,
                 seed: int = 0, cpus: float = 1.0, incarnation: int = 0):
        super().__init__(run_config, num_envs, (seed, _EVAL, epoch, incarnation), cpus)

    def evaluate(self, weights: tuple[int, list] | None, episodes: int) -> dict[str, Any]:
        self.setup()
        self._apply_weights(weights)
        start = time.perf_counter()
        results = self.runner.run_episodes(episodes, explore=False)
        returns = np.array([r for r, _ in results])
        return {"version": self.version, "returns": returns.tolist(),
                "lengths": [n for _, n in results], "return_mean": float(returns.mean()),
                "pid": self.pid(),
                "seconds": time.perf_counter() - start}
