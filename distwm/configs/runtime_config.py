"""Configs of the Ray actor-learner runtime (``distwm.runtime``).

A whole training run is a :class:`RunConfig`: the model (a registered name such as
``"dreamer"`` or a config class path ``"package.module:ConfigClass"``), the agent config's
fields, and a :class:`RuntimeConfig`. ``RunConfig.to_yaml()`` is the ``run.yaml`` that
``distwm train --config`` reads and every run directory holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Optional, Union

from distwm.configs.base import ConfigBase

__all__ = ["RuntimeConfig", "RunConfig"]


@dataclass
class RuntimeConfig(ConfigBase):
    """How a run is laid out on Ray and how long it goes.

    Sizes are in env steps (agent steps: one ``env.step`` of the wrapped env, i.e. after
    action repeat).

    * ``workers``: env-worker actors, or ``"auto"`` for the cluster's free CPUs (at least 1).
    * ``envs_per_worker``: envs stepped in lockstep by each worker (one stream each).
    * ``shards``: replay-shard actors; ``buffer_size`` (env steps) is split evenly over them
      (``capacity`` is accepted as its old name).
    * ``train_ratio``: replayed steps per env step; ``None`` keeps the agent's ``data_spec()``.
    * ``total_steps``: env steps to collect before the run ends (``steps`` is accepted).
    * ``chunk_length``: steps per chunk a worker sends (per env).
    * ``rate_tolerance``: allowed drift of the replay ratio, as a fraction of
      ``train_ratio * min_fill`` replayed steps (Acme's convention; never below one chunk
      and one batch, so the limiter cannot deadlock).
    * ``min_fill``: env steps in replay before the learner starts.
    * ``learners``: data-parallel learner actors (one ``torch.distributed`` group; each samples
      its own batches, so an update consumes ``learners`` batches); ``learner_cpus`` /
      ``learner_gpus`` are per learner; ``learner_group_timeout``: seconds a collective may
      wait for a peer before the group is declared dead and restarted.
    * ``broadcast_interval``: learner updates between weight publications;
      ``checkpoint_interval`` / ``checkpoint_seconds``: env steps / seconds between learner
      checkpoints, whichever comes first (the first is written right after the first update).
    * ``replay_snapshot_steps``: env steps a shard logs before it compacts its log into a
      snapshot (``0``: the shard's capacity); ``replay_flush_seconds``: how often a shard's log
      is uploaded when ``run_dir`` is an object store (a path or shared mount is written at
      every insert). ``audit_replay``: the driver keeps every acknowledged chunk's id and the
      report checks that replay still holds each (for fault-injection runs; costs memory).
    * ``eval_interval``: env steps between evaluations (``0``: only the final one);
      ``eval_episodes``: episodes per evaluation (``0``: no evaluation at all).
    * ``address``: Ray address (``"auto"``, ``"ray://host:10001"``); ``None``: ``RAY_ADDRESS`` or
      a new local instance.
    * ``run_dir``: where config, metrics, checkpoints, replay and the report go (default
      ``runs/<model>-<env>-<time>``): a path, a shared mount, or a URI (``s3://bucket/run``,
      ``gs://...``, ``file:///...``) through ``pyarrow.fs`` as Ray Train/Tune use; on a
      multi-node cluster it must be storage every node reaches.
    * ``max_restarts``: restarts allowed per actor role (env workers count together).
    * ``env_factory``: ``"module:function"`` called as ``f(agent_config, seed)`` to build one env.
    * ``placement_group``: ``None`` reserves a placement group for the run; ``"current"`` uses the
      group the driver runs in (a Tune trial): its bundle 0 is the driver's, bundles ``1..``
      are the run's, in the order ``distwm.runtime.placement.plan_actors`` lists them.
    """

    #: one name and one unit per concept (docs/architecture.md); the old names still load
    ALIASES: ClassVar[Mapping[str, str]] = {"steps": "total_steps", "capacity": "buffer_size"}
    REMOVED: ClassVar[Mapping[str, str]] = {
        "log_interval": "the runtime's progress line cadence is progress_seconds (seconds); "
                        "log_interval is env steps in the agent configs",
    }

    workers: Union[int, Literal["auto"]] = "auto"
    envs_per_worker: int = 1
    shards: int = 1
    train_ratio: Optional[float] = None
    total_steps: int = 100_000
    chunk_length: int = 64
    buffer_size: int = 1_000_000
    rate_tolerance: float = 0.1
    min_fill: int = 1024
    learners: int = 1
    learner_group_timeout: float = 120.0
    broadcast_interval: int = 10
    checkpoint_interval: int = 1000
    checkpoint_seconds: float = 300.0
    replay_snapshot_steps: int = 0
    replay_flush_seconds: float = 5.0
    audit_replay: bool = False
    keep_checkpoints: int = 2
    eval_interval: int = 10_000
    eval_episodes: int = 5
    progress_seconds: float = 10.0
    address: Optional[str] = None
    run_dir: Optional[str] = None
    max_restarts: int = 3
    collect_seconds: float = 1.0
    train_seconds: float = 2.0
    sample_timeout: float = 0.5
    worker_cpus: float = 1.0
    learner_cpus: float = 1.0
    learner_gpus: Union[float, Literal["auto"]] = "auto"
    shard_cpus: float = 0.0
    evaluator_cpus: float = 0.0
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    placement_group: Optional[Literal["current"]] = None
    snapshot_format: Literal["npz", "hdf5"] = "npz"
    env_factory: str = "distwm.envs:make_env_from_config"
    wandb: bool = False
    wandb_project: str = "distwm"
    verbose: bool = True

    def validate(self) -> "RuntimeConfig":
        """Raise ``ValueError`` naming the first bad field; returns ``self``."""
        def positive(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value < 0 or (value == 0 and not allow_zero):
                bound = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"runtime.{name} must be {bound}, got {value!r}")

        if self.workers != "auto" and self.workers < 1:
            raise ValueError(f"runtime.workers must be >= 1 or 'auto', got {self.workers!r}")
        for name in ("envs_per_worker", "shards", "total_steps", "chunk_length", "buffer_size",
                     "learners", "learner_group_timeout", "replay_flush_seconds",
                     "broadcast_interval", "checkpoint_interval", "keep_checkpoints",
                     "progress_seconds", "collect_seconds", "train_seconds", "sample_timeout",
                     "worker_cpus"):
            positive(name)
        for name in ("rate_tolerance", "min_fill", "eval_interval", "eval_episodes",
                     "checkpoint_seconds", "replay_snapshot_steps",
                     "max_restarts", "learner_cpus", "shard_cpus", "evaluator_cpus"):
            positive(name, allow_zero=True)
        if self.train_ratio is not None and not self.train_ratio > 0:
            raise ValueError(f"runtime.train_ratio must be > 0 or null, got {self.train_ratio!r}")
        if self.learner_gpus != "auto" and self.learner_gpus < 0:
            raise ValueError(f"runtime.learner_gpus must be >= 0 or 'auto', got {self.learner_gpus!r}")
        if ":" not in self.env_factory:
            raise ValueError(
                f"runtime.env_factory must be 'package.module:function', got {self.env_factory!r}"
            )
        return self


@dataclass
class RunConfig(ConfigBase):
    """One training run: ``model`` + agent config fields + :class:`RuntimeConfig`.

    ``model``: a name from ``distwm.list_models()`` or a config class path
    ``"package.module:ConfigClass"`` (an ``RLConfig`` subclass whose ``AGENT_CLASS`` names
    the agent). ``agent``: overrides of that config's defaults.
    """

    model: str = "dreamer"
    agent: dict[str, Any] = field(default_factory=dict)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def build_agent_config(self) -> Any:
        """The agent config object (``ValueError`` on an unknown model or field)."""
        if ":" in self.model:
            from distwm.agent import import_object

            cls = import_object(self.model)
            if not hasattr(cls, "from_dict"):
                raise ValueError(f"model {self.model!r} is not a ConfigBase config class")
            return cls.from_dict(self.agent)
        from distwm.registry import create_config

        return create_config(self.model, **self.agent)

    @classmethod
    def from_agent_config(cls, agent_config: Any, runtime: RuntimeConfig | None = None) -> "RunConfig":
        """Wrap an agent config object (its class path becomes ``model``)."""
        kind = type(agent_config)
        return cls(model=f"{kind.__module__}:{kind.__qualname__}", agent=agent_config.to_dict(),
                   runtime=runtime or RuntimeConfig())

    def apply_override(self, assignment: str) -> "RunConfig":
        """``key=value`` (value parsed as YAML): ``runtime.X=`` sets a runtime field,
        ``agent.X=`` or a bare ``X=`` an agent config field, ``model=`` the model."""
        import yaml

        if "=" not in assignment:
            raise ValueError(f"Bad --set {assignment!r}: expected key=value")
        key, _, raw = assignment.partition("=")
        key = key.strip()
        value = yaml.safe_load(raw)
        if key.startswith("runtime."):
            return self.replace(runtime=self.runtime.replace(**{key[len("runtime."):]: value}))
        if key == "model":
            return self.replace(model=value)
        name = key[len("agent."):] if key.startswith("agent.") else key
        updated = self.replace(agent={**self.agent, name: value})
        try:
            updated.build_agent_config()
        except ValueError as exc:
            if name in RuntimeConfig.field_names() and not key.startswith("agent."):
                raise ValueError(f"{exc} ({name!r} is a runtime field: use --set runtime.{name}=...)") from exc
            raise
        return updated

    def validate(self) -> "RunConfig":
        """Check the runtime fields and build the agent config once (raises ``ValueError``)."""
        self.runtime.validate()
        self.build_agent_config()
        return self
