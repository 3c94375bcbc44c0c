"""LaProp with adaptive gradient clipping and a linear learning-rate warmup (torch only).

This is the optimiser of the current dreamerv3 code (2024): per parameter tensor ``p`` with
gradient ``g``, at the ``k``-th step (``k = 1, 2, ...``):

1. adaptive gradient clipping (AGC): ``g <- g / max(1, |g| / (agc * max(pmin, |p|)))`` with
   ``|.|`` the L2 norm of the whole tensor (``agc = 0``: off);
2. RMS scaling (the second moment of the *clipped gradient*, bias-corrected):
   ``nu <- b2 nu + (1 - b2) g^2``, ``u = g / (sqrt(nu / (1 - b2^k)) + eps)``;
3. momentum of the *scaled* update, bias-corrected (LaProp's order: Adam keeps the momentum of
   the raw gradient and divides afterwards): ``mu <- b1 mu + (1 - b1) u``,
   ``m = mu / (1 - b1^k)``;
4. ``p <- p - lr_k m`` (``- lr_k wd p`` with ``weight_decay``) with the warmup
   ``lr_k = lr * min(1, (k - 1) / warmup)`` (``warmup = 0``: ``lr``). As in optax's
   ``linear_schedule(0, lr, warmup)``, which counts steps from 0, the first step has learning
   rate 0: it only initialises the moments.

Everything is elementwise or per tensor, so one optimiser over several modules equals one
optimiser per module with the same settings stepped together.

:class:`ClippedAdam` is Adam with the same clipping and warmup (for ablations), and
:func:`make_optimizer` picks one of the three (plain ``torch.optim.Adam`` without clipping
and warmup, on the fused kernel as below, so that its state stays the one of earlier
checkpoints).

:func:`fused_adamw` is ``torch.optim.AdamW`` with PyTorch's fused kernel where it has one (CPU
and CUDA, floating-point parameters): the same update, one kernel for all tensors instead of
about ten elementwise operations per tensor (at the dataset-trained families' sizes those
per-call costs are a fifth of an update on one CPU core); the optimizer state and its
checkpoints are those of the unfused AdamW. :func:`keep_fused_on_load` keeps the kernel
choice when a state saved by either form is loaded (``load_state_dict`` would take it from
the saved groups).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

__all__ = ["ClippedAdam", "LaProp", "OPTIMIZERS", "agc_clip_", "fused_adamw", "fused_supported",
           "keep_fused_on_load", "make_optimizer", "warmup_factor"]

#: the kinds :func:`make_optimizer` builds
OPTIMIZERS = ("adam", "laprop")


def warmup_factor(step: int, warmup: int) -> float:
    """The learning-rate factor of the ``step``-th update (``step >= 1``): ``min(1, (step - 1)
    / warmup)``, or 1 without warmup."""
    if warmup <= 0:
        return 1.0
    return min(1.0, (step - 1) / warmup)


def fused_supported(params: Iterable) -> bool:
    """Whether PyTorch's fused AdamW takes ``params`` (floating point, on CPU or CUDA)."""
    params = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                for p in params)


def keep_fused_on_load(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``optimizer.load_state_dict`` keep this optimizer's ``fused`` choice per group
    (the state of a fused and an unfused AdamW is the same); returns ``optimizer``."""
    def hook(opt, state_dict):
        groups = [{**saved, "fused": group.get("fused")}
                  for saved, group in zip(state_dict["param_groups"], opt.param_groups)]
        return {**state_dict, "param_groups": groups}

    optimizer.register_load_state_dict_pre_hook(hook)
    return optimizer


def _fused(optimizer_cls: type, params: Iterable, **kwargs) -> torch.optim.Optimizer:
    """``optimizer_cls(params, **kwargs)`` (Adam or AdamW) on the fused kernel where
    :func:`fused_supported`, keeping it on load."""
    params = list(params)
    return keep_fused_on_load(optimizer_cls(params, fused=fused_supported(params) or None, **kwargs))


def fused_adamw(params: Iterable, **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **kwargs)`` on the fused kernel where
    :func:`fused_supported` (module docstring), keeping it on load."""
    return _fused(torch.optim.AdamW, params, **kwargs)


@torch.no_grad()
def agc_clip_(grad: Tensor, param: Tensor, clip: float, pmin: float = 1e-3) -> Tensor:
    """Scale ``grad`` in place so that ``|grad| <= clip * max(pmin, |param|)`` (L2 norms of the
    whole tensors); returns ``grad``."""
    upper = clip * torch.clamp(torch.linalg.vector_norm(param), min=pmin)
    norm = torch.linalg.vector_norm(grad)
    return grad.mul_(1.0 / torch.clamp(norm / upper, min=1.0))


class LaProp(torch.optim.Optimizer):
    """LaProp with AGC and warmup (see the module docstring for the exact step).

    Args:
        params: parameters or parameter groups.
        lr: learning rate after the warmup.
        betas: ``(b1, b2)``: momentum and second-moment decay.
        eps: added to the RMS (dreamerv3: 1e-20).
        agc: adaptive clipping factor (0: no clipping).
        agc_pmin: floor of the parameter norm in the clipping bound.
        warmup: steps of the linear warmup from 0 (0: none).
        weight_decay: decoupled weight decay (scaled by the learning rate).
    """

    def __init__(self, params: Iterable, lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-20, agc: float = 0.3, agc_pmin: float = 1e-3, warmup: int = 0,
                 weight_decay: float = 0.0):
        if not lr >= 0.0:
            raise ValueError(f"LaProp lr must be >= 0, got {lr!r}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"LaProp betas must be in [0, 1), got {betas!r}")
        if not eps >= 0.0 or not agc >= 0.0 or not agc_pmin > 0.0 or weight_decay < 0.0:
            raise ValueError(f"LaProp needs eps >= 0, agc >= 0, agc_pmin > 0, weight_decay >= 0; got "
                             f"{eps!r}, {agc!r}, {agc_pmin!r}, {weight_decay!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"LaProp warmup must be an integer >= 0, got {warmup!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, agc=agc, agc_pmin=agc_pmin,
                        warmup=warmup, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("LaProp does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["rms"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                k = int(state["step"].item())
                if group["agc"] > 0:
                    grad = agc_clip_(grad.clone(), p, group["agc"], group["agc_pmin"])
                rms, mom = state["rms"], state["momentum"]
                rms.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
                denom = (rms / (1.0 - b2 ** k)).sqrt_().add_(group["eps"])
                mom.mul_(b1).add_(grad / denom, alpha=1.0 - b1)
                lr = group["lr"] * warmup_factor(k, group["warmup"])
                if lr == 0.0:
                    continue
                if group["weight_decay"] > 0:
                    p.mul_(1.0 - lr * group["weight_decay"])
                p.add_(mom, alpha=-lr / (1.0 - b1 ** k))
        return loss


class ClippedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` with :class:`LaProp`'s adaptive gradient clipping (before the moments)
    and linear warmup (``lr * min(1, (k - 1) / warmup)`` at the ``k``-th step)."""

    def __init__(self, params: Iterable, lr: float = 1e-4, eps: float = 1e-8, agc: float = 0.0,
                 agc_pmin: float = 1e-3, warmup: int = 0, **kwargs):
        super().__init__(params, lr=lr, eps=eps, **kwargs)
        for group in self.param_groups:
            group.update(agc=agc, agc_pmin=agc_pmin, warmup=warmup, base_lr=lr, updates=0)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["updates"] += 1
            group["lr"] = group["base_lr"] * warmup_factor(group["updates"], group["warmup"])
            if group["agc"] > 0:
                for p in group["params"]:
                    if p.grad is not None:
                        agc_clip_(p.grad, p, group["agc"], group["agc_pmin"])
        return super().step(closure)


def make_optimizer(kind: str, params: Iterable, lr: float, eps: float, agc: float = 0.0,
                   warmup: int = 0) -> torch.optim.Optimizer:
    """``laprop``: :class:`LaProp`; ``adam``: ``torch.optim.Adam``, or :class:`ClippedAdam` with
    ``agc`` or ``warmup``."""
    if kind == "laprop":
        return LaProp(params, lr=lr, eps=eps, agc=agc, warmup=warmup)
    if kind != "adam":
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {kind!r}")
    if agc > 0 or warmup > 0:
        return ClippedAdam(params, lr=lr, eps=eps, agc=agc, warmup=warmup)
    return _fused(torch.optim.Adam, params, lr=lr, eps=eps)  # the same update, one kernel
