"""Everything the driver checks and prepares before any actor starts.

A bad option fails here with a ``ValueError`` naming it: the runtime fields, the agent config,
the env (one probe env is built in the driver process), the agent (one CPU copy is built to read
its data spec) and the replay geometry. Nothing here touches Ray.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

from distwm.agent import DataSpec
from distwm.configs.runtime_config import RunConfig, RuntimeConfig
from distwm.loop.env_loop import build_agent, derive_seed, make_envs

__all__ = ["RunSpec", "probe_run", "ReplayLayout", "replay_layout", "default_run_dir",
           "load_run_config", "check_resume_compatible", "RUN_CONFIG_FILE"]

RUN_CONFIG_FILE = "run.yaml"


@dataclass
class RunSpec:
    """What the probe found: the agent config, the env spaces and the data spec (its
    ``train_ratio`` overridden by ``runtime.train_ratio`` when set)."""

    run: RunConfig
    agent_config: Any
    observation_space: Any
    action_space: Any
    data_spec: DataSpec
    seed: int

    @property
    def train_ratio(self) -> float:
        return self.data_spec.train_ratio

    @property
    def seq_len(self) -> int:
        """The longest sample's sequence length (the shards' sequence length)."""
        return self.data_spec.max_seq_len

    @property
    def steps_per_update(self) -> float:
        return self.data_spec.steps_per_update

    @property
    def env_name(self) -> str:
        return str(getattr(self.agent_config, "env", "env"))


def probe_run(run: RunConfig) -> RunSpec:
    """Validate ``run``, build one env and one CPU agent, and read the data spec."""
    import gymnasium as gym

    run.runtime.validate()
    agent_config = run.build_agent_config()
    seed = int(getattr(agent_config, "seed", 0))
    envs = make_envs(run.runtime.env_factory, agent_config, [derive_seed(seed, 0)])
    env = envs[0]
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if not isinstance(obs_space, gym.spaces.Dict):
        raise ValueError(
            f"the env's observation space must be a gymnasium.spaces.Dict with 'image' and/or "
            f"'state', got {obs_space}"
        )
    if not isinstance(act_space, gym.spaces.Box):
        raise ValueError(f"the env's action space must be a float Box (one-hot for discrete), got {act_space}")
    agent = build_agent(agent_config, obs_space, act_space, "cpu")
    spec = agent.data_spec()
    ratio = float(run.runtime.train_ratio if run.runtime.train_ratio is not None else spec.train_ratio)
    if not ratio > 0:
        raise ValueError(f"train_ratio must be > 0, got {ratio} (set runtime.train_ratio)")
    return RunSpec(run, agent_config, obs_space, act_space,
                   DataSpec(train_ratio=ratio, samples=spec.samples), seed)


@dataclass
class ReplayLayout:
    """Per-shard replay and rate-limiter settings."""

    shard_capacity: int
    min_size: int
    error_buffer: float
    max_insert: int

    def tolerance_band(self, shards: int) -> float:
        """Total allowed drift of sampled steps from the target, over all shards."""
        return self.error_buffer * shards


def replay_layout(runtime: RuntimeConfig, spec: RunSpec, workers: int) -> ReplayLayout:
    """Split capacity and min_fill over the shards; size the rate limiter's error buffer.
    Raises ``ValueError`` if a shard cannot hold what it must."""
    from distwm.runtime.env_worker import stream_shards
    from distwm.runtime.rate_limiter import min_error_buffer

    shards, L = runtime.shards, runtime.chunk_length
    per_worker = [stream_shards(w, runtime.envs_per_worker, shards) for w in range(workers)]
    streams_on = [sum(row.count(s) for row in per_worker) for s in range(shards)]
    max_insert = max(row.count(s) for row in per_worker for s in range(shards)) * L
    capacity = runtime.buffer_size // shards
    min_size = math.ceil(runtime.min_fill / shards)
    need = max(2 * max(streams_on) * L, min_size + max(streams_on) * L, spec.seq_len + L)
    if capacity < need:
        raise ValueError(
            f"runtime.buffer_size={runtime.buffer_size} gives {capacity} steps per shard; each of the "
            f"{shards} shards needs at least {need} (chunks of {L} steps from up to "
            f"{max(streams_on)} streams, min_fill {runtime.min_fill}, seq_len {spec.seq_len}): "
            f"raise buffer_size to {need * shards} or lower chunk_length/min_fill"
        )
    steps_per_batch = sum(s.steps for s in spec.data_spec.samples)  # the most one update takes
    buffer = max(runtime.rate_tolerance * spec.train_ratio * min_size,
                 min_error_buffer(spec.train_ratio, max_insert, steps_per_batch))
    return ReplayLayout(capacity, min_size, buffer, max_insert)


def default_run_dir(spec: RunSpec) -> str:
    root = getattr(spec.agent_config, "log_dir", "runs") or "runs"
    model = spec.run.model.rpartition(":")[2].lower()
    env = "".join(c if c.isalnum() or c in "-_." else "-" for c in spec.env_name)
    return os.path.join(root, f"{model}-{env}-{time.strftime('%Y%m%d-%H%M%S')}")


def load_run_config(run_dir: str) -> RunConfig:
    """The ``run.yaml`` of a run directory (a path or URI)."""
    from distwm.utils import storage

    try:
        text = storage.read_text(storage.join(run_dir, RUN_CONFIG_FILE))
    except FileNotFoundError:
        raise ValueError(f"{run_dir!r} is not a distwm run directory (no {RUN_CONFIG_FILE})") from None
    return RunConfig.from_yaml(text)


#: runtime fields a resumed run cannot change (the replay snapshots depend on them)
FIXED_ON_RESUME = ("shards", "chunk_length", "buffer_size", "snapshot_format")


def check_resume_compatible(saved: RunConfig, new: RunConfig) -> None:
    if saved.model != new.model or saved.agent != new.agent:
        raise ValueError("a resumed run keeps its model and agent config; start a new run to change them")
    for name in FIXED_ON_RESUME:
        if getattr(saved.runtime, name) != getattr(new.runtime, name):
            raise ValueError(
                f"runtime.{name} cannot change on resume ({getattr(saved.runtime, name)!r} -> "
                f"{getattr(new.runtime, name)!r}): the replay snapshots depend on it"
            )
