"""The ``CollectWorker`` actor of ``distwm collect`` (a plain class; the driver wraps it with Ray).

A collect worker owns its envs (built by the run's ``env_factory``, as the runtime's env workers
build theirs), a policy (uniform random actions, or a checkpointed agent acting with
``explore=True``) and one :class:`~distwm.datasets.video_shards.ShardWriter` with the prefix
``worker-<index>``. It steps its envs with the runtime's :class:`~distwm.loop.env_loop.EnvRunner`
(so the records are DESIGN.md's transition format) and writes whole episodes only: each env
runs its share of the worker's episodes (split as evenly as the driver splits them over the
workers) and its steps after that share are dropped. Episodes go to the writer in the order
they end, so a shard file's stream is whole episodes one after another.

The env helpers here (:func:`build_envs`, :func:`pixel_spaces`, :func:`probe_collection`) are
shared with the driver, which builds one env with them before any actor starts.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np

from distwm.datasets.video_shards import STREAM_KEYS, ShardWriter
from distwm.loop.env_loop import EnvRunner, RandomActor, build_agent, derive_seed, limit_torch_threads, make_envs

__all__ = ["CollectWorker", "split_evenly", "env_seeds", "build_envs", "pixel_spaces",
           "probe_collection", "load_policy"]

#: the agent config fields that describe the env, recorded in the manifest
ENV_FIELDS = ("env_backend", "env_kwargs", "obs_type", "image_size", "action_repeat", "time_limit")

#: seed-stream tag of collection envs (the runtime's env workers and evaluator use 1 and 2)
_COLLECT_DATA = 4


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one (the first get more)."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    return [total // parts + (i < total % parts) for i in range(parts)]


def env_seeds(seed: int, worker_index: int, num_envs: int) -> list[int]:
    """The distinct seed of each env of a worker, derived from the collection ``seed``."""
    return [derive_seed(seed, _COLLECT_DATA, worker_index, e) for e in range(num_envs)]


def build_envs(run_config: Any, seeds: Sequence[int], max_steps: int | None = None) -> list:
    """One env per seed through ``run_config.runtime.env_factory`` and its agent config;
    ``max_steps`` caps each episode (a time limit: ``is_last`` without ``is_terminal``). The
    action spaces are seeded too, so random actions repeat with the seeds."""
    from distwm.envs.wrappers import TimeLimit

    envs = make_envs(run_config.runtime.env_factory, run_config.build_agent_config(), seeds)
    if max_steps is not None:
        envs = [TimeLimit(env, int(max_steps)) for env in envs]
    for env, seed in zip(envs, seeds):
        env.action_space.seed(int(seed))
    return envs


def pixel_spaces(env: Any, env_name: str) -> tuple[list[int], int]:
    """``(frame_shape [C, H, W], action_dim)`` of an env that observes ``image`` (uint8 CHW);
    a ``ValueError`` naming the env and the pixel options when it does not."""
    import gymnasium as gym

    space = env.observation_space
    keys = sorted(space.spaces) if isinstance(space, gym.spaces.Dict) else None
    image = space.spaces.get("image") if keys is not None else None
    if image is None or image.dtype != np.uint8 or len(image.shape) != 3:
        found = f"observes {keys}" if keys is not None else f"observes {space}"
        if image is not None:
            found = f"observes 'image' {image.dtype} {image.shape}"
        raise ValueError(
            f"env {env_name!r} gives no pixel observations ({found}); collect records uint8 "
            "'image' frames (C, H, W): ask its backend for pixels with --set obs_type=pixels "
            "(or obs_type=both; --set image_size=N for the size, --set env_kwargs={...} for "
            "backend options), or choose an env with pixels (e.g. ALE/Breakout-v5, minatar:breakout)"
        )
    action = env.action_space
    if not isinstance(action, gym.spaces.Box) or len(action.shape) != 1:
        raise ValueError(f"env {env_name!r} acts with {action}; expected a float Box vector "
                         "(one-hot for discrete actions)")
    return [int(n) for n in image.shape], int(action.shape[0])


def _env_backend(agent_config: Any) -> str | None:
    from distwm.registry import detect_backend, get_env_backend_spec, normalize_name

    name = str(getattr(agent_config, "env_backend", "auto"))
    try:
        if normalize_name(name) == "auto":
            return detect_backend(str(agent_config.env))
        return get_env_backend_spec(name).name
    except ValueError:  # a custom env_factory's env id: no backend of the registry
        return None


def probe_collection(run: Any, seed: int, max_steps: int | None) -> dict[str, Any]:
    """Build one env as a worker will and read what the manifest records of it."""
    agent_config = run.build_agent_config()
    env = build_envs(run, env_seeds(seed, 0, 1), max_steps)[0]
    try:
        frame_shape, action_dim = pixel_spaces(env, str(agent_config.env))
    finally:
        env.close()
    return {"env": str(agent_config.env), "backend": _env_backend(agent_config),
            "frame_shape": frame_shape, "action_dim": action_dim,
            "env_factory": run.runtime.env_factory,
            "env_config": {k: getattr(agent_config, k) for k in ENV_FIELDS if hasattr(agent_config, k)}}


def load_policy(run_config: Any, checkpoint: str, observation_space: Any, action_space: Any) -> Any:
    """The agent of ``run_config`` on CPU with the agent state of the runtime checkpoint
    directory ``checkpoint`` (``learner.pt``, loaded with ``weights_only=True``)."""
    from distwm.runtime.checkpoints import load_checkpoint

    agent = build_agent(run_config.build_agent_config(), observation_space, action_space, "cpu")
    agent.load_state_dict(load_checkpoint(checkpoint)["agent"])
    return agent


class CollectWorker:
    """Collects ``episodes`` whole episodes into ``<out>/worker-<index>-<n>.h5``.

    Args:
        run_config: ``RunConfig.to_dict()``: the env (agent config fields and
            ``runtime.env_factory``) and, with ``checkpoint``, the agent.
        worker_index: names the shard files and derives the env seeds.
        episodes: this worker's share of the episode budget (>= 1).
        out: the dataset directory (a local path or a mount every node shares).
        num_envs: envs stepped in lockstep (at most ``episodes``).
        checkpoint: a runtime checkpoint directory to act with, or ``None`` (random actions).
    """

    def __init__(self, run_config: Mapping[str, Any], worker_index: int, episodes: int, out: str,
                 *, num_envs: int = 1, seed: int = 0, checkpoint: str | None = None,
                 max_steps: int | None = None, steps_per_shard: int = 10_000, cpus: float = 1.0):
        if episodes < 1:
            raise ValueError(f"a collect worker needs episodes >= 1, got {episodes}")
        self._run_config = dict(run_config)
        self.worker_index = int(worker_index)
        self.num_envs = max(1, min(int(num_envs), int(episodes)))
        self.quota = np.array(split_evenly(int(episodes), self.num_envs))
        self.out = str(out)
        self.seed = int(seed)
        self.checkpoint = checkpoint
        self.max_steps = max_steps
        self.steps_per_shard = int(steps_per_shard)
        self.cpus = float(cpus)
        self.runner: EnvRunner | None = None
        self.writer: Any = None
        self.started = np.zeros(self.num_envs, np.int64)  # episodes begun (within the quota)
        self.episodes: list[list[dict] | None] = [None] * self.num_envs  # being recorded
        self.written_steps = 0
        self.written_episodes = 0

    def setup(self) -> dict[str, Any]:
        """Build envs, policy and writer (first call only)."""
        if self.runner is None:
            from distwm.configs.runtime_config import RunConfig

            run = RunConfig.from_dict(self._run_config)
            seeds = env_seeds(self.seed, self.worker_index, self.num_envs)
            envs = build_envs(run, seeds, self.max_steps)
            frame_shape, action_dim = pixel_spaces(envs[0], str(run.agent.get("env", "env")))
            if self.checkpoint is None:
                policy: Any = RandomActor(envs)
            else:
                limit_torch_threads(self.cpus)
                import torch

                torch.manual_seed(derive_seed(self.seed, _COLLECT_DATA, self.worker_index, 10_000))
                policy = load_policy(run, self.checkpoint, envs[0].observation_space, envs[0].action_space)
            self.runner = EnvRunner(envs, policy, seeds, entries={})
            self.writer = ShardWriter(self.out, prefix=f"worker-{self.worker_index:03d}",
                                      steps_per_shard=self.steps_per_shard)
            self.frame_shape, self.action_dim = frame_shape, action_dim
        return {"frame_shape": self.frame_shape, "action_dim": self.action_dim,
                "num_envs": self.num_envs}

    @property
    def done(self) -> bool:
        return bool((self.started >= self.quota).all()) and all(e is None for e in self.episodes)

    def collect(self, max_seconds: float = 1.0) -> dict[str, Any]:
        """Step the envs for about ``max_seconds`` (or until this worker's episodes are all
        written); returns the env steps taken and the episodes written in this call."""
        self.setup()
        start = time.perf_counter()
        steps, finished = 0, []
        while not self.done:
            records, _ = self.runner.step(explore=True)
            steps += self.num_envs
            for i in range(self.num_envs):
                if records["is_first"][i]:
                    recording = self.started[i] < self.quota[i]
                    self.started[i] += recording
                    self.episodes[i] = [] if recording else None
                episode = self.episodes[i]
                if episode is None:
                    continue
                episode.append({k: records[k][i] for k in STREAM_KEYS})
                if records["is_last"][i]:
                    finished.append(self._write(episode))
                    self.episodes[i] = None
            if time.perf_counter() - start >= max_seconds:
                break
        return {"worker": self.worker_index, "steps": steps, "episodes": finished,
                "done": self.done, "seconds": time.perf_counter() - start}

    def _write(self, episode: list[dict]) -> tuple[float, int]:
        chunk = {k: np.stack([step[k] for step in episode]) for k in STREAM_KEYS}
        self.writer.add_chunk(chunk)
        self.written_steps += len(episode)
        self.written_episodes += 1
        return float(chunk["reward"].sum()), len(episode)

    def close(self) -> list[dict]:
        """Close the envs and the writer; returns the shard entries (file, steps, episodes)."""
        if self.runner is not None:
            self.runner.close()
        shards = self.writer.close() if self.writer is not None else []
        self.writer = None
        return shards
