"""I-JEPA's model, optimiser and checkpoint helpers (facebookresearch/ijepa ``src/helper.py``).

* :func:`init_model` builds the ViT encoder (``model_name``: ``vit_tiny`` .. ``vit_giant``) and
  its predictor (``pred_depth`` blocks of width ``pred_emb_dim``, the encoder's head count), then
  re-initialises every linear layer (truncated normal, std 0.02, zero bias) and LayerNorm, as
  ijepa's helper does: this also undoes the models' depth rescaling of the blocks' output
  weights (``fix_init_weight``), which is how ijepa's released models were trained. The paper's
  predictor depths: 6 (ViT-B), 12 (ViT-L / ViT-H), 16 (ViT-g) (:data:`PAPER_PRED_DEPTH`).
* :func:`init_opt` returns ``(optimizer, scaler, scheduler, wd_scheduler)``: AdamW over four
  parameter groups (encoder and predictor weights; their biases and 1-D parameters, flagged
  ``WD_exclude`` with weight decay 0), :class:`~distwm.utils.jepa_utils.WarmupCosineSchedule`
  (``warmup`` epochs) and :class:`~distwm.utils.jepa_utils.CosineWDSchedule`, both over
  ``ipe_scale * num_epochs * iterations_per_epoch`` iterations; ``scaler`` is a
  ``torch.amp.GradScaler`` with ``use_bfloat16`` on CUDA (as ijepa), else None.
* :func:`load_checkpoint` restores ijepa's checkpoint dict (``encoder``, ``predictor``,
  ``target_encoder``, ``opt``, ``scaler``, ``epoch``) read with ``torch.load(weights_only=True)``.
  Unlike ijepa, which logs any failure and returns epoch 0 (silently training from scratch), a
  missing, unreadable or incomplete file raises (``FileNotFoundError``,
  :class:`~distwm.utils.checkpoint.CorruptFileError`, ``ValueError``).
"""

from __future__ import annotations

import logging
import os

import torch

from distwm.models import vit
from distwm.utils.checkpoint import torch_load_safely
from distwm.utils.jepa_utils import (
    CosineWDSchedule,
    WarmupCosineSchedule,
    trunc_normal_,
)

__all__ = ["PAPER_PRED_DEPTH", "init_model", "init_opt", "load_checkpoint"]

logger = logging.getLogger(__name__)

#: I-JEPA's predictor depth per backbone (paper, Appendix A)
PAPER_PRED_DEPTH = {"vit_base": 6, "vit_large": 12, "vit_huge": 12, "vit_giant": 16}

_CHECKPOINT_KEYS = ("epoch", "encoder", "predictor", "opt")


def load_checkpoint(device, r_path, encoder, predictor, target_encoder, opt, scaler):
    """Load ``r_path`` into the modules, the optimiser and (when not None) the target encoder
    and the scaler; returns ``(encoder, predictor, target_encoder, opt, scaler, epoch)``.
    Tensors are read onto the CPU and copied into the modules wherever they live (``device`` is
    accepted for the seed's signature)."""
    path = os.fspath(r_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"I-JEPA checkpoint {path!r} does not exist")
    checkpoint = torch_load_safely(path, path, "I-JEPA checkpoint",
                                   "Restore it from a copy or train from scratch without it.")
    needed = list(_CHECKPOINT_KEYS) + (["target_encoder"] if target_encoder is not None else [])
    if scaler is not None:
        needed.append("scaler")
    missing = [key for key in needed if not isinstance(checkpoint, dict) or checkpoint.get(key) is None]
    if missing:
        raise ValueError(f"{path!r} is not a complete I-JEPA checkpoint: it lacks {missing}")
    epoch = int(checkpoint["epoch"])
    encoder.load_state_dict(checkpoint["encoder"])
    predictor.load_state_dict(checkpoint["predictor"])
    if target_encoder is not None:
        target_encoder.load_state_dict(checkpoint["target_encoder"])
    opt.load_state_dict(checkpoint["opt"])
    if scaler is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    logger.info("loaded I-JEPA checkpoint %s (epoch %d)", path, epoch)
    return encoder, predictor, target_encoder, opt, scaler, epoch


def _reinit(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.LayerNorm):
            torch.nn.init.zeros_(m.bias)
            torch.nn.init.ones_(m.weight)


def init_model(device, patch_size: int = 16, model_name: str = "vit_base", crop_size: int = 224,
               pred_depth: int = 6, pred_emb_dim: int = 384):
    """``(encoder, predictor)`` on ``device`` (see the module docstring)."""
    if model_name not in vit.VIT_SIZES:
        raise ValueError(f"init_model: model_name {model_name!r} is not one of {', '.join(vit.VIT_SIZES)}")
    encoder = getattr(vit, model_name)(img_size=[crop_size], patch_size=patch_size)
    predictor = vit.vit_predictor(num_patches=encoder.patch_embed.num_patches, embed_dim=encoder.embed_dim,
                                  predictor_embed_dim=pred_emb_dim, depth=pred_depth, num_heads=encoder.num_heads)
    _reinit(encoder)
    _reinit(predictor)
    return encoder.to(device), predictor.to(device)


def _split(module: torch.nn.Module) -> tuple[list, list]:
    """``(weights with decay, biases and 1-D parameters)`` of ``module``."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        (no_decay if "bias" in name or p.dim() == 1 else decay).append(p)
    return decay, no_decay


def init_opt(encoder, predictor, iterations_per_epoch: int, start_lr: float, ref_lr: float, warmup: float,
             num_epochs: int, wd: float = 1e-6, final_wd: float = 1e-6, final_lr: float = 0.0,
             use_bfloat16: bool = False, ipe_scale: float = 1.25, fused: bool = False):
    """``(optimizer, scaler, scheduler, wd_scheduler)`` (see the module docstring); ``fused``:
    PyTorch's fused AdamW kernel where it has one (:func:`distwm.utils.optim.fused_adamw`)."""
    if iterations_per_epoch < 1 or num_epochs < 1:
        raise ValueError(f"init_opt: iterations_per_epoch ({iterations_per_epoch}) and num_epochs "
                         f"({num_epochs}) must be >= 1")
    enc_decay, enc_no_decay = _split(encoder)
    pred_decay, pred_no_decay = _split(predictor)
    param_groups = [
        {"params": enc_decay},
        {"params": pred_decay},
        {"params": enc_no_decay, "WD_exclude": True, "weight_decay": 0},
        {"params": pred_no_decay, "WD_exclude": True, "weight_decay": 0},
    ]
    if fused:
        from distwm.utils.optim import fused_adamw

        optimizer = fused_adamw(param_groups)
    else:
        optimizer = torch.optim.AdamW(param_groups)
    total = int(ipe_scale * num_epochs * iterations_per_epoch)
    scheduler = WarmupCosineSchedule(optimizer, warmup_steps=int(warmup * iterations_per_epoch), start_lr=start_lr,
                                     ref_lr=ref_lr, final_lr=final_lr, T_max=total)
    wd_scheduler = CosineWDSchedule(optimizer, ref_wd=wd, final_wd=final_wd, T_max=total)
    on_cuda = any(p.is_cuda for p in encoder.parameters())
    scaler = torch.amp.GradScaler("cuda") if use_bfloat16 and on_cuda else None
    return optimizer, scaler, scheduler, wd_scheduler
