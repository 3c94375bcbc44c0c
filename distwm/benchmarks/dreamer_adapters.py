"""Benchmark adapters for distwm's Dreamer: V3 (:class:`DreamerAdapter`), V1 and V2.

Each adapter runs one version of :class:`distwm.models.dreamer.Dreamer`::

    from distwm.benchmarks import BenchmarkRunner, DreamerV2Adapter

    runner = BenchmarkRunner(DreamerV2Adapter, out_dir="results/v2")
    results = runner.run(env_spec="walker-walk", seeds=[0, 1, 2], num_episodes=10,
                         checkpoint="runs/dreamer/checkpoints/latest.pt")

``checkpoint`` may be

* a file written by ``Dreamer.save`` / :class:`~distwm.models.dreamer.DreamerAgent`
  (``{log_dir}/{exp_name}/checkpoints/latest.pt``), or a ``DreamerAgent`` run directory
  holding ``checkpoints/latest.pt``;
* a checkpoint of the Ray runtime: a ``checkpoints/ckpt-N`` directory (its ``learner.pt``),
  the ``learner.pt`` file itself, or the run directory (its ``checkpoints/latest``).

The checkpoint carries the config it was trained with: the adapter rebuilds the networks
and the env from it (backend, observation type, image size, action repeat, time limit,
env kwargs), so the policy is evaluated on the env it was trained on, greedily
(``explore=False``). A checkpoint of another Dreamer version, of another env or of another
architecture fails to load with a ``ValueError`` saying which; the runner records it with
its cause.

``extra_kwargs`` (the runner passes them to the constructor and to :meth:`DreamerAdapter.train`):

* ``config``: a :class:`~distwm.configs.dreamer_config.DreamerConfig`, a dict of its fields
  or a YAML path, for :meth:`~DreamerAdapter.train` (and for loading a checkpoint that
  carries no config). A dict without ``version`` gets the adapter's; any other version is an
  error.
* ``env_kwargs``: extra keyword arguments of the env backend (override the config's).
* ``device``: torch device for the networks (default ``"auto"``: CUDA when available).
* ``steps_per_epoch``: env steps of one training epoch (default 10,000).
* ``max_episode_steps``, ``explore``: see :class:`~distwm.benchmarks.adapters.AgentAdapter`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping

from distwm.benchmarks.adapters import AgentAdapter, env_id_of

_log = logging.getLogger(__name__)

__all__ = ["DreamerAdapter", "DreamerV1Adapter", "DreamerV2Adapter", "DreamerV3Recipe2024Adapter",
           "read_dreamer_checkpoint"]

#: adapter class of each Dreamer version (named in version-mismatch errors)
ADAPTER_OF_VERSION = {"v1": "DreamerV1Adapter", "v2": "DreamerV2Adapter", "v3": "DreamerAdapter",
                      "v3-2024": "DreamerV3Recipe2024Adapter"}

#: extra_kwargs the Dreamer adapters understand
ADAPTER_KWARGS = ("config", "device", "env_kwargs", "explore", "max_episode_steps",
                  "steps_per_epoch")

DEFAULT_STEPS_PER_EPOCH = 10_000

#: where a ``DreamerAgent`` run directory keeps its last checkpoint
AGENT_LATEST = os.path.join("checkpoints", "latest.pt")


def _checkpoint_file(path: str) -> str:
    """The checkpoint file that ``path`` (a file, a runtime checkpoint or run directory, or a
    ``DreamerAgent`` run directory) designates."""
    from distwm.runtime.learner import CHECKPOINT_FILE, latest_checkpoint

    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Dreamer checkpoint not found: {path!r}")
    if os.path.isfile(os.path.join(path, CHECKPOINT_FILE)):
        return os.path.join(path, CHECKPOINT_FILE)
    latest = latest_checkpoint(path)
    if latest is not None:
        return os.path.join(latest, CHECKPOINT_FILE)
    if os.path.isfile(os.path.join(path, AGENT_LATEST)):
        return os.path.join(path, AGENT_LATEST)
    raise FileNotFoundError(
        f"directory {path!r} holds no Dreamer checkpoint: expected {CHECKPOINT_FILE} (a runtime "
        f"checkpoint), checkpoints/latest (a runtime run) or {AGENT_LATEST} (a DreamerAgent run)"
    )


def read_dreamer_checkpoint(path) -> tuple[dict[str, Any], str]:
    """``(state, file)``: the Dreamer state dict that ``path`` designates (see the module
    docstring), loaded with ``weights_only=True``; the runtime's ``learner.pt`` is unwrapped
    to its ``agent`` entry. Anything else raises ``ValueError`` saying what was found."""
    from distwm.models.dreamer.checkpoint import CHECKPOINT_FORMAT
    from distwm.utils.checkpoint import agent_state, load_file

    file = _checkpoint_file(os.fspath(path))
    return dict(agent_state(load_file(file, CHECKPOINT_FORMAT, "Dreamer"))), file


def _version_name(version: str) -> str:
    number, _, recipe = version.removeprefix("v").partition("-")
    return f"DreamerV{number}" + (f" ({recipe} recipe)" if recipe else "")


class DreamerAdapter(AgentAdapter):
    """Benchmark adapter for DreamerV3 (the base of the V1 and V2 adapters; module docstring).

    The constructor only checks and stores its arguments. :meth:`load_checkpoint` builds the
    env and the agent from the checkpoint's config; :meth:`evaluate` runs greedy episodes.
    """

    #: the Dreamer version this adapter runs
    version: ClassVar[str] = "v3"

    def __init__(self, env_spec: Any | None = None, seed: int = 0, **kwargs: Any):
        self.check_kwargs(kwargs)
        super().__init__(env_spec=env_spec, seed=seed, **kwargs)
        self.config = None  # the DreamerConfig of the loaded checkpoint
        self.checkpoint_file: str | None = None

    # -- arguments and configs -------------------------------------------------------------
    @classmethod
    def check_kwargs(cls, kwargs: Mapping[str, Any]) -> None:
        unknown = sorted(set(kwargs) - set(ADAPTER_KWARGS))
        if unknown:
            raise ValueError(f"{cls.__name__} got unknown keyword argument(s) {unknown}; "
                             f"valid: {list(ADAPTER_KWARGS)}")

    @classmethod
    def with_env_kwargs(cls, config, env_spec: Any, kwargs: Mapping[str, Any]):
        """``config`` with the env kwargs given by ``env_spec`` (a dict's ``env_kwargs``) and
        ``kwargs`` applied over its own."""
        given = dict(env_spec.get("env_kwargs", {})) if isinstance(env_spec, Mapping) else {}
        given.update(kwargs.get("env_kwargs") or {})
        return config.replace(env_kwargs={**config.env_kwargs, **given}) if given else config

    @classmethod
    def make_config(cls, env_spec: Any = None, **kwargs: Any):
        """The :class:`DreamerConfig` of this version for ``env_spec`` from ``kwargs["config"]``
        (version defaults when absent): the env id and ``env_kwargs`` applied on top."""
        from distwm.models.dreamer.agent import resolve_config

        cls.check_kwargs(kwargs)
        given = kwargs.get("config")
        if given is None or isinstance(given, Mapping):
            given = {"version": cls.version, **dict(given or {})}
        config = resolve_config(given)
        if config.version != cls.version:
            raise ValueError(
                f"{cls.__name__} runs {_version_name(cls.version)} but its config has version "
                f"{config.version!r}; use {ADAPTER_OF_VERSION[config.version]} or "
                f"version={cls.version!r}"
            )
        env_id = env_id_of(env_spec)
        if env_id is not None:
            config = config.replace(env=env_id)
        return cls.with_env_kwargs(config, env_spec, kwargs)

    def config_of_checkpoint(self, state: Mapping[str, Any], file: str):
        """The checkpoint's config (the adapter's when it stores none), checked against this
        adapter's version and ``env_spec``; ``env_kwargs`` given to the adapter override."""
        from distwm.configs.dreamer_config import DreamerConfig

        if "config" not in state:
            return self.make_config(self.env_spec, **self.kwargs)
        saved = dict(state["config"])
        known = set(DreamerConfig.field_names()) | set(DreamerConfig.aliases())
        retired = sorted(k for k in saved if k not in known)
        if retired:  # settings an older distwm wrote that no longer exist (and shape nothing)
            _log.warning("%s: ignoring config fields DreamerConfig no longer has: %s",
                         file, ", ".join(retired))
        config = DreamerConfig.from_dict({k: v for k, v in saved.items() if k in known})
        if config.version != self.version:
            raise ValueError(
                f"{file!r} is a {_version_name(config.version)} checkpoint (version "
                f"{config.version!r}) but {type(self).__name__} runs "
                f"{_version_name(self.version)}; evaluate it with "
                f"{ADAPTER_OF_VERSION[config.version]}"
            )
        env_id = env_id_of(self.env_spec)
        if env_id is not None and env_id != config.env:
            raise ValueError(
                f"{file!r} was trained on env {config.env!r}, not on the benchmarked env "
                f"{env_id!r}; pass the checkpoint of that env"
            )
        return self.with_env_kwargs(config, self.env_spec, self.kwargs)

    # -- the AgentAdapter hooks ------------------------------------------------------------
    def make_env(self):
        from distwm.envs.factory import make_env_from_config

        if self.config is None:
            raise RuntimeError(self._not_loaded())
        return make_env_from_config(self.config, seed=self.seed)

    def build_agent(self, env):
        from distwm.models.dreamer.core import Dreamer

        if self.config is None:
            raise RuntimeError(self._not_loaded())
        return Dreamer.from_config(self.config, env.observation_space, env.action_space,
                                   device=self.kwargs.get("device", "auto"))

    def _not_loaded(self) -> str:
        return (f"{type(self).__name__}: call load_checkpoint(path) first; only trained "
                f"{_version_name(self.version)} checkpoints are benchmarked")

    def load_checkpoint(self, path: str) -> None:
        """Load a Dreamer checkpoint (module docstring); builds its env and agent."""
        state, file = read_dreamer_checkpoint(path)
        config = self.config_of_checkpoint(state, file)
        self.close()
        self._agent = None
        self.config, self.checkpoint_file = config, file
        try:
            self.agent.load_state_dict(state)
        except ValueError as exc:
            self.close()
            self.config = self._agent = None
            raise ValueError(f"{file!r}: {exc}") from exc

    def evaluate(self, num_episodes: int = 1, render: bool = False) -> dict[str, Any]:
        """``num_episodes`` greedy episodes (``explore=False`` unless the adapter was given
        ``explore=True``); ``{"episode_returns", "episode_lengths", "env_steps"}``, where
        ``env_steps`` is the env steps the checkpoint was trained for.

        The policy samples its latent state from the posterior, so the torch RNG is seeded with
        the adapter's seed (inside ``torch.random.fork_rng``: the global RNG is left as it was):
        an evaluation is reproducible from its seed."""
        import torch

        if self.config is None:
            raise RuntimeError(self._not_loaded())
        device = self.agent.device
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            out = super().evaluate(num_episodes=num_episodes, render=render)
        out["env_steps"] = int(self.agent.env_steps)
        return out

    # -- training ----------------------------------------------------------------------------
    @classmethod
    def train(cls, env_spec: Any, epochs: int, out_dir: str, **kwargs: Any) -> str:
        """Train this Dreamer version on ``env_spec`` with :meth:`DreamerAgent.train` for
        ``epochs * steps_per_epoch`` env steps; logs go to ``out_dir/{exp_name}``. Returns the
        path of the final checkpoint, ``out_dir/{exp_name}/checkpoints/final.pt``."""
        from distwm.models.dreamer.agent import DreamerAgent

        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        steps_per_epoch = kwargs.get("steps_per_epoch", DEFAULT_STEPS_PER_EPOCH)
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) \
                or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        if env_id_of(env_spec) is None:
            raise ValueError(f"{cls.__name__}.train needs an env_spec naming an environment")
        config = cls.make_config(env_spec, **kwargs)
        overrides: dict[str, Any] = {"log_dir": os.fspath(out_dir)}
        if "device" in kwargs:
            overrides["device"] = kwargs["device"]
        agent = DreamerAgent(config.replace(**overrides))
        agent.train(total_steps=epochs * steps_per_epoch)
        return agent.dreamer.save(Path(agent.log_dir, "checkpoints", "final.pt"))


class DreamerV1Adapter(DreamerAdapter):
    """Benchmark adapter for DreamerV1 (Gaussian latents, dynamics backpropagation)."""

    version: ClassVar[str] = "v1"


class DreamerV2Adapter(DreamerAdapter):
    """Benchmark adapter for DreamerV2 (categorical latents, KL balancing)."""

    version: ClassVar[str] = "v2"


class DreamerV3Recipe2024Adapter(DreamerAdapter):
    """Benchmark adapter for DreamerV3 with its authors' 2024 recipe (``version="v3-2024"``)."""

    version: ClassVar[str] = "v3-2024"
