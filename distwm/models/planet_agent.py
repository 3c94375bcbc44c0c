"""PlaNet as an :class:`distwm.agent.Agent`: what the Ray runtime and ``Planet`` both drive.

Acting filters each env's observation into the RSSM's latent state and plans the next action
with CEM (all envs of a worker in one batch); learning takes replay batches ``(B, T, ...)``
and performs one step on the PlaNet bound (:func:`distwm.models.planet_loss.planet_loss`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from distwm.agent import DataSpec
from distwm.controller.rssm_policy import RSSMPolicy
from distwm.models.planet_loss import optimizer_step, planet_loss, prepare_observation
from distwm.models.rssm import RecurrentStateSpaceModel

__all__ = ["PlanetAgent", "resolve_device", "planet_observation_key", "action_space_info"]


def resolve_device(device: Any) -> torch.device:
    """``"auto"`` (or ``None``) -> CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def planet_observation_key(observation_space: Any) -> str:
    """The observation PlaNet models: ``image`` when the env provides one, else ``state``."""
    keys = list(getattr(observation_space, "spaces", {}) or {})
    for key in ("image", "state"):
        if key in keys:
            return key
    raise ValueError(
        f"PlaNet needs an 'image' or 'state' observation; the observation space has {keys or observation_space!r}"
    )


def action_space_info(action_space: Any) -> tuple[int, bool, np.ndarray, np.ndarray]:
    """``(action_size, discrete, low, high)`` of a ``Discrete`` space or a float ``Box``.

    A ``Discrete(n)`` space, or a Box of one-hot vectors with an ``n`` attribute (the env
    adapters' ``OneHotBox``), is planned over one-hot vectors of size ``n``.
    """
    n = getattr(action_space, "n", None)
    shape = tuple(getattr(action_space, "shape", None) or ())
    if n is not None and shape in ((), (int(n),)):  # Discrete(n), or a one-hot Box of size n
        return int(n), True, np.zeros(int(n), np.float32), np.ones(int(n), np.float32)
    if len(shape) != 1:
        raise ValueError(f"PlaNet needs a Discrete or a 1-D Box action space, got {action_space!r}")
    size = int(shape[0])
    low = np.broadcast_to(np.asarray(action_space.low, np.float32), (size,))
    high = np.broadcast_to(np.asarray(action_space.high, np.float32), (size,))
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"PlaNet's planner needs finite action bounds, got low={low}, high={high}")
    return size, False, low.copy(), high.copy()


class PlanetAgent:
    """PlaNet agent: a :class:`RecurrentStateSpaceModel`, its Adam optimiser and a CEM
    :class:`RSSMPolicy`.

    Args:
        config: a :class:`~distwm.configs.planet_config.PlanetConfig`.
        obs_shape: ``(C, 64, 64)`` for images, ``(D,)`` for vectors.
        action_size: action vector size (one-hot size for discrete actions).
        device: torch device of the networks (``"auto"`` picks CUDA when available).
        obs_key: which observation to model (``image`` or ``state``).
        discrete: actions are one-hot vectors.
        action_low, action_high: bounds of continuous actions.
    """

    def __init__(self, config, obs_shape, action_size: int, device: Any = "cpu", obs_key: str = "image",
                 discrete: bool = False, action_low: Any = -1.0, action_high: Any = 1.0):
        self.config = config
        self.device = resolve_device(device)
        self.obs_key = obs_key
        self.discrete = discrete
        self.rssm = RecurrentStateSpaceModel(
            action_size, config.state_size, config.latent_size, config.hidden_size,
            config.embedding_size, config.activation, obs_shape=tuple(obs_shape), min_std=config.min_std,
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.rssm.parameters(), lr=config.learning_rate, eps=config.adam_epsilon)
        self.policy = RSSMPolicy(
            self.rssm, config.planning_horizon, config.num_candidates, config.num_iterations,
            config.top_candidates, self.device, action_low=action_low, action_high=action_high,
            action_noise=config.action_noise, discrete=discrete,
        )
        self.updates = 0
        self.nonfinite_updates = 0

    #: consecutive non-finite losses tolerated (each skipped) before ``update`` raises
    max_nonfinite_updates = 10

    @classmethod
    def from_config(cls, config, observation_space, action_space, device: Any = "cpu") -> "PlanetAgent":
        key = planet_observation_key(observation_space)
        obs_shape = tuple(observation_space.spaces[key].shape)
        size, discrete, low, high = action_space_info(action_space)
        return cls(config, obs_shape, size, device, obs_key=key, discrete=discrete,
                   action_low=low, action_high=high)

    # -- data ---------------------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        return DataSpec(self.config.batch_size, self.config.train_seq_len, self.config.train_ratio)

    # -- acting -------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> dict[str, torch.Tensor]:
        zeros = lambda n: torch.zeros(num_envs, n, device=self.device)  # noqa: E731
        return {"h": zeros(self.rssm.state_size), "s": zeros(self.rssm.latent_size),
                "a": zeros(self.rssm.action_size)}

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], state: Any, explore: bool) -> tuple[np.ndarray, dict]:
        if self.obs_key not in obs:
            raise ValueError(f"PlanetAgent.act: observation has no {self.obs_key!r} (keys: {sorted(obs)})")
        x = prepare_observation(obs[self.obs_key], self.config.bit_depth, self.device)
        num_envs = x.shape[0]
        if state is None:
            state = self.initial_state(num_envs)
        is_first = obs.get("is_first")
        h, s, a = state["h"], state["s"], state["a"]
        if is_first is not None:
            keep = 1.0 - torch.as_tensor(np.asarray(is_first), dtype=torch.float32, device=self.device)
            keep = keep.reshape(num_envs, 1)
            h, s, a = h * keep, s * keep, a * keep
        self.rssm.eval()
        h, s = self.rssm.get_init_state(self.rssm.encoder(x), h, s, a, mean=True)
        action = self.policy.plan(h, s)
        if explore:
            action = self.policy.explore(action)
        return action.cpu().numpy().astype(np.float32), {"h": h, "s": s, "a": action}

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.rssm.state_dict().items()}

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        self.rssm.load_state_dict(weights)

    # -- learning -----------------------------------------------------------------------------
    def _time_major(self, batch: Mapping[str, Any], key: str) -> torch.Tensor:
        if key not in batch:
            raise ValueError(f"PlanetAgent.update: batch has no {key!r} (keys: {sorted(batch)})")
        value = batch[key]
        tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value, device=self.device)
        return tensor.transpose(0, 1)

    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One gradient step on a replay batch of ``(B, T, ...)`` arrays."""
        obs = prepare_observation(self._time_major(batch, self.obs_key), self.config.bit_depth, self.device)
        actions = self._time_major(batch, "action").float()
        rewards = self._time_major(batch, "reward").float()
        is_first = self._time_major(batch, "is_first").float()
        self.rssm.train()
        loss, metrics = planet_loss(self.rssm, obs, actions, rewards, is_first,
                                    beta=self.config.kl_beta, free_nats=self.config.free_nats)
        if not math.isfinite(metrics["loss"]):
            # Skip the step (the weights stay finite); give up after a run of bad batches.
            self.nonfinite_updates += 1
            if self.nonfinite_updates > self.max_nonfinite_updates:
                raise FloatingPointError(
                    f"PlaNet loss was not finite for {self.nonfinite_updates} updates in a row: {metrics}"
                )
            return {**metrics, "nonfinite_updates": float(self.nonfinite_updates)}
        self.nonfinite_updates = 0
        metrics.update(optimizer_step(self.rssm, self.optimizer, loss, self.config.grad_clip_norm))
        self.updates += 1
        metrics["updates"] = float(self.updates)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"rssm": self.rssm.state_dict(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = {"rssm", "optimizer", "updates"} - set(state)
        if missing:
            raise ValueError(f"PlanetAgent.load_state_dict: missing {sorted(missing)}")
        self.rssm.load_state_dict(state["rssm"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
