"""PlaNet's training objective and its one optimisation step.

The standard variational bound of PlaNet (arXiv:1811.04551, eq. 3) with one-step predictions:
reconstruction and reward errors under unit-variance Gaussians plus ``beta`` times the KL from
the posterior to the prior, clipped below at ``free_nats``. :func:`train_step` is the one
optimisation step: :meth:`PlanetCore.update <distwm.models.planet.core.PlanetCore.update>`
(replay batches) and the seed's :func:`distwm.training.train_planet.train` (episode
:class:`~distwm.memory.planet_memory.Memory`) both take it. A non-finite loss or gradient
skips the step (``skipped: 1.0`` in the metrics) and leaves the weights as they were.

Data-parallel (a :mod:`distwm.utils.distributed` group of learners): the step averages the
gradients over the group after backward and before clipping; a rank whose loss is not finite
joins that all-reduce with NaN gradients, so every rank skips the same steps.

Replay batches are dicts of ``(B, T, ...)`` arrays in the protocol's format (``image`` or
``state``, ``action``, ``reward``, ``is_first``, ...; optional ``mask``: 1 where a step exists,
0 for padding). The loss works on time-major tensors ``(T, B, ...)`` (:func:`time_major_batch`);
``actions[t]`` led to observation ``t`` and ``rewards[t]`` came with it; ``is_first[t]`` marks
an episode start (state reset, no reward target).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from distwm.utils.gradient_step import apply_step, optimizer_step  # re-exported (seed: planet_loss)
from distwm.utils.utils import get_mask, preprocess_img

__all__ = [
    "prepare_observation",
    "masked_mean",
    "planet_loss",
    "optimizer_step",
    "apply_step",
    "train_step",
    "time_major_batch",
    "memory_sequences",
    "memory_batch",
    "train_on_memory",
]


def prepare_observation(obs: Any, bit_depth: int, device: Any = "cpu") -> torch.Tensor:
    """uint8 images -> float in ``[-0.5, 0.5]`` with bit-depth reduction and dequantisation
    noise (:func:`~distwm.utils.utils.preprocess_img`); anything else -> float32 as is."""
    tensor = torch.as_tensor(np.asarray(obs) if not torch.is_tensor(obs) else obs, device=device)
    if tensor.dtype == torch.uint8:
        return preprocess_img(tensor.float(), bit_depth)
    return tensor.float()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (0 when nothing is)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def planet_loss(
    rssm,
    obs: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    is_first: torch.Tensor,
    mask: torch.Tensor | None = None,
    beta: float = 1.0,
    free_nats: float = 3.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PlaNet loss on a time-major batch; returns ``(loss, metrics)``."""
    is_first = is_first.to(obs.dtype)
    mask = torch.ones_like(is_first) if mask is None else mask.to(obs.dtype)
    seq = rssm.observe(rssm.encoder(obs), actions, is_first)
    recon = rssm.decode(seq.states, seq.latents)
    obs_dims = tuple(range(2, obs.dim()))
    obs_error = (recon - obs).pow(2).sum(dim=obs_dims)
    reward_error = (rssm.pred_reward(seq.states, seq.latents) - rewards).pow(2)
    # no argument validation: a non-finite input gives a non-finite loss, which the step skips
    kl = kl_divergence(
        Normal(seq.posterior_mean, seq.posterior_std, validate_args=False),
        Normal(seq.prior_mean, seq.prior_std, validate_args=False),
    ).sum(-1)
    obs_loss = masked_mean(obs_error, mask)
    reward_loss = masked_mean(reward_error, mask * (1.0 - is_first))
    kl_loss = masked_mean(kl.clamp(min=free_nats), mask)
    loss = obs_loss + reward_loss + beta * kl_loss
    metrics = {
        "loss": float(loss.detach()),
        "obs_loss": float(obs_loss.detach()),
        "reward_loss": float(reward_loss.detach()),
        "kl_loss": float(kl_loss.detach()),
        "kl": float(masked_mean(kl, mask).detach()),
    }
    return loss, metrics


def train_step(rssm, optimizer, batch: Mapping[str, torch.Tensor], *, beta: float = 1.0, free_nats: float = 3.0,
               grad_clip: float | None = 1000.0, record_grads: bool = False) -> dict[str, float]:
    """One optimisation step of the PlaNet bound on a time-major batch (``obs``, ``actions``,
    ``rewards``, ``is_first``, optional ``mask``, as :func:`time_major_batch` builds); see
    :func:`apply_step` for what it returns."""
    rssm.train()
    loss, metrics = planet_loss(rssm, batch["obs"], batch["actions"], batch["rewards"], batch["is_first"],
                                batch.get("mask"), beta=beta, free_nats=free_nats)
    return apply_step(rssm, optimizer, loss, metrics, grad_clip, record_grads)


def time_major_batch(batch: Mapping[str, Any], obs_key: str, bit_depth: int, device: Any = "cpu") -> dict[str, torch.Tensor]:
    """A replay batch of ``(B, T, ...)`` arrays as the time-major tensors :func:`planet_loss` takes."""
    def tensor(key: str) -> torch.Tensor:
        if key not in batch:
            raise ValueError(f"PlaNet batch has no {key!r} (keys: {sorted(batch)})")
        value = batch[key]
        return torch.as_tensor(value if torch.is_tensor(value) else np.asarray(value), device=device).transpose(0, 1)

    out = {"obs": prepare_observation(tensor(obs_key), bit_depth, device),
           "actions": tensor("action").float(), "rewards": tensor("reward").float(),
           "is_first": tensor("is_first").float()}
    out["mask"] = tensor("mask").float() if "mask" in batch else torch.ones_like(out["is_first"])
    return out


def memory_sequences(memory, batch_size: int, seq_len: int, obs_key: str = "obs") -> dict[str, np.ndarray]:
    """Sample ``memory`` (:class:`~distwm.memory.planet_memory.Memory`) as a replay batch of
    ``(B, seq_len + 1, ...)`` arrays: ``seq_len`` transitions, the first step marked
    ``is_first`` (zero action and reward); ``mask`` is 0 on the padding of short episodes."""
    obs, actions, rewards, terminals, lengths = memory.sample(batch_size, seq_len)
    pad = lambda x: np.concatenate([np.zeros_like(x[:, :1]), x], axis=1)  # noqa: E731
    reward = pad(rewards)
    is_first = np.zeros((batch_size, seq_len + 1), bool)
    is_first[:, 0] = True
    is_terminal = pad(terminals > 0)
    return {obs_key: obs, "action": pad(actions), "reward": reward, "is_first": is_first,
            "is_terminal": is_terminal, "is_last": is_terminal.copy(), "mask": get_mask(reward, lengths + 1)}


def memory_batch(memory, batch_size: int, seq_len: int, bit_depth: int, device: Any = "cpu") -> dict[str, torch.Tensor]:
    """:func:`memory_sequences` as time-major tensors (:func:`time_major_batch`)."""
    return time_major_batch(memory_sequences(memory, batch_size, seq_len), "obs", bit_depth, device)


def train_on_memory(
    memory,
    rssm,
    optimizer,
    device,
    N: int = 32,
    H: int = 50,
    beta: float = 1.0,
    grads: bool = False,
    *,
    bit_depth: int = 5,
    free_nats: float = 3.0,
    grad_clip: float | None = 1000.0,
) -> dict[str, float]:
    """:func:`train_step` on ``N`` sequences of ``H`` transitions sampled from ``memory``.
    Returns the loss terms (and gradient norms per module with ``grads``)."""
    return train_step(rssm, optimizer, memory_batch(memory, N, H, bit_depth, device), beta=beta,
                      free_nats=free_nats, grad_clip=grad_clip, record_grads=grads)
