"""Step a vector of envs with an agent's policy and cut the stream into fixed-length chunks.

No Ray here: the runtime's ``EnvWorker`` and ``Evaluator`` actors wrap an :class:`EnvRunner`, and
the single-process :class:`~distwm.loop.train_loop.TrainLoop` uses the same class.

Record format (DESIGN.md "Data", DreamerV3's replay format): step ``t`` of a stream holds the
observation ``t``, the action that led to it (zeros at ``is_first``), the reward that came with
it, ``is_first``, ``is_terminal`` and ``is_last``. After an ``is_last`` step the env is reset
and the next step starts a new episode (``is_first``) in the same stream.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["EnvRunner", "RandomActor", "derive_seed", "build_agent", "make_envs", "make_runner",
           "limit_torch_threads"]

FLAG_KEYS = ("is_first", "is_terminal", "is_last")


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integer parts (run seed, epoch, worker, incarnation, env ...);
    distinct parts give independent seeds."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def build_agent(agent_config: Any, observation_space: Any, action_space: Any, device: str = "cpu"):
    """``AGENT_CLASS.from_config(config, observation_space, action_space, device)``."""
    from distwm.agent import import_object

    path = getattr(type(agent_config), "AGENT_CLASS", None)
    if not path:
        raise ValueError(
            f"{type(agent_config).__name__} has no AGENT_CLASS: the runtime needs an RL agent "
            "config (an RLConfig subclass naming its agent class)"
        )
    agent_cls = import_object(path)
    return agent_cls.from_config(agent_config, observation_space, action_space, device)


def make_envs(env_factory: str | Callable, agent_config: Any, seeds: Sequence[int]) -> list:
    """One env per seed from ``env_factory(agent_config, seed)`` (a callable or "module:fn")."""
    if isinstance(env_factory, str):
        from distwm.agent import import_object

        env_factory = import_object(env_factory)
    return [env_factory(agent_config, int(seed)) for seed in seeds]


def limit_torch_threads(cpus: float) -> int:
    """Give torch ``max(1, int(cpus))`` threads (its OpenMP and MKL pools follow), never more
    than the cores this process may run on; returns that number.

    More threads than cores, and the spin-waiting OpenMP threads of several processes on the
    same cores, slow each other down by an order of magnitude (3 busy processes x 2 threads on
    2 cores: 80-680 small-op iterations/s each, against 2,100-2,400/s with 1 thread each). So
    when torch gets more than one thread in a Ray worker on a node that offers more CPUs than
    it has cores (reservations there share cores), idle OpenMP threads sleep instead
    (``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it: 1,300-2,300/s in the same
    test). That takes effect only before torch is first imported in the process, which is when
    the runtime's actors call this. Elsewhere spinning stays: on cores of its own a 2-thread
    process runs small ops 2-3x faster spinning than sleeping.
    """
    threads = max(1, min(int(cpus), _usable_cores()))
    if threads > 1 and "torch" not in sys.modules and _ray_node_oversubscribed():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:  # pragma: no cover
        return threads
    torch.set_num_threads(threads)
    return threads


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _ray_node_oversubscribed() -> bool:
    """This process is a Ray worker whose node offers more CPUs than it has cores (Ray is
    asked only if this process already imported and initialised it)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        node = ray.get_runtime_context().get_node_id()
        cpus = next(n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["NodeID"] == node)
    except Exception:  # a node that cannot say: keep the defaults
        return False
    return cpus > (os.cpu_count() or 1)


class RandomActor:
    """Uniformly random actions with the acting half of the protocol (prefill)."""

    def __init__(self, envs: Sequence[Any]):
        self.spaces = [env.action_space for env in envs]

    def initial_state(self, num_envs: int) -> None:
        return None

    def act(self, obs, state, explore: bool):
        return np.stack([space.sample() for space in self.spaces]).astype(np.float32), None


def make_runner(envs: Sequence[Any], agent: Any, seed: int = 0,
                entries: Mapping[str, tuple] | None = None) -> "EnvRunner":
    """An :class:`EnvRunner` over ``envs`` whose first resets are seeded ``seed + i``."""
    return EnvRunner(list(envs), agent, seeds=[seed + i for i in range(len(envs))], entries=entries)


def _stack(dicts: Sequence[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([d[k] for d in dicts]) for k in dicts[0]}


class EnvRunner:
    """Steps ``envs`` in lockstep with ``agent.act`` and assembles ``(N, L, ...)`` chunks.

    Args:
        envs: Gymnasium 1.x envs with ``Dict`` observation spaces and ``Box`` action spaces.
        agent: anything with the acting half of the agent protocol.
        seeds: one reset seed per env (the first reset only; later resets continue the env's RNG).
        entries: ``{name: (shape, dtype)}`` stored with every step besides the observation
            (``DataSpec.entries``); default: the agent's. An agent with ``replay_entries(state)``
            fills them, steps of any other (random prefill) get zeros.
    """

    def __init__(self, envs: Sequence[Any], agent: Any, seeds: Sequence[int] | None = None,
                 entries: Mapping[str, tuple] | None = None):
        if not envs:
            raise ValueError("EnvRunner needs at least one env")
        self.envs = list(envs)
        self.agent = agent
        self.num_envs = len(self.envs)
        self.seeds = list(seeds) if seeds is not None else [None] * self.num_envs
        self.action_dim = int(np.prod(self.envs[0].action_space.shape))
        self.stream_steps = np.zeros(self.num_envs, np.int64)
        self.total_steps = 0
        self.act_time = 0.0
        self.env_time = 0.0
        self._obs: list[dict] | None = None
        self._state = None
        if entries is None:
            spec = agent.data_spec() if hasattr(agent, "data_spec") else None
            entries = spec.entry_specs if spec is not None else {}
        self.entries = dict(entries)

    # -- stepping --------------------------------------------------------------------------
    def _reset_env(self, i: int) -> dict:
        seed = self.seeds[i]
        self.seeds[i] = None
        obs, _ = self.envs[i].reset(seed=seed)
        return self._record(obs, np.zeros(self.action_dim, np.float32), 0.0, True, False, False)

    @staticmethod
    def _record(obs: dict, action, reward: float, first: bool, terminal: bool, last: bool) -> dict:
        rec = {k: np.asarray(v) for k, v in obs.items()}
        rec.update(action=np.asarray(action, np.float32), reward=np.float32(reward),
                   is_first=first, is_terminal=terminal, is_last=last)
        return rec

    def set_agent(self, agent: Any) -> None:
        """Act with ``agent`` from the next step on, from its fresh recurrent state."""
        self.agent = agent
        if self._obs is not None:
            self._state = agent.initial_state(self.num_envs)

    def reset(self) -> None:
        """Start a fresh episode in every env (and fresh streams)."""
        self._obs = [self._reset_env(i) for i in range(self.num_envs)]
        self._state = self.agent.initial_state(self.num_envs)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)

    def step(self, explore: bool = True) -> tuple[dict[str, np.ndarray], list[tuple[int, float, int]]]:
        """Record the current step of every env, act, and advance.

        Returns ``(records, episodes)``: ``records[key]`` is ``(N, ...)`` for the current step;
        ``episodes`` lists ``(env_index, return, length)`` of episodes that ended at it.
        """
        if self._obs is None:
            self.reset()
        records = _stack(self._obs)
        obs = {k: records[k] for k in self._obs[0] if k not in ("action", "reward", *FLAG_KEYS)}
        obs["is_first"] = records["is_first"]
        t0 = time.perf_counter()
        actions, self._state = self.agent.act(obs, self._state, explore)
        if self.entries:
            records.update(self._entries())
        t1 = time.perf_counter()
        actions = np.asarray(actions, np.float32)
        episodes = []
        for i, env in enumerate(self.envs):
            if self._obs[i]["is_last"]:
                episodes.append((i, float(self._returns[i]), int(self._lengths[i])))
                self._returns[i] = 0.0
                self._lengths[i] = 0
                self._obs[i] = self._reset_env(i)
                continue
            ob, reward, terminated, truncated, _ = env.step(actions[i])
            self._returns[i] += reward
            self._lengths[i] += 1
            self._obs[i] = self._record(ob, actions[i], reward, False, bool(terminated),
                                        bool(terminated or truncated))
        self.act_time += t1 - t0
        self.env_time += time.perf_counter() - t1
        self.stream_steps += 1
        self.total_steps += self.num_envs
        return records, episodes

    def _entries(self) -> dict[str, np.ndarray]:
        """The current step's entries: from the agent's new state, zeros without one."""
        fill = getattr(self.agent, "replay_entries", None)
        got = fill(self._state) if fill is not None else {}
        return {name: np.asarray(got[name], dtype) if name in got
                else np.zeros((self.num_envs, *shape), dtype)
                for name, (shape, dtype) in self.entries.items()}

    def collect_chunk(self, length: int, explore: bool = True):
        """``length`` steps of every env: ``(chunk {key: (N, L, ...)}, start_steps (N,),
        episodes)``; ``start_steps`` are the chunk's first step index in each env's stream."""
        if self._obs is None:
            self.reset()
        start = self.stream_steps.copy()
        steps, episodes = [], []
        for _ in range(length):
            rec, eps = self.step(explore)
            steps.append(rec)
            episodes.extend(eps)
        chunk = {k: np.stack([s[k] for s in steps], axis=1) for k in steps[0]}
        return chunk, start, episodes

    def run_episodes(self, num_episodes: int, explore: bool = False) -> list[tuple[float, int]]:
        """Fresh episodes until ``num_episodes`` have ended, spread evenly over the envs
        (so short episodes are not over-represented); returns ``[(return, length)]``."""
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        quota = np.full(self.num_envs, num_episodes // self.num_envs)
        quota[: num_episodes % self.num_envs] += 1
        self.reset()
        results: list[tuple[float, int]] = []
        while (quota > 0).any():
            _, episodes = self.step(explore)
            for i, ret, length in episodes:
                if quota[i] > 0:
                    quota[i] -= 1
                    results.append((ret, length))
        return results

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # pragma: no cover - best effort on shutdown
                pass
