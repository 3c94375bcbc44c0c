"""DiT's config (the seed's ``world_models.configs.dit_config``: :class:`DiTConfig`,
:func:`get_dit_config`).

The upper-case fields are the seed's, with the seed's defaults (a 6-block, width-384 DiT with
patch 4 on 32x32 CIFAR-10, lr 2e-4, EMA 0.999); lower-case snake-case names of them are
accepted too (``batch_size`` for ``BATCH``, ``lr`` for ``LR``, ...: :attr:`DiTConfig.ALIASES`).
The lower-case fields after them are distwm's, with the values of the DiT paper (Peebles & Xie
2023, arXiv:2212.09748) and of improved-diffusion (Nichol & Dhariwal 2021), which DiT's
diffusion code is:

* the model: ``model_size`` names a row of the paper's table 1 (:data:`DIT_SIZES`: S, B, L,
  XL; ``DEPTH`` / ``WIDTH`` / ``HEADS`` must then be that row's) and with ``PATCH`` (2, 4 or 8
  in the paper) it names the model, e.g. DiT-S/2 (:attr:`DiTConfig.model_name`);
  ``num_classes`` (None: the data set's; 0: unconditional), class-label dropout
  ``class_dropout_prob`` 0.1 (to a learned null class, for classifier-free guidance),
  ``learn_sigma`` (the network also outputs the interpolation of the log variance between
  beta_t and the posterior variance: 2C output channels) and the hybrid loss
  ``L_simple + vlb_weight * L_vlb`` with lambda = 0.001 (``vlb_weight``);
* the diffusion: the seed's linear beta schedule (``BETA_START`` .. ``BETA_END`` over
  ``TIMESTEPS``: the paper's 1e-4 .. 0.02 over 1000);
* sampling: ``sample_steps`` respaced steps (improved-diffusion's ``space_timesteps``; None:
  all ``TIMESTEPS``; DiT's sample.py default 250), ``sampler`` ``ddpm`` (ancestral) or ``ddim``
  (``ddim_eta``), ``guidance_scale`` (classifier-free guidance; 1.0 is none; the paper's best
  FID, 2.27 for DiT-XL/2, is at 1.5, its sample figures use 4.0);
* the optimizer: AdamW with ``weight_decay`` 0 (the paper: lr 1e-4, no weight decay, no
  warmup, EMA decay 0.9999: the ``DiT-*`` presets), optional ``max_grad_norm`` (the reference
  clips nothing); ``autocast`` ``off`` | ``bf16`` (mixed precision of the network,
  :mod:`distwm.utils.precision`);
* the in-run evaluation of :meth:`~distwm.models.dit.trainable.DiTTrainable.report`: a grid of
  ``report_classes`` x ``report_samples_per_class`` class-conditional samples, and
  ``eval_samples`` samples judged by the small classifier trained in the run
  (``eval_classifier``, its width and learning rate): its accuracy on them and the Frechet
  distance of its features (:mod:`distwm.models.dit.evaluation`);
* ``seed``.

Presets (:data:`DIT_PRESETS`, :func:`dit_preset`): ``tiny`` (tests), ``digits`` (the CPU
learning check on scikit-learn's digits at 16x16: ``distwm train dit --data sklearn:digits:16``),
``cifar10`` (DiT-S/2 in pixel space on CIFAR-10) and the paper's models ``DiT-S/2`` ..
``DiT-XL/8`` at the paper's optimisation settings (in pixel space at ``IMG_SIZE``: the paper
trains on the 32x32x4 latents of Stable Diffusion's VAE, a downloaded network distwm does not
use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Optional

from distwm.configs.base import ConfigBase

__all__ = ["DIT_PATCH_SIZES", "DIT_PRESETS", "DIT_SIZES", "DiTConfig", "dit_preset",
           "get_dit_config"]

#: the paper's table 1: model size -> (depth, width, heads)
DIT_SIZES: dict[str, tuple[int, int, int]] = {
    "S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
#: the patch sizes of the paper's design space
DIT_PATCH_SIZES = (2, 4, 8)

ModelSize = Literal["S", "B", "L", "XL"]


@dataclass
class DiTConfig(ConfigBase):
    """Default configuration values for Diffusion Transformer (DiT) training (the seed's
    fields and defaults, then distwm's: see the module docstring)."""

    DATASET: str = "CIFAR10"
    BATCH: int = 128
    EPOCHS: int = 3
    LR: float = 0.0002
    IMG_SIZE: int = 32
    CHANNELS: int = 3
    PATCH: int = 4
    WIDTH: int = 384
    DEPTH: int = 6
    HEADS: int = 6
    DROP: float = 0.1
    BETA_START: float = 0.0001
    BETA_END: float = 0.02
    TIMESTEPS: int = 1000
    EMA: bool = True
    EMA_DECAY: float = 0.999
    WORKDIR: str = "./dit_demo"
    ROOT_PATH: str = "./data"
    # -- distwm's fields (the paper's values) ---------------------------------------------------
    #: a row of the paper's table 1 (DIT_SIZES); None: DEPTH / WIDTH / HEADS as given
    model_size: Optional[ModelSize] = None
    #: class-conditional on this many classes; None: the data set's; 0: unconditional
    num_classes: Optional[int] = None
    #: probability of replacing a label by the null class in training (classifier-free guidance)
    class_dropout_prob: float = 0.1
    #: also predict the variance (2C output channels) and train it with the VLB term
    learn_sigma: bool = True
    #: lambda of L_hybrid = L_simple + lambda L_vlb (improved-diffusion, DiT: 0.001)
    vlb_weight: float = 0.001
    mlp_ratio: float = 4.0
    #: size of the sinusoidal timestep embedding fed to the timestep MLP (the paper: 256)
    t_dim: int = 256
    weight_decay: float = 0.0
    #: clip the global gradient norm (after averaging over the workers); None: no clipping
    max_grad_norm: Optional[float] = None
    #: ``bf16``: the network's forward passes (training and sampling) under bf16 autocast, its
    #: output cast back to float32 (weights, optimizer state, the diffusion's loss terms and
    #: sampling arithmetic stay float32; a CUDA device or a CPU with native bf16 matmuls)
    autocast: Literal["off", "bf16"] = "off"
    #: sampling steps (respaced from TIMESTEPS); None: all of them
    sample_steps: Optional[int] = 250
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    ddim_eta: float = 0.0
    #: classifier-free guidance scale (1.0: none)
    guidance_scale: float = 1.5
    #: clip the predicted x_0 to [-1, 1] while sampling (pixel space)
    clip_denoised: bool = True
    #: the report's sample grid: rows (classes) and columns
    report_classes: int = 10
    report_samples_per_class: int = 8
    #: generated images the report's evaluation judges (0: no evaluation)
    eval_samples: int = 100
    #: train the evaluation classifier alongside the DiT (on the training images it sees)
    eval_classifier: bool = True
    classifier_width: int = 32
    classifier_lr: float = 0.001
    seed: int = 0

    ALIASES: ClassVar[Mapping[str, str]] = {
        "dataset": "DATASET", "batch": "BATCH", "batch_size": "BATCH", "epochs": "EPOCHS",
        "lr": "LR", "learning_rate": "LR", "img_size": "IMG_SIZE", "image_size": "IMG_SIZE",
        "channels": "CHANNELS", "in_channels": "CHANNELS", "patch": "PATCH",
        "patch_size": "PATCH", "width": "WIDTH", "depth": "DEPTH", "heads": "HEADS",
        "drop": "DROP", "beta_start": "BETA_START", "beta_end": "BETA_END",
        "timesteps": "TIMESTEPS", "ema": "EMA", "ema_decay": "EMA_DECAY", "workdir": "WORKDIR",
        "root_path": "ROOT_PATH"}

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for field in ("BATCH", "EPOCHS", "IMG_SIZE", "CHANNELS", "PATCH", "WIDTH", "DEPTH",
                      "HEADS", "TIMESTEPS", "t_dim", "report_classes", "report_samples_per_class",
                      "classifier_width", "LR", "classifier_lr", "mlp_ratio"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{name}.{field} must be > 0, got {getattr(self, field)!r}")
        if self.IMG_SIZE % self.PATCH:
            raise ValueError(f"{name}: IMG_SIZE ({self.IMG_SIZE}) must be a multiple of PATCH "
                             f"({self.PATCH})")
        if self.WIDTH % self.HEADS or self.WIDTH % 4:
            raise ValueError(f"{name}: WIDTH ({self.WIDTH}) must be a multiple of HEADS "
                             f"({self.HEADS}) and of 4 (the 2-D sin-cos position embedding)")
        if self.t_dim % 2:
            raise ValueError(f"{name}.t_dim must be even, got {self.t_dim}")
        if not 0.0 < self.BETA_START <= self.BETA_END < 1.0:
            raise ValueError(f"{name}: need 0 < BETA_START <= BETA_END < 1, got "
                             f"{self.BETA_START!r} and {self.BETA_END!r}")
        for field in ("EMA_DECAY", "class_dropout_prob", "DROP"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(f"{name}.{field} must be in [0, 1), got {getattr(self, field)!r}")
        for field in ("vlb_weight", "weight_decay", "ddim_eta", "eval_samples"):
            if getattr(self, field) < 0:
                raise ValueError(f"{name}.{field} must be >= 0, got {getattr(self, field)!r}")
        if self.guidance_scale < 0:
            raise ValueError(f"{name}.guidance_scale must be >= 0 (1.0: no guidance), got "
                             f"{self.guidance_scale!r}")
        if self.num_classes is not None and self.num_classes < 0:
            raise ValueError(f"{name}.num_classes must be >= 0 (0: unconditional) or None (the "
                             f"data set's), got {self.num_classes}")
        if self.sample_steps is not None and not 1 <= self.sample_steps <= self.TIMESTEPS:
            raise ValueError(f"{name}.sample_steps must be in 1..TIMESTEPS={self.TIMESTEPS} or "
                             f"None (all), got {self.sample_steps}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"{name}.max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")
        if self.model_size is not None:
            size = (self.DEPTH, self.WIDTH, self.HEADS)
            if size != DIT_SIZES[self.model_size]:
                depth, width, heads = DIT_SIZES[self.model_size]
                raise ValueError(
                    f"{name}.model_size {self.model_size!r} is depth {depth}, width {width}, "
                    f"heads {heads} but DEPTH, WIDTH, HEADS are {size}: give model_size alone "
                    f"to get_dit_config / dit_preset, or model_size=None for a custom size")

    @property
    def model_name(self) -> str:
        """``DiT-S/2`` style name when DEPTH / WIDTH / HEADS are a row of table 1, else
        ``DiT-custom/p``."""
        size = next((k for k, v in DIT_SIZES.items() if v == (self.DEPTH, self.WIDTH, self.HEADS)),
                    "custom")
        return f"DiT-{size}/{self.PATCH}"

    def replace(self, **overrides: Any) -> "DiTConfig":
        """A copy with ``overrides`` applied (checked like ``from_dict``); a ``model_size``
        among them fills in DEPTH / WIDTH / HEADS from :data:`DIT_SIZES` unless they are given
        too."""
        values = self.canonical_names(overrides)
        size = values.get("model_size")
        if size is not None:
            if size not in DIT_SIZES:
                raise ValueError(f"unknown DiT model_size {size!r}; choose one of "
                                 f"{', '.join(DIT_SIZES)}")
            for key, value in zip(("DEPTH", "WIDTH", "HEADS"), DIT_SIZES[size]):
                values.setdefault(key, value)
        return super().replace(**values)


def get_dit_config(**overrides: Any) -> DiTConfig:
    """A :class:`DiTConfig` with the defaults overridden by ``overrides`` (each checked like
    ``from_dict``; ``model_size`` fills in DEPTH / WIDTH / HEADS from :data:`DIT_SIZES`).

    Example: ``cfg = get_dit_config(BATCH=64, EPOCHS=10, LR=1e-3)``.
    """
    return DiTConfig().replace(**overrides)


#: the paper's optimisation settings (section 4)
_PAPER = dict(LR=1e-4, weight_decay=0.0, EMA_DECAY=0.9999, DROP=0.0, BATCH=256,
              class_dropout_prob=0.1, learn_sigma=True, sample_steps=250)

_PRESETS: dict[str, dict[str, Any]] = {
    # tests: seconds on one CPU core
    "tiny": dict(IMG_SIZE=8, CHANNELS=1, PATCH=4, WIDTH=32, DEPTH=1, HEADS=2, DROP=0.0,
                 BATCH=16, LR=1e-3, t_dim=32, TIMESTEPS=100, sample_steps=10, EMA_DECAY=0.9,
                 report_classes=4, report_samples_per_class=2, eval_samples=8,
                 classifier_width=8),
    # the CPU learning check: scikit-learn's digits at 16x16 (distwm train dit --data
    # sklearn:digits:16), a 4-block width-128 DiT with patch 4 (16 tokens). EMA decay 0.995:
    # the network starts at zero (adaLN-Zero) and an average with decay 0.999 is still biased
    # towards that start after the few thousand updates of a CPU run (at 2,000 updates its
    # samples were noise where 0.995's were digits of their class, 71% recognised)
    "digits": dict(IMG_SIZE=16, CHANNELS=1, PATCH=4, WIDTH=128, DEPTH=4, HEADS=4, DROP=0.0,
                   BATCH=64, LR=1e-3, t_dim=128, EMA_DECAY=0.995, sample_steps=25,
                   guidance_scale=2.0, report_classes=10, report_samples_per_class=8,
                   eval_samples=100, classifier_width=32),
    # DiT-S/2 in pixel space on CIFAR-10 (32x32 RGB), the paper's optimisation
    "cifar10": dict(_PAPER, model_size="S", PATCH=2, BATCH=128, num_classes=10),
}
for _size in DIT_SIZES:
    for _patch in DIT_PATCH_SIZES:
        _PRESETS[f"DiT-{_size}/{_patch}"] = dict(_PAPER, model_size=_size, PATCH=_patch)

DIT_PRESETS: tuple[str, ...] = tuple(_PRESETS)


def dit_preset(name: str, **overrides: Any) -> DiTConfig:
    """The named preset (:data:`DIT_PRESETS`: ``tiny``, ``digits``, ``cifar10``, ``DiT-S/2``
    .. ``DiT-XL/8``) with ``overrides`` applied (as :func:`get_dit_config`)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; choose one of {', '.join(DIT_PRESETS)}")
    values = dict(_PRESETS[name])
    given = DiTConfig.canonical_names(overrides)
    if "model_size" in given:  # a new size replaces the preset's depth / width / heads
        for key in ("DEPTH", "WIDTH", "HEADS"):
            values.pop(key, None)
    return get_dit_config(**{**values, **given})
