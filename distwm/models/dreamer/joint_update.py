"""Dreamer's optimisers and the joint update of the current dreamerv3 code (2024).

``update_mode: sequential`` (V1-V3, in :meth:`DreamerCore.update`): the world model steps,
then the actor and critic step on imagination in the updated model. ``update_mode: joint``
(V3-2024, :func:`joint_update`): world-model, actor, critic and replayed-value losses are
computed with the same parameters and summed; one backward, one gradient average over the
learner group (one sync point: every parameter, with the return normaliser's EMA as
``extra``), then every optimiser steps. The dreamerv3 code has one optimiser over all modules;
three optimisers with the same settings (LaProp is elementwise and its clipping per tensor)
stepped together are that optimiser, and keep per-module learning rates one field away.
"""

from __future__ import annotations

import logging
import math
from typing import Iterable, Mapping

import torch
from torch import Tensor

from distwm.blocks import deferred_grads
from distwm.models.dreamer import acceleration
from distwm.models.dreamer.replay_value import replayed_value_loss
from distwm.utils import distributed
from distwm.utils.optim import make_optimizer

__all__ = ["build_optimizers", "clip_norm", "joint_update"]

_log = logging.getLogger(__name__)


def build_optimizers(cfg, world_model, behavior):
    """``(model, actor, value)`` optimisers of a resolved config (``optimizer``, learning rates,
    ``adam_epsilon`` / ``ac_epsilon``, ``agc``, ``warmup_steps``)."""
    if cfg.repval_grad and cfg.repval_loss_scale > 0 and cfg.update_mode != "joint":
        _log.warning("Dreamer: repval_grad needs update_mode=joint; with update_mode=%s the "
                     "replayed-value loss trains the critic only", cfg.update_mode)
    kw = dict(agc=cfg.agc, warmup=cfg.warmup_steps)
    return (make_optimizer(cfg.optimizer, world_model.parameters(), cfg.model_learning_rate,
                           cfg.adam_epsilon, **kw),
            make_optimizer(cfg.optimizer, behavior.actor.parameters(), cfg.actor_learning_rate,
                           cfg.ac_epsilon, **kw),
            make_optimizer(cfg.optimizer, behavior.critic.parameters(), cfg.value_learning_rate,
                           cfg.ac_epsilon, **kw))


def clip_norm(params: Iterable, max_norm: float) -> Tensor:
    """``clip_grad_norm_(params, max_norm)``; ``max_norm <= 0`` measures the norm only."""
    return torch.nn.utils.clip_grad_norm_(list(params), max_norm if max_norm > 0 else math.inf)


def joint_update(core, data: Mapping[str, Tensor]) -> dict[str, float]:
    """One joint update of ``core`` (a :class:`DreamerCore`) on a preprocessed batch (module
    docstring). Non-finite inputs, losses or gradients skip it as the sequential update does;
    with a learner group a rank that skips before the sync point joins it (``join_skipped``)."""
    cfg = core.args
    world_model, behavior = core.world_model, core.behavior
    groups = ((list(world_model.parameters()), cfg.grad_clip_norm),
              (list(behavior.actor.parameters()), cfg.ac_grad_clip_norm),
              (list(behavior.critic.parameters()), cfg.ac_grad_clip_norm))
    params = [p for group, _ in groups for p in group]
    norm = behavior.return_norm
    sync = (params, [norm.low, norm.high] if cfg.return_norm else [])
    bad = [k for k, v in data.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        return core._skip_nonfinite(f"input ({', '.join(bad)} in the batch)", {}, join=sync)
    saved = ([b.clone() for b in core._return_norm_buffers()]
             if distributed.world_size() > 1 and cfg.return_norm else None)
    world_model.train()
    with deferred_grads.deferring(cfg.defer_weight_grads):
        model_loss, post, metrics = core.model_loss(data)
    if not torch.isfinite(model_loss):
        return core._skip_nonfinite("world-model loss", metrics, join=sync)
    imag = core.imagine(post, data["is_terminal"])
    if not (torch.isfinite(imag.returns).all() and torch.isfinite(imag.value).all()):
        return core._skip_nonfinite("imagined return", metrics, join=sync, restore=saved)
    actor_loss, actor_metrics = core.actor_loss(imag)
    value_loss, value_metrics = core.value_loss(imag)
    metrics.update(actor_metrics)
    metrics.update(value_metrics)
    total = model_loss + actor_loss + value_loss
    if cfg.repval_loss_scale > 0:
        repval, repval_metrics = replayed_value_loss(behavior, world_model, post, data,
                                                     imag.returns, grad=cfg.repval_grad)
        metrics.update(repval_metrics)
        total = total + cfg.repval_loss_scale * repval
    if not torch.isfinite(total):
        return core._skip_nonfinite("joint loss", metrics, join=sync, restore=saved)
    optimizers = (core.model_optimizer, core.actor_optimizer, core.value_optimizer)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    with acceleration.restore_threads():  # the observe loop's backward runs on its own
        total.backward()
    distributed.reduce_gradients(sync[0], extra=sync[1])
    model_norm, actor_norm, value_norm = (clip_norm(group, clip) for group, clip in groups)
    if not all(torch.isfinite(n) for n in (model_norm, actor_norm, value_norm)):
        return core._skip_nonfinite("joint gradient", metrics, restore=saved)
    for opt in optimizers:
        opt.step()
    core.updates += 1
    core._nonfinite_streak = 0
    behavior.update_slow_critic(core.updates)
    metrics.update(model_grad_norm=model_norm, actor_grad_norm=actor_norm,
                   value_grad_norm=value_norm, joint_loss=total.detach())
    out = {k: float(v) for k, v in metrics.items()}
    out.update(skipped=0.0, nonfinite_updates=float(core.nonfinite_updates), updates=float(core.updates))
    return out
