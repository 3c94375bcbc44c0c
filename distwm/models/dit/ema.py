"""Exponential moving average of a network's weights (DiT keeps one for sampling: decay 0.9999
in the paper, updated after every optimizer step, starting from a copy of the network)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_copy", "ema_update"]


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (no gradients) to hold the average."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for every parameter (buffers are copied)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"ema_update: decay must be in [0, 1], got {decay!r}")
    ema_params, params = list(ema_model.parameters()), list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError(f"ema_update: the models differ ({len(ema_params)} vs {len(params)} "
                         "parameter tensors)")
    torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
    for ema_buffer, buffer in zip(ema_model.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
