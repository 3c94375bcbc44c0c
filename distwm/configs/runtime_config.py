"""Configs of the Ray actor-learner runtime (``distwm.runtime``).

A whole training run is a :class:`RunConfig`: the model (a registered name such as
``"dreamer"`` or a config class path ``"package.module:ConfigClass"``), the agent config's
fields, and a :class:`RuntimeConfig`. ``RunConfig.to_yaml()`` is the ``run.yaml`` that
``distwm train --config`` reads and every run directory holds.

A dataset-trained model (Genie, I-JEPA, DiT) trains on the data-parallel path
(``distwm.runtime.data_parallel``, Ray Train) instead: its run is a
:class:`DataParallelRunConfig`, the model (a registered name of kind ``"dataset-trained"``, or
``"package.module:ConfigClass"`` whose ``TRAINABLE_CLASS`` names the protocol class: that form
needs no registration in the processes that run it), ``model_config`` (overrides of its
config) and a :class:`DataParallelConfig`; :func:`is_data_parallel_run_yaml` tells its
``run.yaml`` from an RL run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Optional, Union

from distwm.configs.base import ConfigBase, check_value, parse_override_value

__all__ = ["RuntimeConfig", "RunConfig", "DataParallelConfig", "DataParallelRunConfig",
           "DATASET_TRAINED", "dataset_trained_spec", "is_dataset_trained",
           "is_data_parallel_run_yaml"]


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
        return _apply_override(self, assignment, "runtime", RuntimeConfig, "agent",
                               RunConfig.build_agent_config)

    def validate(self) -> "RunConfig":
        """Check the runtime fields and build the agent config once (raises ``ValueError``)."""
        self.runtime.validate()
        self.build_agent_config()
        return self


# -- the data-parallel path (dataset-trained models) -----------------------------------------------

#: the registry kind of the models this path trains
DATASET_TRAINED = "dataset-trained"
#: the top-level key of a data-parallel run.yaml (an RL run.yaml has ``runtime`` instead)
SECTION = "data_parallel"


@dataclass
class DataParallelConfig(ConfigBase):
    """How a dataset-trained run is laid out on Ray Train and how long it goes.

    * ``data``: the data set (:mod:`distwm.datasets.training_data`): a shard directory
      (``manifest.json`` + HDF5 shards, :mod:`distwm.datasets.video_shards`), a CIFAR-10 or
      image folder, or ``sklearn:digits[:SIZE][:rgb]``; every node running a worker must read it.
    * ``workers``: Ray Train workers (one DDP rank each; each reads its own shard files, or
      every W-th image, so a shard directory needs at least as many files), or ``"auto"``: as
      many as the cluster's GPUs (or CPUs) hold, at most one per shard file.
    * ``gpus_per_worker``: GPUs per worker (``0``: CPU workers, gloo; ``> 0``: NCCL);
      ``"auto"``: 1 when the cluster has GPUs, else 0. ``cpus_per_worker``: CPUs per worker.
    * ``total_updates``: updates of the run (``steps`` is accepted; ``--steps``); every rank
      makes each update on its own batches, gradients averaged over the group.
    * ``report_interval``: updates between metrics reports (``ray.train.report``, one progress
      line each); ``checkpoint_interval``: updates between checkpoints (and one at the end);
      ``keep_checkpoints``: how many Ray Train keeps.
    * ``max_failures``: restarts of the worker group from its last checkpoint
      (``ray.train.FailureConfig``).
    * ``seed``: the run seed (model initialisation and each rank's batch sampling).
    * ``address``: Ray address; ``None``: ``RAY_ADDRESS`` or a new local instance.
    * ``run_dir``: where run.yaml, metrics, the report and Ray Train's checkpoints
      (``<run_dir>/train/ckpt-<updates>``) go; a path, a shared mount or a URI.
    """

    ALIASES: ClassVar[Mapping[str, str]] = {"steps": "total_updates"}

    data: Optional[str] = None
    workers: Union[int, Literal["auto"]] = 1
    gpus_per_worker: Union[float, Literal["auto"]] = "auto"
    cpus_per_worker: float = 1.0
    total_updates: int = 10_000
    report_interval: int = 10
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 2
    max_failures: int = 3
    seed: int = 0
    address: Optional[str] = None
    run_dir: Optional[str] = None
    wandb: bool = False
    wandb_project: str = "distwm"
    verbose: bool = True

    def validate(self) -> "DataParallelConfig":
        """Raise ``ValueError`` naming the first bad field; returns ``self``."""
        if not self.data:
            raise ValueError("data_parallel.data is required: the data set to train on (a shard "
                             "directory, a CIFAR-10 / image folder, or sklearn:digits[:SIZE][:rgb]; "
                             "`distwm train MODEL --data DIR`)")
        if self.workers != "auto" and self.workers < 1:
            raise ValueError(f"data_parallel.workers must be >= 1 or 'auto', got {self.workers!r}")
        if self.gpus_per_worker != "auto" and self.gpus_per_worker < 0:
            raise ValueError(f"data_parallel.gpus_per_worker must be >= 0 or 'auto', "
                             f"got {self.gpus_per_worker!r}")
        for name in ("cpus_per_worker", "total_updates", "report_interval", "checkpoint_interval",
                     "keep_checkpoints"):
            if not getattr(self, name) > 0:
                raise ValueError(f"data_parallel.{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_failures < 0:
            raise ValueError(f"data_parallel.max_failures must be >= 0, got {self.max_failures!r}")
        return self


def _config_class_spec(model: str) -> Any:
    """A spec for ``"package.module:ConfigClass"`` whose ``TRAINABLE_CLASS`` names the protocol
    class (as an RL config's ``AGENT_CLASS`` does): found in every process, registered or not."""
    from distwm.agent import import_object
    from distwm.registry import ModelSpec

    cls = import_object(model)
    path = getattr(cls, "TRAINABLE_CLASS", None)
    if not isinstance(path, str) or ":" not in path:
        raise ValueError(f"model {model!r}: {getattr(cls, '__name__', cls)} has no TRAINABLE_CLASS "
                         "('package.module:Class' of its dataset-trained protocol class)")
    return ModelSpec(cls.__name__.lower(), path, model, protocol_path=path, kind=DATASET_TRAINED)


def dataset_trained_spec(model: str) -> Any:
    """The registry spec of ``model`` if it is a dataset-trained model with a protocol class
    (or the spec of a config class path with a ``TRAINABLE_CLASS``); ``ValueError`` otherwise
    (naming its kind)."""
    from distwm.registry import get_model_spec

    if ":" in model:
        return _config_class_spec(model)
    spec = get_model_spec(model)
    if spec.kind != DATASET_TRAINED:
        raise ValueError(f"model {spec.name!r} is a {spec.kind} model, not a {DATASET_TRAINED} one: "
                         "it trains on the actor-learner runtime (`distwm train MODEL --env ...`)")
    if spec.protocol_path is None or spec.config_path is None:
        raise ValueError(f"model {spec.name!r} is registered without a protocol_path or "
                         "config_path: the data-parallel path needs both")
    return spec


def is_dataset_trained(model: str | None) -> bool:
    """True when ``model`` names a registered dataset-trained model or a config class with a
    ``TRAINABLE_CLASS`` (an unknown name or an RL config is not)."""
    if not model:
        return False
    from distwm.registry import get_model_spec

    try:
        if ":" in model:
            _config_class_spec(model)
            return True
        return get_model_spec(model).kind == DATASET_TRAINED
    except (ValueError, ImportError):
        return False


def is_data_parallel_run_yaml(text: str) -> bool:
    """True when a run.yaml's text is a :class:`DataParallelRunConfig`'s."""
    import yaml

    data = yaml.safe_load(text) or {}
    return isinstance(data, Mapping) and SECTION in data


@dataclass
class DataParallelRunConfig(ConfigBase):
    """One data-parallel training run: ``model`` (a registered dataset-trained model),
    ``model_config`` (overrides of its config's defaults) and :class:`DataParallelConfig`."""

    model: str = ""
    model_config: dict[str, Any] = field(default_factory=dict)
    data_parallel: DataParallelConfig = field(default_factory=DataParallelConfig)

    def spec(self) -> Any:
        return dataset_trained_spec(self.model)

    def build_model_config(self) -> Any:
        """The model's config object (``ValueError`` on an unknown model or field)."""
        from distwm.registry import apply_overrides, default_config

        return apply_overrides(default_config(self.spec()), self.model_config)

    def with_stage(self, stage: str) -> "DataParallelRunConfig":
        """This run with the model config's ``stage`` set (``ValueError`` when the model's
        config has no ``stage`` field, or the stage is not one of its choices)."""
        config = self.build_model_config()
        if not hasattr(config, "stage"):
            raise ValueError(f"--stage {stage}: model {self.spec().name!r} has no training stages "
                             f"(its config {type(config).__name__} has no field 'stage')")
        updated = self.replace(model_config={**self.model_config, "stage": stage})
        updated.build_model_config()
        return updated

    def apply_override(self, assignment: str) -> "DataParallelRunConfig":
        """``key=value`` (value parsed as YAML): ``data_parallel.X=`` sets a run field,
        ``model_config.X=`` or a bare ``X=`` a model config field, ``model=`` the model."""
        for section, where in (("runtime", SECTION), ("agent", "model_config")):
            if assignment.strip().startswith(f"{section}."):
                key = assignment.partition("=")[0].strip()
                raise ValueError(f"--set {key}: a dataset-trained run has no {section!r} section; "
                                 f"use --set {where}.{key.partition('.')[2]}=...")
        return _apply_override(self, assignment, SECTION, DataParallelConfig, "model_config",
                               DataParallelRunConfig.build_model_config)

    def validate(self) -> "DataParallelRunConfig":
        """Check the run fields and build the model config once (raises ``ValueError``)."""
        self.data_parallel.validate()
        self.build_model_config()
        return self


def _built_config(run: Any, build: Any) -> Any:
    """``run``'s model config, or None when it cannot be built yet (an earlier override left a
    check across fields open: the caller's ``validate()`` judges it)."""
    try:
        return build(run)
    except (ValueError, ImportError, AttributeError, TypeError):
        return None


def _apply_override(run: Any, assignment: str, section: str, section_cls: type, config_field: str,
                    build: Any) -> Any:
    """``run`` with ``key=value`` applied (value parsed as YAML): ``<section>.X=`` sets field X
    of the run's ``section`` (a ``section_cls``), ``model=`` the model, ``<config_field>.X=`` or
    a bare ``X=`` a field of the model's config (checked by ``build(updated run)``; a bare name
    that is a ``section`` field says so)."""
    if "=" not in assignment:
        raise ValueError(f"Bad --set {assignment!r}: expected key=value")
    key, _, raw = assignment.partition("=")
    key = key.strip()
    if key.startswith(f"{section}."):
        field = key[len(section) + 1:]
        value = parse_override_value(raw, section_cls.field_type(field))
        return run.replace(**{section: getattr(run, section).replace(**{field: value})})
    if key == "model":
        return run.replace(model=parse_override_value(raw, str))
    explicit = key.startswith(f"{config_field}.")
    name = key[len(config_field) + 1:] if explicit else key
    current = _built_config(run, build)
    field_type = current.field_type(name) if current is not None and hasattr(current, "field_type") else Any
    value = parse_override_value(raw, field_type)
    updated = run.replace(**{config_field: {**getattr(run, config_field), name: value}})
    try:
        build(updated)
    except ValueError as exc:
        if name in section_cls.field_names() and not explicit:
            raise ValueError(f"{exc} ({name!r} is a {section} field: use --set {section}.{name}=...)") from exc
        if current is not None and name not in current.field_names():
            raise
        if field_type is not Any:
            check_value(key, value, field_type)  # a value of the wrong type fails here
        # a check across fields (image_size and the stages it must divide) waits for the
        # caller's validate() after the last override, so overrides may come in any order
    return updated
