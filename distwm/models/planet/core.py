"""PlanetCore: PlaNet as an :class:`distwm.agent.Agent`, what the Ray runtime and
:class:`~distwm.models.planet.trainer.Planet` both drive.

Acting filters each env's observation into the RSSM's latent state and plans the next action
with CEM (all envs of a worker in one batch); learning takes the replay sample its
:meth:`~PlanetCore.data_spec` declares (``"sequences"``, ``(B, T, ...)``) and takes one step on
the PlaNet bound (:func:`distwm.models.planet.losses.train_step`).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch

from distwm.agent import DEFAULT_SAMPLE, DataSpec, NonFiniteLossError
from distwm.controller.rssm_policy import RSSMPolicy
from distwm.models.planet.checkpoint import CheckpointMixin
from distwm.models.planet.env import action_space_info, planet_observation_key, resolve_device
from distwm.models.planet.losses import prepare_observation, time_major_batch, train_step
from distwm.models.planet.networks import RecurrentStateSpaceModel

__all__ = ["PlanetCore"]

log = logging.getLogger(__name__)


class PlanetCore(CheckpointMixin):
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

    ``kl_beta`` (from the config) and ``record_grads`` (False) are attributes a caller may set
    for the following updates. An update whose loss or gradient is not finite is skipped and
    counted; ``config.max_nonfinite_updates`` (default 10) in a row raise
    :class:`~distwm.agent.NonFiniteLossError`.
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
        self.kl_beta = float(config.kl_beta)
        self.record_grads = False
        self.max_nonfinite_updates = int(getattr(config, "max_nonfinite_updates", 10))
        self.updates = 0
        self.nonfinite_updates = 0  # skipped updates in all
        self._nonfinite_streak = 0  # skipped updates in a row

    @classmethod
    def from_config(cls, config, observation_space, action_space, device: Any = "cpu") -> "PlanetCore":
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
            raise ValueError(f"PlanetCore.act: observation has no {self.obs_key!r} (keys: {sorted(obs)})")
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
    def report(self, batch: Mapping[str, Any], context: int = 5) -> dict[str, Any]:
        """Open-loop predictions beside the real frames (see :mod:`distwm.models.planet.report`)."""
        from distwm.models.planet.report import open_loop_report

        return open_loop_report(self, batch, context)

    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        """One gradient step on ``{"sequences": batch}``, ``batch`` a dict of ``(B, T, ...)``
        arrays (optional ``mask``: 0 on padded steps). Returns the loss terms, ``grad_norm``,
        ``skipped`` (1.0 when a non-finite loss or gradient skipped the step) and ``updates``."""
        if DEFAULT_SAMPLE not in batches:
            raise ValueError(f"PlanetCore.update takes {{{DEFAULT_SAMPLE!r}: batch}} (its data_spec's one "
                             f"sample), got samples {sorted(batches)}")
        batch = time_major_batch(batches[DEFAULT_SAMPLE], self.obs_key, self.config.bit_depth, self.device)
        metrics = train_step(self.rssm, self.optimizer, batch, beta=self.kl_beta, free_nats=self.config.free_nats,
                             grad_clip=self.config.grad_clip_norm, record_grads=self.record_grads)
        if metrics["skipped"]:
            self._skip_nonfinite(metrics, batch)
        else:
            self._nonfinite_streak = 0
            self.updates += 1
        metrics.update(updates=float(self.updates), nonfinite_updates=float(self.nonfinite_updates))
        return metrics

    def _skip_nonfinite(self, metrics: Mapping[str, float], batch: Mapping[str, torch.Tensor]) -> None:
        bad = [k for k in ("obs", "actions", "rewards") if not bool(torch.isfinite(batch[k]).all())]
        what = (f"loss (non-finite {', '.join(bad)} in the batch)" if bad
                else "loss" if not np.isfinite(metrics["loss"]) else "gradient")
        self.nonfinite_updates += 1
        self._nonfinite_streak += 1
        log.warning("PlaNet update %d skipped: non-finite %s (%d skipped in all)",
                    self.updates, what, self.nonfinite_updates)
        if self._nonfinite_streak >= self.max_nonfinite_updates:
            raise NonFiniteLossError(
                f"PlaNet: {self._nonfinite_streak} consecutive updates had a non-finite {what} "
                f"(limit max_nonfinite_updates={self.max_nonfinite_updates}); last metrics {dict(metrics)}"
            )
