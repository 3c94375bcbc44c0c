"""One optimisation step that is correct under data parallelism (any family's, any trainer's).

:func:`optimizer_step`: backward, average the gradients over the ``torch.distributed`` group
(:func:`distwm.utils.distributed.reduce_gradients`: a no-op without a group; Ray Train's
``TorchTrainer`` and the RL learner group both set one up) *before* clipping, so clipping acts
on the averaged gradient as it would on one big batch; then clip and step. A non-finite
gradient skips the step. :func:`apply_step` also skips a non-finite loss, joining the
all-reduce with NaN gradients so that every rank skips the same step (no rank waits alone).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from distwm.utils import distributed

__all__ = ["apply_step", "optimizer_params", "optimizer_step"]


def optimizer_params(optimizer) -> list:
    return [p for group in optimizer.param_groups for p in group["params"]]


def optimizer_step(model, optimizer, loss, grad_clip: float | None, record_grads: bool = False) -> dict[str, float]:
    """Backward, average the gradients over the learner group (no-op without one), clip the
    global gradient norm, step. Returns ``grad_norm`` (and per-module norms
    ``grad_norm/<child>`` with ``record_grads``) and ``skipped``: 1.0 when the gradient was not
    finite, in which case the gradients are dropped and the optimiser does not step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = optimizer_params(optimizer)
    distributed.reduce_gradients(params)
    metrics: dict[str, float] = {}
    if record_grads:
        for name, child in model.named_children():
            grads = [p.grad.norm() for p in child.parameters() if p.grad is not None]
            if grads:
                metrics[f"grad_norm/{name}"] = float(torch.stack(grads).norm())
    max_norm = float("inf") if grad_clip is None else grad_clip
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    if math.isfinite(metrics["grad_norm"]):
        optimizer.step()
        metrics["skipped"] = 0.0
    else:
        optimizer.zero_grad(set_to_none=True)
        metrics["skipped"] = 1.0
    return metrics


def apply_step(model, optimizer, loss, metrics: Mapping[str, float], grad_clip: float | None,
               record_grads: bool = False) -> dict[str, float]:
    """:func:`optimizer_step` on ``loss`` unless ``metrics["loss"]`` is not finite (then nothing
    changes); returns ``metrics`` with ``grad_norm`` and ``skipped`` (1.0: the loss or the
    gradient was not finite and the step was skipped). With a learner group, a non-finite loss
    joins the step's all-reduce with NaN gradients (every rank skips this step)."""
    if not math.isfinite(metrics["loss"]):
        distributed.join_skipped(optimizer_params(optimizer))
        optimizer.zero_grad(set_to_none=True)
        return {**metrics, "grad_norm": float("nan"), "skipped": 1.0}
    return {**metrics, **optimizer_step(model, optimizer, loss, grad_clip, record_grads=record_grads)}
