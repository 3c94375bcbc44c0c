"""Adapters: the interface between a benchmark runner and one trained model.

An adapter wraps one model family. The runner builds one adapter per seed,
``AdapterCls(env_spec=..., seed=seed, **extra_kwargs)``, then calls
``load_checkpoint(path)`` and ``evaluate(num_episodes, render=False)``, which returns
``{"episode_returns": [float, ...], ...}`` (extra keys are kept in the results).

* :class:`BaseAdapter` is the bare interface: subclass it for anything that is not a
  distwm :class:`~distwm.agent.Agent` (e.g. a trainer object with its own eval loop).
* :class:`AgentAdapter` implements ``load_checkpoint`` and ``evaluate`` for every agent that
  follows the agent protocol (``initial_state`` / ``act`` / ``load_state_dict``) on an env made
  by :func:`distwm.make_env`; a model family only implements :meth:`AgentAdapter.build_agent`.

Errors are never swallowed: a checkpoint that does not load or an evaluation that fails raises,
and the runner records the exception with its stage and cause.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from distwm._lazy import lazy_exports

__all__ = ["BaseAdapter", "AgentAdapter", "TrainingUnsupported", "env_id_of", "parse_evaluation",
           "run_agent_episodes"]


def env_id_of(env_spec: Any) -> str | None:
    """The env id in ``env_spec``: the string itself, or a dict's ``env``/``env_id``/``game``/
    ``task`` entry."""
    if env_spec is None or isinstance(env_spec, str):
        return env_spec
    if isinstance(env_spec, Mapping):
        for key in ("env", "env_id", "game", "task"):
            if env_spec.get(key):
                return str(env_spec[key])
        raise ValueError(
            f"env_spec {dict(env_spec)!r} names no environment; give one of the keys "
            "'env', 'env_id', 'game' or 'task'"
        )
    raise ValueError(f"env_spec must be a string or a dict, got {type(env_spec).__name__}")


def parse_evaluation(result: Any, source: str = "evaluate") -> dict[str, Any]:
    """Validate an adapter's evaluation output: ``{"episode_returns": [...], ...}`` or a plain
    sequence of returns. Anything else (no returns, non-numeric or non-finite values) raises
    ``ValueError`` saying what came back."""
    if isinstance(result, Mapping):
        if "episode_returns" not in result:
            raise ValueError(
                f"{source} returned a dict without 'episode_returns' (keys: {sorted(result)})"
            )
        out = dict(result)
        returns = result["episode_returns"]
    elif isinstance(result, (list, tuple, np.ndarray)):
        out, returns = {}, result
    else:
        raise ValueError(
            f"{source} must return {{'episode_returns': [...]}} or a list of returns, "
            f"got {type(result).__name__}"
        )
    try:
        values = [float(v) for v in np.asarray(returns, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} returned non-numeric episode returns: {returns!r}") from exc
    if not values:
        raise ValueError(f"{source} returned no episode returns")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{source} returned non-finite episode returns: {values}")
    out["episode_returns"] = values
    return out


class BaseAdapter(ABC):
    """One model family's bridge to the benchmark runners.

    Subclasses implement :meth:`load_checkpoint` and :meth:`evaluate`; optionally
    :meth:`train` (used by ``MultiAgentBenchmarkRunner.run_all(train_epochs=...)``). The
    constructor only stores its arguments: no env, model or file is touched before
    :meth:`load_checkpoint` / :meth:`evaluate`.

    ``name`` (class attribute) is the key used in results and in the runners' ``checkpoints``
    dict; by default the class name without ``Adapter``, lower-cased (``DreamerV2Adapter`` ->
    ``dreamerv2``).
    """

    name: ClassVar[str | None] = None

    def __init__(self, env_spec: Any | None = None, seed: int = 0, **kwargs: Any):
        self.env_spec = env_spec
        self.seed = int(seed)
        self.kwargs = dict(kwargs)

    @classmethod
    def adapter_name(cls) -> str:
        return cls.name or cls.__name__.removesuffix("Adapter").lower() or cls.__name__.lower()

    @abstractmethod
    def load_checkpoint(self, path: str) -> None:
        """Load trained weights from ``path``; raise if they cannot be loaded."""

    @abstractmethod
    def evaluate(self, num_episodes: int = 1, render: bool = False) -> dict[str, Any]:
        """Run ``num_episodes`` evaluation episodes.

        Returns ``{"episode_returns": [float] * num_episodes, ...}``; with ``render`` it may
        add ``"frames"`` (one uint8 ``(T, H, W, 3)`` array per episode).
        """

    @classmethod
    def can_train(cls) -> bool:
        """Whether this adapter overrides :meth:`train` (otherwise it only evaluates)."""
        return cls.train.__func__ is not BaseAdapter.train.__func__

    @classmethod
    def train(cls, env_spec: Any, epochs: int, out_dir: str, **kwargs: Any) -> str:
        """Train a model for ``epochs`` and return its checkpoint path. Adapters that only
        evaluate given checkpoints keep this one, which raises :class:`TrainingUnsupported`."""
        raise TrainingUnsupported([cls])


class TrainingUnsupported(NotImplementedError):
    """Training was asked of adapters that only evaluate given checkpoints."""

    def __init__(self, adapters):
        names = [a.adapter_name() for a in adapters]
        super().__init__(
            f"{', '.join(a.__name__ for a in adapters)} cannot train: pass checkpoints for "
            f"{names} instead"
        )


class AgentAdapter(BaseAdapter):
    """Adapter for any agent that follows :class:`distwm.agent.Agent`.

    Subclasses implement :meth:`build_agent`. ``extra_kwargs`` understood here:
    ``env_kwargs`` (passed to :func:`distwm.make_env`), ``max_episode_steps`` (a safety cap;
    default none) and ``explore`` (default False).

    :meth:`load_checkpoint` reads a safetensors file or a ``torch.load(..., weights_only=True)``
    state dict and calls ``agent.load_state_dict``; override :meth:`load_state` for another
    format.
    """

    def __init__(self, env_spec: Any | None = None, seed: int = 0, **kwargs: Any):
        super().__init__(env_spec=env_spec, seed=seed, **kwargs)
        self._env = None
        self._agent = None

    # -- to implement --------------------------------------------------------------------
    @abstractmethod
    def build_agent(self, env) -> Any:
        """Build the (untrained) agent for ``env``'s observation and action spaces."""

    # -- env and agent, built on first use ----------------------------------------------
    def make_env(self):
        from distwm import make_env

        env_id = env_id_of(self.env_spec)
        if env_id is None:
            raise ValueError(f"{type(self).__name__} needs an env_spec naming an environment")
        env_kwargs = dict(self.env_spec.get("env_kwargs", {})) if isinstance(self.env_spec, Mapping) else {}
        env_kwargs.update(self.kwargs.get("env_kwargs", {}))
        return make_env(env_id, **env_kwargs)

    @property
    def env(self):
        if self._env is None:
            self._env = self.make_env()
        return self._env

    @property
    def agent(self):
        if self._agent is None:
            self._agent = self.build_agent(self.env)
        return self._agent

    def load_state(self, path: str) -> Mapping[str, Any]:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        from distwm.utils.checkpoint import torch_load_safely

        return torch_load_safely(path, path, "checkpoint",
                                 "It is not a distwm checkpoint, or it was cut short: pass another file.")

    def load_checkpoint(self, path: str) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path!r}")
        self.agent.load_state_dict(self.load_state(path))

    def evaluate(self, num_episodes: int = 1, render: bool = False) -> dict[str, Any]:
        return run_agent_episodes(
            self.env, self.agent, num_episodes, seed=self.seed, render=render,
            explore=bool(self.kwargs.get("explore", False)),
            max_episode_steps=self.kwargs.get("max_episode_steps"),
        )

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def _batch_obs(obs: Mapping[str, Any], is_first: bool) -> dict[str, np.ndarray]:
    batched = {k: np.asarray(v)[None] for k, v in obs.items()}
    batched["is_first"] = np.array([is_first])
    return batched


def run_agent_episodes(env, agent, num_episodes: int, seed: int | None = None,
                       render: bool = False, explore: bool = False,
                       max_episode_steps: int | None = None,
                       on_episode: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Roll out ``agent`` (agent protocol, one env) for ``num_episodes``; Gymnasium 1.x env.

    Returns ``{"episode_returns", "episode_lengths"}`` (+ ``"frames"`` with ``render``: the
    ``image`` observations as uint8 ``(T, H, W, 3)``).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes!r}")
    returns, lengths, videos = [], [], []
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        state = agent.initial_state(1)
        total, steps, first, frames = 0.0, 0, True, []
        while True:
            if render and "image" in obs:
                frames.append(np.asarray(obs["image"]).transpose(1, 2, 0))
            action, state = agent.act(_batch_obs(obs, first), state, explore)
            obs, reward, terminated, truncated, _ = env.step(np.asarray(action)[0])
            total += float(reward)
            steps += 1
            first = False
            if terminated or truncated or (max_episode_steps and steps >= max_episode_steps):
                break
        returns.append(total)
        lengths.append(steps)
        if render:
            videos.append(np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8))
        if on_episode is not None:
            on_episode(episode, total)
    out: dict[str, Any] = {"episode_returns": returns, "episode_lengths": lengths}
    if render:
        out["frames"] = videos
    return out


# The seed's paths of the model families' adapters (``distwm.benchmarks.adapters.DreamerAdapter``);
# they live in their own modules, which import this one.
__getattr__, __dir__ = lazy_exports(__name__, {
    "DreamerAdapter": "distwm.benchmarks.dreamer_adapters",
    "DreamerV1Adapter": "distwm.benchmarks.dreamer_adapters",
    "DreamerV2Adapter": "distwm.benchmarks.dreamer_adapters",
    "DreamerV3Recipe2024Adapter": "distwm.benchmarks.dreamer_adapters",
    "IRISAdapter": "distwm.benchmarks.iris_adapter",
    "DiamondAdapter": "distwm.benchmarks.iris_adapter",
})
