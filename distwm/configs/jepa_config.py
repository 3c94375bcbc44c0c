"""I-JEPA's config (the seed's ``world_models.configs.jepa_config.JEPAConfig``).

:class:`JEPAConfig` holds the seed's fields, grouped as the sections of ijepa's YAML configs
(``meta``, ``data``, ``mask``, ``optimization``, ``logging``); :meth:`JEPAConfig.to_dict`
returns that nested dict (what :func:`distwm.training.train_jepa.main` takes) and
:meth:`JEPAConfig.from_dict` reads it back (or a flat dict of field names).

Defaults are the paper's ImageNet-1K run (Assran et al. 2023, arXiv:2301.08243, and
facebookresearch/ijepa ``configs/in1k_vith14_ep300.yaml``): ViT-H/14 at 224, a predictor of
depth 12 and width 384, 4 target blocks of scale (0.15, 0.2) and aspect ratio (0.75, 1.5), one
context block of scale (0.85, 1.0) (aspect 1, the target blocks removed from it), at least 10
context patches, no view augmentation beyond a random resized crop of scale (0.3, 1.0); AdamW
with lr warmed up from 2e-4 to 1e-3 over 40 epochs then cosine-decayed to 1e-6, weight decay
cosine-scheduled 0.04 -> 0.4, the target encoder's EMA momentum rising linearly 0.996 -> 1.0;
300 epochs at 128 images per GPU (2048 on 16 GPUs). Where the paper is silent (data paths,
loader workers, logging) the seed's defaults stay.

The fields after the seed's are distwm's: the encoder's width / depth / heads when they are not
``model_name``'s (the test presets), the schedule length in updates (``total_updates``; default
``epochs`` x iterations per epoch of the data set), optional gradient clipping (the reference
has none), the in-run linear probe (``probe_*``) and the seed of the run. They go in the
``meta``, ``optimization`` and ``probe`` sections of :meth:`to_dict`.

Presets (:data:`JEPA_PRESETS`, :func:`jepa_preset`): ``vith14_in1k`` (the defaults), ``tiny``
(tests: 16x16 images, patch 4, width 32, depth 1) and ``digits`` (the CPU learning check on
scikit-learn's digits upsampled to 32x32; :func:`jepa_digits_config`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from distwm.configs.base import ConfigBase

__all__ = ["JEPAConfig", "JEPA_MODEL_NAMES", "JEPA_PRESETS", "JEPA_SECTIONS", "jepa_digits_config",
           "jepa_preset"]

#: the encoders of :mod:`distwm.models.vit` a ``model_name`` may name
JEPA_MODEL_NAMES = ("vit_tiny", "vit_small", "vit_base", "vit_large", "vit_huge", "vit_giant")

#: section of :meth:`JEPAConfig.to_dict` -> its fields, in order
JEPA_SECTIONS: dict[str, tuple[str, ...]] = {
    "meta": ("use_bfloat16", "model_name", "load_checkpoint", "read_checkpoint", "copy_data",
             "pred_depth", "pred_emb_dim", "embed_dim", "depth", "num_heads",
             "keep_freed_memory", "seed"),
    "data": ("dataset", "val_split", "use_gaussian_blur", "use_horizontal_flip",
             "use_color_distortion", "color_jitter_strength", "batch_size", "pin_mem",
             "num_workers", "root_path", "image_folder", "crop_size", "crop_scale", "download"),
    "mask": ("allow_overlap", "patch_size", "num_enc_masks", "min_keep", "enc_mask_scale",
             "num_pred_masks", "pred_mask_scale", "aspect_ratio"),
    "optimization": ("ema", "ipe_scale", "weight_decay", "final_weight_decay", "epochs", "warmup",
                     "start_lr", "lr", "final_lr", "total_updates", "max_grad_norm"),
    "logging": ("folder", "write_tag", "enable_wandb", "wandb_project", "wandb_entity",
                "enable_sweep", "sweep_config"),
    "probe": ("probe_every", "probe_size", "probe_train_fraction", "probe_penalty", "probe_folds"),
}


def _imagenet_root() -> str:
    return os.environ.get("IMAGENET_ROOT", "/data/imagenet")


def _check_range(config: "JEPAConfig", name: str, low: float, high: float, strict_low: bool) -> None:
    a, b = getattr(config, name)
    ok = (low < a if strict_low else low <= a) and a <= b <= high
    if not ok:
        bound = "<" if strict_low else "<="
        raise ValueError(f"JEPAConfig.{name} must be (min, max) with {low} {bound} min <= max <= "
                         f"{high}, got {getattr(config, name)!r}")


@dataclass
class JEPAConfig(ConfigBase):
    """Minimal configuration container for JEPA training. Converts to the nested dict
    expected by ``train_jepa.main`` (:meth:`to_dict`)."""

    # -- meta -----------------------------------------------------------------------------------
    #: the update's forward passes under bf16 autocast (``distwm.utils.precision``; a CUDA device
    #: or a CPU with native bf16 matmuls); the weights, the targets' layer norm and the loss stay
    #: float32
    use_bfloat16: bool = False
    model_name: str = "vit_huge"
    load_checkpoint: bool = False
    read_checkpoint: Optional[str] = None
    copy_data: bool = False
    pred_depth: int = 12
    pred_emb_dim: int = 384
    # -- data -----------------------------------------------------------------------------------
    #: ``imagenet``, ``cifar10``, ``imagefolder`` (class subfolders) or ``digits``
    #: (scikit-learn's digits at ``crop_size``; the CPU learning check)
    dataset: str = "imagenet"
    val_split: Optional[float] = None
    use_gaussian_blur: bool = False
    use_horizontal_flip: bool = False
    use_color_distortion: bool = False
    color_jitter_strength: float = 0.0
    #: images per worker (per GPU) and update
    batch_size: int = 128
    pin_mem: bool = True
    num_workers: int = 8
    root_path: str = field(default_factory=_imagenet_root)
    image_folder: str = "train"
    crop_size: int = 224
    crop_scale: Tuple[float, float] = (0.3, 1.0)
    download: bool = False
    # -- mask -----------------------------------------------------------------------------------
    allow_overlap: bool = False
    patch_size: int = 14
    num_enc_masks: int = 1
    min_keep: int = 10
    enc_mask_scale: Tuple[float, float] = (0.85, 1.0)
    num_pred_masks: int = 4
    pred_mask_scale: Tuple[float, float] = (0.15, 0.2)
    aspect_ratio: Tuple[float, float] = (0.75, 1.5)
    # -- optimization ---------------------------------------------------------------------------
    ema: Tuple[float, float] = (0.996, 1.0)
    ipe_scale: float = 1.0
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    epochs: int = 300
    #: warmup length in epochs
    warmup: float = 40
    start_lr: float = 0.0002
    lr: float = 0.001
    final_lr: float = 1e-06
    # -- logging --------------------------------------------------------------------------------
    folder: str = "results/jepa"
    write_tag: str = "jepa"
    enable_wandb: bool = False
    wandb_project: str = "torchwm"
    wandb_entity: str = ""
    enable_sweep: bool = False
    sweep_config: Dict[str, Any] = field(default_factory=dict)
    # -- distwm's fields ------------------------------------------------------------------------
    #: the encoder's width, depth and heads, all three or none (None: ``model_name``'s)
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    #: length of the lr / weight-decay / EMA schedules in updates (None: ``ipe_scale`` x
    #: ``epochs`` x iterations per epoch of the data set); warmup keeps its share warmup/epochs
    total_updates: Optional[int] = None
    #: clip the averaged gradient's norm to this (None: no clipping, as the reference)
    max_grad_norm: Optional[float] = None
    #: updates between two linear-probe evaluations in ``report`` (0: every report)
    probe_every: int = 1000
    #: held-out images the probe uses (the report batch the runtime hands ``report``)
    probe_size: int = 1000
    #: share of the report batch the probe is fitted on (the rest is its test split)
    probe_train_fraction: float = 0.5
    #: L2 penalty (per training row) of the probe's ridge classifier on standardised features
    #: (None: chosen by 3-fold cross-validation on the probe's training rows)
    probe_penalty: Optional[float] = None
    #: k >= 2: when the report batch carries no training rows, the probe is k-fold
    #: cross-validated over it (every image tested once, by a probe fitted on the other folds)
    #: instead of one ``probe_train_fraction`` split, and a low-shot probe is added (fitted on
    #: one fold, 1/k of the labels, tested on the others); 0: that one split
    probe_folds: int = 0
    #: the training process keeps the memory it frees (glibc; process-wide, from the first
    #: update: :func:`distwm.utils.allocator.keep_freed_memory`, as Dreamer's learner), so an
    #: update's tensors reuse pages instead of faulting fresh ones in; what is computed is unchanged
    keep_freed_memory: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.use_bfloat16, bool):
            raise ValueError(f"JEPAConfig.use_bfloat16 {self.use_bfloat16!r} is not one of "
                             f"(True, False)")
        if self.model_name not in JEPA_MODEL_NAMES:
            raise ValueError(f"JEPAConfig.model_name {self.model_name!r} is not one of "
                             f"{', '.join(JEPA_MODEL_NAMES)}")
        for name in ("pred_depth", "pred_emb_dim", "batch_size", "crop_size", "patch_size",
                     "num_enc_masks", "num_pred_masks", "epochs", "probe_size", "embed_dim",
                     "depth", "num_heads", "total_updates"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"JEPAConfig.{name} must be > 0, got {value!r}")
        for name in ("min_keep", "warmup", "start_lr", "final_lr", "weight_decay",
                     "final_weight_decay", "probe_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"JEPAConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0 or not self.ipe_scale > 0:
            raise ValueError(f"JEPAConfig.lr and ipe_scale must be > 0, got {self.lr!r} and "
                             f"{self.ipe_scale!r}")
        if self.crop_size % self.patch_size:
            raise ValueError(f"JEPAConfig: crop_size ({self.crop_size}) must be a multiple of "
                             f"patch_size ({self.patch_size})")
        sizes = (self.embed_dim, self.depth, self.num_heads)
        if any(v is None for v in sizes) and any(v is not None for v in sizes):
            raise ValueError(f"JEPAConfig: embed_dim, depth and num_heads replace model_name's sizes "
                             f"together: set all three or none, got embed_dim={self.embed_dim}, "
                             f"depth={self.depth}, num_heads={self.num_heads}")
        for width in ("embed_dim", "pred_emb_dim"):
            if self.num_heads is not None and getattr(self, width) % self.num_heads:
                raise ValueError(f"JEPAConfig: {width} ({getattr(self, width)}) must be a multiple "
                                 f"of num_heads ({self.num_heads}; the predictor has as many heads)")
        if self.probe_penalty is not None and not self.probe_penalty > 0:
            raise ValueError(f"JEPAConfig.probe_penalty must be > 0 or None, got {self.probe_penalty!r}")
        if self.probe_folds == 1 or self.probe_folds < 0:
            raise ValueError(f"JEPAConfig.probe_folds must be 0 (one split) or >= 2, got "
                             f"{self.probe_folds!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"JEPAConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")
        for name in ("crop_scale", "enc_mask_scale", "pred_mask_scale"):
            _check_range(self, name, 0.0, 1.0, strict_low=True)
        _check_range(self, "aspect_ratio", 0.0, float("inf"), strict_low=True)
        _check_range(self, "ema", 0.0, 1.0, strict_low=False)
        if not 0.0 < self.probe_train_fraction < 1.0:
            raise ValueError(f"JEPAConfig.probe_train_fraction must be in (0, 1), got "
                             f"{self.probe_train_fraction!r}")
        if self.val_split is not None and not 0.0 < self.val_split < 1.0:
            raise ValueError(f"JEPAConfig.val_split must be in (0, 1) or None, got {self.val_split!r}")

    # -- the nested dict of ijepa's configs -----------------------------------------------------
    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """``{section: {field: value}}`` (:data:`JEPA_SECTIONS`); tuples become lists."""
        flat = super().to_dict()
        return {section: {name: flat[name] for name in names}
                for section, names in JEPA_SECTIONS.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], _prefix: str = "") -> "JEPAConfig":
        """From :meth:`to_dict`'s nested dict (ijepa's YAML layout; sections may be missing or
        partial) or a flat dict of field names; unknown sections or fields raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"JEPAConfig.from_dict expects a mapping, got {type(data).__name__}")
        sections = [key for key in data if key in JEPA_SECTIONS]
        if not sections:
            return super().from_dict(data, _prefix)
        flat: dict[str, Any] = {}
        for key, section in data.items():
            if key not in JEPA_SECTIONS:
                raise ValueError(f"JEPAConfig: unknown section {key!r} (sections: "
                                 f"{', '.join(JEPA_SECTIONS)}); give either sections or fields")
            if not isinstance(section, Mapping):
                raise ValueError(f"JEPAConfig: section {key!r} must be a mapping, got {section!r}")
            for name, value in section.items():
                if name in flat:
                    raise ValueError(f"JEPAConfig: field {name!r} is given twice")
                flat[name] = value
        return super().from_dict(flat, _prefix)


_PRESETS: dict[str, dict[str, Any]] = {
    # the paper's ImageNet-1K ViT-H/14 run
    "vith14_in1k": {},
    # tests: seconds on one CPU core
    "tiny": dict(model_name="vit_tiny", embed_dim=32, depth=1, num_heads=2, pred_depth=1,
                 pred_emb_dim=16, crop_size=16, patch_size=4, min_keep=0, batch_size=8,
                 total_updates=50, epochs=1, warmup=0.1, probe_every=0,
                 dataset="digits", num_workers=0, pin_mem=False),
    # the CPU learning check on scikit-learn's digits at 32x32 (patch 4: an 8x8 grid, one patch
    # per source pixel): a 3-layer ViT of width 64 and a 2-layer predictor of width 32, the
    # paper's random-crop scale (0.3, 1.0) and masks, lr 1e-4 -> 5e-4 (warmup 5% of the run,
    # cosine to 1e-5), EMA momentum from 0.998. The paper's lr 1e-3 (set for batches of 2048;
    # these are 64) and EMA from 0.996 or 0.999, or a width of 128, drove the target features
    # towards a constant (loss ~0.01, feature spread falling) within 1,500 updates and the probe
    # to the random encoder's level; this setting kept learning for 4,000-6,000 updates. The
    # probe is 5-fold cross-validated over the held-out digits, with a low-shot probe fitted on
    # one fold (~7 labels a class)
    "digits": dict(model_name="vit_tiny", embed_dim=64, depth=3, num_heads=4, pred_depth=2,
                   pred_emb_dim=32, crop_size=32, patch_size=4, min_keep=4, batch_size=64,
                   crop_scale=(0.3, 1.0), total_updates=6000, epochs=50, warmup=2.5,
                   start_lr=1e-4, lr=5e-4, final_lr=1e-5, ema=(0.998, 1.0), probe_every=500,
                   probe_folds=5, dataset="digits", num_workers=0, pin_mem=False),
}

#: preset names of :func:`jepa_preset`
JEPA_PRESETS: tuple[str, ...] = tuple(_PRESETS)


def jepa_preset(name: str, **overrides: Any) -> JEPAConfig:
    """The named preset (:data:`JEPA_PRESETS`) with ``overrides`` (field names) applied."""
    if name not in _PRESETS:
        raise ValueError(f"unknown JEPA preset {name!r}; choose one of {', '.join(JEPA_PRESETS)}")
    return JEPAConfig().replace(**{**_PRESETS[name], **overrides})


def jepa_digits_config() -> JEPAConfig:
    """The ``digits`` preset (the registry's ``jepa-digits``: the CPU learning check)."""
    return jepa_preset("digits")
