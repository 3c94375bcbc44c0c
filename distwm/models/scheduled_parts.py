"""The protocol class of an agent that trains several parts, each on its own named sample and
from its own update on (IRIS: tokenizer / world model / actor-critic; DIAMOND: denoiser /
reward-end model / actor-critic). Owned by no family; IRIS and DIAMOND subclass it.

A subclass sets ``FAMILY`` (its name in messages), ``COMPONENTS`` (the parts, in start order,
each also the name of its sample), ``ACTING`` (the parts env workers need: what
:meth:`get_weights` sends), ``CHECKPOINT_FORMAT`` / ``ARCHITECTURE_FIELDS``, keeps its networks
and optimisers in ``self.agent`` (an ``nn.Module`` with ``optimizer_states`` /
``load_optimizer_states``, and an ``actor_critic`` with ``initial_state`` / ``step``), and
implements :meth:`train_parts`, :meth:`acting_frames` and :meth:`choose_actions`. The config
gives ``start_update(part)`` and ``max_nonfinite_updates``.

:meth:`update` checks the samples, skips the update (and counts it) on a non-finite input,
loss or gradient, raises :class:`~distwm.agent.NonFiniteLossError` after
``max_nonfinite_updates`` in a row, and otherwise advances the update counter the schedule
reads.
"""

from __future__ import annotations

import abc
import logging
from typing import Any, Mapping

import numpy as np
import torch

from distwm.agent import NonFiniteLossError
from distwm.utils.checkpoint import check_state, cpu_state, make_state
from distwm.utils.devices import resolve_device

__all__ = ["ScheduledPartsCore", "discrete_action_count"]

log = logging.getLogger(__name__)


def discrete_action_count(action_space, family: str) -> int:
    """The number of discrete actions (one-hot ``Box`` or ``Discrete``), else ``ValueError``."""
    from distwm.envs.wrappers import OneHotBox

    if isinstance(action_space, OneHotBox):
        return int(action_space.shape[0])
    n = getattr(action_space, "n", None)
    if n is not None:
        return int(n)
    raise ValueError(f"{family} acts in discrete action spaces (one-hot vectors); got {action_space}. "
                     "Use a game with discrete actions (Atari, MinAtar, Crafter, CartPole from pixels)")


class ScheduledPartsCore(abc.ABC):
    """Base class (module docstring); ``self.updates`` counts the updates that trained."""

    FAMILY = "agent"
    COMPONENTS: tuple[str, ...] = ()
    ACTING: tuple[str, ...] = ()
    CHECKPOINT_FORMAT = ""
    ARCHITECTURE_FIELDS: tuple[str, ...] = ()

    def __init__(self, config, device: Any = "cpu"):
        self.config = config
        self.device = resolve_device(device)
        self.agent: torch.nn.Module | None = None
        self.updates = 0
        self.nonfinite_updates = 0
        self._nonfinite_streak = 0

    @classmethod
    def from_config(cls, config, observation_space, action_space, device: Any = "cpu"):
        """The agent for an env's spaces: ``image`` frames and discrete actions."""
        spaces = getattr(observation_space, "spaces", {})
        if "image" not in spaces:
            raise ValueError(f"{cls.FAMILY} learns from pixels: the observation space needs an 'image' "
                             f"(uint8 C, H, W), got keys {sorted(spaces)} (set obs_type: pixels)")
        return cls(config, tuple(spaces["image"].shape), discrete_action_count(action_space, cls.FAMILY), device)

    @classmethod
    def supports(cls, observation_space, action_space) -> bool:
        """Whether ``from_config`` takes these spaces (pixels and discrete actions)."""
        try:
            discrete_action_count(action_space, cls.FAMILY)
        except ValueError:
            return False
        return "image" in getattr(observation_space, "spaces", {})

    def started(self, component: str) -> bool:
        return self.updates >= self.config.start_update(component)

    # -- acting -------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.agent.actor_critic.initial_state(int(num_envs), self.device)

    @abc.abstractmethod
    def acting_frames(self, images: np.ndarray) -> torch.Tensor:
        """uint8 frames ``(B, C, H, W)`` -> what the actor-critic sees."""

    @abc.abstractmethod
    def choose_actions(self, logits: torch.Tensor, explore: bool) -> torch.Tensor:
        """Action indices ``(B,)`` from the policy's logits, exploring or evaluating."""

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        """One-hot actions for ``obs["image"]``; the LSTM state goes on between calls and is
        zeroed where ``obs["is_first"]`` marks a new episode."""
        if "image" not in obs:
            raise ValueError(f"{type(self).__name__}.act: observation has no 'image' (keys: {sorted(obs)})")
        frames = self.acting_frames(np.asarray(obs["image"]))
        n = frames.shape[0]
        h, c = self.initial_state(n) if state is None else state
        if obs.get("is_first") is not None:
            keep = 1.0 - torch.as_tensor(np.asarray(obs["is_first"]), dtype=torch.float32, device=self.device)
            h, c = h * keep.unsqueeze(-1), c * keep.unsqueeze(-1)
        self.agent.actor_critic.eval()
        logits, _, state = self.agent.actor_critic.step(frames, (h, c))
        actions = self.choose_actions(logits, explore)
        one_hot = np.zeros((n, self.agent.action_size), np.float32)
        one_hot[np.arange(n), actions.cpu().numpy()] = 1.0
        return one_hot, state

    # -- weights for the env workers ----------------------------------------------------------
    def get_weights(self) -> dict[str, torch.Tensor]:
        return {f"{part}.{k}": v.detach().cpu().clone() for part in self.ACTING
                for k, v in getattr(self.agent, part).state_dict().items()}

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        for part in self.ACTING:
            prefix = f"{part}."
            getattr(self.agent, part).load_state_dict({k[len(prefix):]: v for k, v in weights.items()
                                                       if k.startswith(prefix)})

    # -- learning -----------------------------------------------------------------------------
    @abc.abstractmethod
    def train_parts(self, batches: Mapping[str, Mapping[str, Any]], metrics: dict[str, float]) -> None:
        """One step of each started part on its sample, its losses into ``metrics`` (each part
        reports ``<part>/skipped``)."""

    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        """One step of each started part on its sample. Returns every part's losses
        (``<part>/loss``, ...), ``skipped`` (1.0 when a non-finite input, loss or gradient
        skipped a part's step), ``updates`` and which parts trained (``<part>/training``)."""
        missing = [name for name in self.COMPONENTS if self.started(name) and name not in batches]
        if missing:
            raise ValueError(f"{type(self).__name__}.update needs the samples {list(self.COMPONENTS)} (its "
                             f"data_spec's); got {sorted(batches)}, missing {missing}")
        metrics: dict[str, float] = {f"{name}/training": float(self.started(name)) for name in self.COMPONENTS}
        bad = [name for name in self.COMPONENTS if self.started(name) and not _finite(batches[name])]
        if bad:
            return self._skip(f"non-finite input in the {', '.join(bad)} batch", metrics)
        self.train_parts(batches, metrics)
        skipped = [k.split("/")[0] for k, v in metrics.items() if k.endswith("/skipped") and v]
        if skipped:
            return self._skip(f"non-finite loss or gradient in {', '.join(skipped)}", metrics)
        self._nonfinite_streak = 0
        self.updates += 1
        return self._finish(metrics, skipped=0.0)

    def _finish(self, metrics: dict[str, float], skipped: float) -> dict[str, float]:
        """``metrics`` with ``skipped``, the counters, and which parts this update trained."""
        metrics.update(skipped=skipped, updates=float(self.updates), nonfinite_updates=float(self.nonfinite_updates))
        return {k: v for k, v in metrics.items() if np.isfinite(v)}

    def _skip(self, what: str, metrics: dict[str, float]) -> dict[str, float]:
        self.nonfinite_updates += 1
        self._nonfinite_streak += 1
        log.warning("%s update %d skipped: %s (%d skipped in all)", self.FAMILY, self.updates, what,
                    self.nonfinite_updates)
        if self._nonfinite_streak >= self.config.max_nonfinite_updates:
            raise NonFiniteLossError(f"{self.FAMILY}: {self._nonfinite_streak} consecutive updates skipped ({what}; "
                                     f"limit max_nonfinite_updates={self.config.max_nonfinite_updates})")
        return self._finish(metrics, skipped=1.0)

    # -- checkpoints --------------------------------------------------------------------------
    def _architecture(self) -> dict[str, Any]:
        arch = {name: getattr(self.config, name) for name in self.ARCHITECTURE_FIELDS}
        arch["action_size"] = self.agent.action_size
        return arch

    def state_dict(self) -> dict[str, Any]:
        return make_state(self.CHECKPOINT_FORMAT, self._architecture(), config=self.config.to_dict(),
                          networks=cpu_state(self.agent.state_dict()), optimizers=self.agent.optimizer_states(),
                          updates=self.updates, nonfinite_updates=self.nonfinite_updates)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, self.CHECKPOINT_FORMAT, self._architecture(), self.FAMILY,
                    ("networks", "optimizers", "updates"))
        try:
            self.agent.load_state_dict(state["networks"])
            self.agent.load_optimizer_states(state["optimizers"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"{self.FAMILY} checkpoint tensors do not fit this agent: {exc}") from exc
        self.updates = int(state["updates"])
        self.nonfinite_updates = int(state.get("nonfinite_updates", 0))


def _finite(batch: Mapping[str, Any]) -> bool:
    return all(bool(np.isfinite(np.asarray(batch[k])).all()) for k in ("reward", "action") if k in batch)
