"""PlaNet's training objective and one optimisation step.

The standard variational bound of PlaNet (arXiv:1811.04551, eq. 3) with one-step predictions:
reconstruction and reward errors under unit-variance Gaussians plus ``beta`` times the KL from
the posterior to the prior, clipped below at ``free_nats``. The same :func:`planet_loss` serves
the single-process loop (episode :class:`~distwm.memory.planet_memory.Memory`) and the agent
protocol's ``update`` (replay batches from the runtime).

All sequence tensors are time-major ``(T, B, ...)``; ``actions[t]`` led to observation ``t``
and ``rewards[t]`` came with it; ``is_first[t]`` marks an episode start (state reset, no reward
target); ``mask[t]`` marks steps that exist (padding is 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from distwm.utils.utils import get_mask, preprocess_img

__all__ = [
    "prepare_observation",
    "planet_loss",
    "optimizer_step",
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


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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
    kl = kl_divergence(
        Normal(seq.posterior_mean, seq.posterior_std), Normal(seq.prior_mean, seq.prior_std)
    ).sum(-1)
    obs_loss = _masked_mean(obs_error, mask)
    reward_loss = _masked_mean(reward_error, mask * (1.0 - is_first))
    kl_loss = _masked_mean(kl.clamp(min=free_nats), mask)
    loss = obs_loss + reward_loss + beta * kl_loss
    metrics = {
        "loss": float(loss.detach()),
        "obs_loss": float(obs_loss.detach()),
        "reward_loss": float(reward_loss.detach()),
        "kl_loss": float(kl_loss.detach()),
        "kl": float(_masked_mean(kl, mask).detach()),
    }
    return loss, metrics


def optimizer_step(model, optimizer, loss, grad_clip: float | None, record_grads: bool = False) -> dict[str, float]:
    """Backward, clip the global gradient norm, step. Returns ``grad_norm`` (and per-module
    norms ``grad_norm/<child>`` with ``record_grads``)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    metrics: dict[str, float] = {}
    if record_grads:
        for name, child in model.named_children():
            grads = [p.grad.norm() for p in child.parameters() if p.grad is not None]
            if grads:
                metrics[f"grad_norm/{name}"] = float(torch.stack(grads).norm())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = float("inf") if grad_clip is None else grad_clip
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    optimizer.step()
    return metrics


def memory_batch(memory, batch_size: int, seq_len: int, bit_depth: int, device: Any = "cpu") -> dict[str, torch.Tensor]:
    """Sample ``memory`` (:class:`~distwm.memory.planet_memory.Memory`) as a time-major batch
    in the replay format: ``seq_len + 1`` observations, the first marked ``is_first``."""
    obs, actions, rewards, _terminals, lengths = memory.sample(batch_size, seq_len)
    obs_t = prepare_observation(obs, bit_depth, device).transpose(0, 1)
    act = torch.as_tensor(actions, dtype=torch.float32, device=device)
    rew = torch.as_tensor(rewards, dtype=torch.float32, device=device)
    act = torch.cat([torch.zeros_like(act[:, :1]), act], dim=1).transpose(0, 1)
    rew = torch.cat([torch.zeros_like(rew[:, :1]), rew], dim=1).transpose(0, 1)
    is_first = torch.zeros(rew.shape, device=device)
    is_first[0] = 1.0
    mask = get_mask(rew.transpose(0, 1), torch.as_tensor(lengths, device=device) + 1).transpose(0, 1)
    return {"obs": obs_t, "actions": act, "rewards": rew, "is_first": is_first, "mask": mask}


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
    """One gradient step of the PlaNet bound on ``N`` sequences of ``H`` transitions sampled
    from ``memory``. Returns the loss terms (and gradient norms with ``grads``)."""
    rssm.train()
    batch = memory_batch(memory, N, H, bit_depth, device)
    loss, metrics = planet_loss(rssm, batch["obs"], batch["actions"], batch["rewards"],
                                batch["is_first"], batch["mask"], beta=beta, free_nats=free_nats)
    metrics.update(optimizer_step(rssm, optimizer, loss, grad_clip, record_grads=grads))
    return metrics

