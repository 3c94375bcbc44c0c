"""The I-JEPA update (Assran et al. 2023, arXiv:2301.08243; facebookresearch/ijepa
``src/train.py``).

:class:`IJEPA` holds the three networks: the context encoder (a ViT that sees only the context
block's patches), the narrow predictor (fed the context tokens plus one mask token per target
patch, with the target positions) and the target encoder, an EMA copy of the context encoder
that gets no gradient. Targets are the target encoder's features of the full image, layer-normed
over the feature dimension (``F.layer_norm``, no affine), at the target blocks' patches; the
loss is ``F.smooth_l1_loss`` between predictions and targets, averaged over blocks, patches and
features (the reference code's loss; the paper writes an L2 distance).

:class:`JEPALearner` is one replica's optimisation: AdamW over ijepa's four parameter groups
(:func:`distwm.helpers.jepa_helper.init_opt`: biases and 1-D parameters without weight decay),
the learning rate warmed up linearly ``start_lr -> lr`` then cosine-decayed to ``final_lr``
(:class:`~distwm.utils.jepa_utils.WarmupCosineSchedule`), the weight decay cosine-scheduled
``weight_decay -> final_weight_decay`` (:class:`~distwm.utils.jepa_utils.CosineWDSchedule`),
both stepped once per update as in ijepa; the EMA momentum of update ``k`` (0-based) is
``ema[0] + k (ema[1] - ema[0]) / T`` over the schedule's ``T`` updates (ijepa's generator).
Gradients are averaged over the ``torch.distributed`` group
(:func:`distwm.utils.distributed.reduce_gradients`) after backward and before the optional
clipping and the step, so every replica applies the same step and then the same EMA update
(ijepa wraps the networks in DDP instead). ``use_bfloat16`` (ijepa's name) runs the three
networks under bf16 autocast (:mod:`distwm.utils.precision`, as ijepa's
``torch.cuda.amp.autocast(dtype=torch.bfloat16)``, on a CUDA device or a CPU with native bf16);
the targets' layer norm and the loss are float32, the weights and optimizer state too. A non-finite loss or gradient skips the step (and
its EMA update) on every rank; the schedules advance all the same, so they stay a function of
the update count. The optimizer runs on PyTorch's fused AdamW kernel (the same update) and
``keep_freed_memory`` makes the process keep the memory it frees (:mod:`distwm.utils.allocator`).

Networks: :func:`build_networks` calls :func:`~distwm.helpers.jepa_helper.init_model` for a
named ViT; with ``embed_dim`` / ``depth`` / ``num_heads`` set it builds a ViT of those sizes
(``model_name``'s MLP ratio) initialised the same way.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.configs.jepa_config import JEPAConfig
from distwm.utils import distributed
from distwm.utils.allocator import keep_freed_memory
from distwm.utils.precision import autocast, check_autocast
from distwm.utils.jepa_utils import apply_masks, repeat_interleave_batch

__all__ = ["IJEPA", "JEPALearner", "build_networks", "ema_momentum", "warmup_updates"]


def build_networks(config: JEPAConfig, device: Any = "cpu") -> tuple[nn.Module, nn.Module]:
    """``(encoder, predictor)`` for ``config`` on ``device`` (see the module docstring)."""
    from distwm.helpers.jepa_helper import init_model
    from distwm.models import vit

    c = config
    if c.embed_dim is None:
        return init_model(device, patch_size=c.patch_size, model_name=c.model_name,
                          crop_size=c.crop_size, pred_depth=c.pred_depth, pred_emb_dim=c.pred_emb_dim)
    mlp_ratio = vit.VIT_SIZES[c.model_name][3]
    encoder = vit.VisionTransformer(img_size=[c.crop_size], patch_size=c.patch_size,
                                    embed_dim=c.embed_dim, depth=c.depth, num_heads=c.num_heads,
                                    mlp_ratio=mlp_ratio, qkv_bias=True,
                                    norm_layer=partial(nn.LayerNorm, eps=1e-6))
    predictor = vit.vit_predictor(num_patches=encoder.patch_embed.num_patches,
                                  embed_dim=c.embed_dim, predictor_embed_dim=c.pred_emb_dim,
                                  depth=c.pred_depth, num_heads=c.num_heads)
    for module in (encoder, predictor):  # as init_model: re-initialise after the depth rescale
        vit.init_vit_weights(module, 0.02)
    return encoder.to(device), predictor.to(device)


def ema_momentum(update: int, total: int, ema: Sequence[float]) -> float:
    """The target encoder's EMA momentum at (0-based) ``update`` of ``total``: linear from
    ``ema[0]`` to ``ema[1]``, held at ``ema[1]`` after ``total``."""
    start, end = float(ema[0]), float(ema[1])
    return start + min(update, total) * (end - start) / max(1, total)


def warmup_updates(config: JEPAConfig, total: int) -> int:
    """The warmup's updates: ``warmup`` epochs' share of the ``total`` scheduled updates
    (``warmup / (ipe_scale * epochs) * total``; ijepa: ``warmup * iterations_per_epoch``)."""
    return int(config.warmup / (config.ipe_scale * config.epochs) * total)


class IJEPA(nn.Module):
    """Context encoder, predictor and EMA target encoder (see the module docstring)."""

    def __init__(self, encoder: nn.Module, predictor: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = copy.deepcopy(encoder)
        for p in self.target_encoder.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def targets(self, images: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor]) -> Tensor:
        """Layer-normed target-encoder features at the target blocks, ordered as the
        predictions: ``(len(masks_pred) * len(masks_enc) * B, K_pred, D)``."""
        h = self.target_encoder(images).float()  # float32 under autocast: the layer norm
        h = F.layer_norm(h, (h.size(-1),))
        h = apply_masks(h, masks_pred)
        return repeat_interleave_batch(h, len(images), repeat=len(masks_enc))

    def predictions(self, images: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor]) -> Tensor:
        """The predictor's output at the target blocks from the context blocks' encoding."""
        z = self.encoder(images, masks_enc)
        return self.predictor(z, masks_enc, masks_pred)

    def loss(self, images: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor]) -> Tensor:
        """Smooth-L1 between predictions and targets (a scalar; float32 under autocast)."""
        h = self.targets(images, masks_enc, masks_pred)
        z = self.predictions(images, masks_enc, masks_pred).to(h.dtype)
        return F.smooth_l1_loss(z, h)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """``target <- momentum * target + (1 - momentum) * encoder``, parameter by parameter
        (two multi-tensor operations)."""
        targets = list(self.target_encoder.parameters())
        torch._foreach_mul_(targets, momentum)
        torch._foreach_add_(targets, [q.detach() for q in self.encoder.parameters()],
                            alpha=1.0 - momentum)


class JEPALearner:
    """One replica's I-JEPA optimisation over ``total_updates`` scheduled updates."""

    def __init__(self, config: JEPAConfig, total_updates: int, device: Any = "cpu",
                 model: IJEPA | None = None):
        from distwm.helpers.jepa_helper import init_opt

        if isinstance(total_updates, bool) or not isinstance(total_updates, int) or total_updates < 1:
            raise ValueError(f"JEPALearner: total_updates must be a positive int, got {total_updates!r}")
        self.config = config
        self.total_updates = total_updates
        self.device = torch.device(device)
        check_autocast(self.autocast_setting, self.device.type, "JEPAConfig.use_bfloat16")
        self.model = (model or IJEPA(*build_networks(config, self.device))).to(self.device)
        # init_opt counts in epochs: one "epoch" of total_updates iterations, the warmup its share
        self.optimizer, _, self.lr_schedule, self.wd_schedule = init_opt(
            self.model.encoder, self.model.predictor, iterations_per_epoch=total_updates,
            start_lr=config.start_lr, ref_lr=config.lr,
            warmup=warmup_updates(config, total_updates) / total_updates, num_epochs=1,
            wd=config.weight_decay, final_wd=config.final_weight_decay, final_lr=config.final_lr,
            use_bfloat16=False, ipe_scale=1.0, fused=True)
        self.updates = 0
        self.nonfinite_updates = 0

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def autocast_setting(self) -> str:
        """``use_bfloat16`` as a :mod:`distwm.utils.precision` setting: ``bf16`` or ``off``."""
        return "bf16" if self.config.use_bfloat16 else "off"

    def _autocast(self):
        return autocast(self.autocast_setting, self.device.type, "JEPAConfig.use_bfloat16")

    def step(self, images: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor]) -> dict[str, float]:
        """One update on normalised ``images`` ``(B, 3, crop, crop)`` and their masks."""
        if self.config.keep_freed_memory:
            keep_freed_memory()
        lr = self.lr_schedule.step()
        wd = self.wd_schedule.step()
        momentum = ema_momentum(self.updates, self.total_updates, self.config.ema)
        self.model.train()
        images = images.to(self.device)
        masks_enc = [m.to(self.device) for m in masks_enc]
        masks_pred = [m.to(self.device) for m in masks_pred]
        with self._autocast():
            loss = self.model.loss(images, masks_enc, masks_pred).float()
        self.optimizer.zero_grad(set_to_none=True)
        finite_loss = bool(torch.isfinite(loss))
        if finite_loss:
            loss.backward()
            distributed.reduce_gradients(self.params)
        else:
            distributed.join_skipped(self.params)
        max_norm = self.config.max_grad_norm or float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm)) if finite_loss \
            else float("nan")
        ok = finite_loss and math.isfinite(grad_norm)
        if ok:
            self.optimizer.step()
            self.model.update_target(momentum)
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        self.nonfinite_updates = 0 if ok else self.nonfinite_updates + 1
        return {"loss": float(loss.detach()), "grad_norm": grad_norm, "learning_rate": lr,
                "weight_decay": wd, "ema_momentum": momentum, "skipped": 0.0 if ok else 1.0,
                "context_patches": float(masks_enc[0].shape[1]),
                "target_patches": float(masks_pred[0].shape[1])}

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        from distwm.utils.checkpoint import cpu_state

        return {"networks": cpu_state(self.model.state_dict()),
                "optimizer": self.optimizer.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict(),
                "wd_schedule": self.wd_schedule.state_dict(),
                "updates": self.updates, "nonfinite_updates": self.nonfinite_updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["networks"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.wd_schedule.load_state_dict(state["wd_schedule"])
        self.updates = int(state["updates"])
        self.nonfinite_updates = int(state.get("nonfinite_updates", 0))
