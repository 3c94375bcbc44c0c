"""Genie's configs (the seed's ``world_models.configs.genie_config``).

:class:`GenieConfig` (32x32 frames, 8 per clip) and :class:`GenieSmallConfig` (64x64, 16) hold
the seed's fields and defaults: widths, depths and heads of the three parts (video tokenizer,
latent action model, dynamics model), the optimizer and MaskGIT's training mask range and
sampling steps. The fields after the seed's are distwm's, with the paper's values (Bruce et al.
2024, arXiv:2402.15391): patch 4 for the tokenizer and 16 for the LAM, which part(s) to train
(``stage``), the tokenizer-first schedule of ``stage="all"``, gradient clipping and the
controllability horizon of the report (Delta_t PSNR at t = 4), and ``autocast`` (``off`` |
``bf16``: mixed precision of the updates and of play, :mod:`distwm.utils.precision`).

``stage``: ``tokenizer`` trains the video tokenizer; ``lam`` the latent action model;
``dynamics`` the dynamics model on the (frozen) tokenizer's tokens and the (frozen) LAM's
actions; ``lam_dynamics`` co-trains the LAM and the dynamics model (the paper's second phase);
``all`` trains the tokenizer for ``tokenizer_updates`` updates and then the LAM and dynamics
model together, as the paper does.

The four part configs (:class:`STTransformerConfig`, :class:`VideoTokenizerConfig`,
:class:`LatentActionModelConfig`, :class:`DynamicsModelConfig`) carry the seed's defaults for
the parts built on their own. ``GENIE_PRESETS``: ``tiny`` (tests, seconds on a CPU),
``cpu`` (the CPU learning check), ``small`` (:class:`GenieSmallConfig`) and ``base``
(:class:`GenieConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from distwm.configs.base import ConfigBase

__all__ = ["DynamicsModelConfig", "GENIE_PRESETS", "GENIE_STAGES", "GenieConfig",
           "GenieSmallConfig", "LatentActionModelConfig", "STTransformerConfig",
           "VideoTokenizerConfig", "genie_preset"]

GENIE_STAGES = ("tokenizer", "lam", "dynamics", "lam_dynamics", "all")
Stage = Literal["tokenizer", "lam", "dynamics", "lam_dynamics", "all"]


def _positive(config: ConfigBase, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ValueError(f"{type(config).__name__}.{name} must be > 0, got {value!r}")


@dataclass
class GenieConfig(ConfigBase):
    """Configuration for the Genie model and its training (the seed's defaults)."""

    num_frames: int = 8
    image_size: int = 32
    in_channels: int = 3
    tokenizer_vocab_size: int = 1024
    tokenizer_embedding_dim: int = 32
    tokenizer_encoder_dim: int = 256
    tokenizer_decoder_dim: int = 512
    tokenizer_encoder_depth: int = 4
    tokenizer_decoder_depth: int = 8
    tokenizer_num_heads: int = 8
    action_vocab_size: int = 8
    action_embedding_dim: int = 32
    action_encoder_dim: int = 256
    action_encoder_depth: int = 4
    action_num_heads: int = 8
    action_pooling: Literal["mean", "windowed_attention"] = "mean"
    window_attention_heads: int = 1
    dynamics_dim: int = 512
    dynamics_depth: int = 8
    dynamics_num_heads: int = 8
    batch_size: int = 4
    learning_rate: float = 3e-05
    weight_decay: float = 0.0001
    warmup_steps: int = 5000
    max_steps: int = 125000
    mask_prob_min: float = 0.5
    mask_prob_max: float = 1.0
    sample_temperature: float = 2.0
    maskgit_steps: int = 25
    # -- distwm's fields (the paper's values) ---------------------------------------------------
    tokenizer_patch_size: int = 4
    action_patch_size: int = 16
    #: LAM decoder width / depth (None: the encoder's)
    action_decoder_dim: Optional[int] = None
    action_decoder_depth: Optional[int] = None
    tokenizer_commitment_weight: float = 0.25
    action_commitment_weight: float = 1.0
    #: weight of the LAM's auxiliary action-variance loss (``mean_d relu(1 - std_d)`` of the
    #: continuous actions over the batch; the seed's "auxiliary variance loss to prevent action
    #: collapse", not in the paper): without it the LAM used one code on Atari (perplexity 1.0)
    action_variance_weight: float = 1.0
    stage: Stage = "all"
    #: ``stage="all"``: updates that train the tokenizer before the LAM and dynamics start
    #: (None: half of ``max_steps``)
    tokenizer_updates: Optional[int] = None
    max_grad_norm: float = 1.0
    #: the seed's switch: the whole model (weights, optimizer state) stored in bf16
    use_bfloat16: bool = False
    #: ``bf16``: the training updates and play / generation under bf16 autocast (weights and
    #: optimizer state stay float32; a CUDA device or a CPU with native bf16 matmuls). The VQ's
    #: nearest-code search, the losses and MaskGIT's softmax stay float32
    autocast: Literal["off", "bf16"] = "off"
    #: the training process keeps the memory it frees (glibc; process-wide, from the first
    #: update: :func:`distwm.utils.allocator.keep_freed_memory`, as Dreamer's learner), so an
    #: update's tensors reuse pages instead of faulting fresh ones in; what is computed is unchanged
    keep_freed_memory: bool = True
    #: the report's controllability horizon: Delta_t PSNR at t = this
    delta_psnr_t: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, ("num_frames", "image_size", "in_channels", "tokenizer_vocab_size",
                         "tokenizer_embedding_dim", "action_vocab_size", "batch_size",
                         "learning_rate", "max_steps", "maskgit_steps", "sample_temperature",
                         "tokenizer_patch_size", "action_patch_size", "delta_psnr_t"))
        for name, patch in (("tokenizer_patch_size", self.tokenizer_patch_size),
                            ("action_patch_size", self.action_patch_size)):
            if self.image_size % patch:
                raise ValueError(f"{type(self).__name__}: image_size ({self.image_size}) must be "
                                 f"a multiple of {name} ({patch})")
        if not 0.0 <= self.mask_prob_min <= self.mask_prob_max <= 1.0:
            raise ValueError(f"{type(self).__name__}: need 0 <= mask_prob_min <= mask_prob_max <= 1, "
                             f"got {self.mask_prob_min!r} and {self.mask_prob_max!r}")
        if self.num_frames < 2:
            raise ValueError(f"{type(self).__name__}.num_frames must be >= 2 (a transition), "
                             f"got {self.num_frames}")
        if self.use_bfloat16 and self.autocast != "off":
            raise ValueError(f"{type(self).__name__}: use_bfloat16=True stores the model in bf16; "
                             f"autocast={self.autocast!r} needs float32 weights (choose one)")
        if self.tokenizer_updates is not None and self.tokenizer_updates < 0:
            raise ValueError(f"{type(self).__name__}.tokenizer_updates must be >= 0, "
                             f"got {self.tokenizer_updates}")

    @property
    def tokenizer_phase_updates(self) -> int:
        """Updates of the tokenizer-only phase of ``stage="all"``."""
        return self.max_steps // 2 if self.tokenizer_updates is None else self.tokenizer_updates


@dataclass
class GenieSmallConfig(GenieConfig):
    """Small configuration for development and testing (the seed's defaults)."""

    num_frames: int = 16
    image_size: int = 64
    action_encoder_dim: int = 512
    action_encoder_depth: int = 8
    batch_size: int = 2
    learning_rate: float = 0.0001
    warmup_steps: int = 1000
    max_steps: int = 50000


@dataclass
class STTransformerConfig(ConfigBase):
    """Configuration of a space-time transformer (the seed's defaults)."""

    num_frames: int = 16
    num_patches_per_frame: int = 256
    dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0


@dataclass
class VideoTokenizerConfig(ConfigBase):
    """Configuration of the video tokenizer (the seed's defaults; the paper's patch 4, 1024
    codes of dim 32)."""

    num_frames: int = 16
    image_size: int = 64
    in_channels: int = 3
    encoder_dim: int = 512
    decoder_dim: int = 1024
    encoder_depth: int = 12
    decoder_depth: int = 20
    num_heads: int = 16
    patch_size: int = 4
    vocab_size: int = 1024
    embedding_dim: int = 32
    use_ema: bool = False
    ema_decay: float = 0.99
    commitment_weight: float = 0.25


@dataclass
class LatentActionModelConfig(ConfigBase):
    """Configuration of the latent action model (the seed's defaults; the paper's patch 16 and
    8 codes)."""

    num_frames: int = 16
    image_size: int = 64
    in_channels: int = 3
    encoder_dim: int = 1024
    encoder_depth: int = 20
    num_heads: int = 16
    patch_size: int = 16
    vocab_size: int = 8
    embedding_dim: int = 32
    commitment_weight: float = 1.0
    action_pooling: Literal["mean", "windowed_attention"] = "mean"
    window_attention_heads: int = 1


@dataclass
class DynamicsModelConfig(ConfigBase):
    """Configuration of the MaskGIT dynamics model (the seed's defaults)."""

    num_frames: int = 16
    image_size: int = 64
    vocab_size: int = 1024
    embedding_dim: int = 32
    action_vocab_size: int = 8
    dim: int = 5120
    depth: int = 48
    num_heads: int = 36
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0


#: preset name -> (config class, overrides)
_PRESETS: dict[str, tuple[type[GenieConfig], dict]] = {
    "base": (GenieConfig, {}),
    "small": (GenieSmallConfig, {}),
    # the CPU learning check: 32x32 frames, 8 per clip, narrow parts
    "cpu": (GenieConfig, dict(
        tokenizer_vocab_size=256, tokenizer_encoder_dim=128, tokenizer_decoder_dim=128,
        tokenizer_encoder_depth=2, tokenizer_decoder_depth=2, tokenizer_num_heads=4,
        action_encoder_dim=128, action_encoder_depth=2, action_num_heads=4,
        dynamics_dim=128, dynamics_depth=3, dynamics_num_heads=4, batch_size=8,
        learning_rate=3e-4, warmup_steps=100, max_steps=3000, maskgit_steps=8)),
    # tests: seconds on one CPU core
    "tiny": (GenieConfig, dict(
        num_frames=4, image_size=16, tokenizer_vocab_size=32, tokenizer_embedding_dim=8,
        tokenizer_encoder_dim=32, tokenizer_decoder_dim=32, tokenizer_encoder_depth=1,
        tokenizer_decoder_depth=1, tokenizer_num_heads=2, action_embedding_dim=8,
        action_encoder_dim=32, action_encoder_depth=1, action_num_heads=2, action_patch_size=8,
        dynamics_dim=32, dynamics_depth=1, dynamics_num_heads=2, batch_size=2,
        learning_rate=1e-3, warmup_steps=2, max_steps=20, maskgit_steps=4, delta_psnr_t=2)),
}
GENIE_PRESETS: tuple[str, ...] = tuple(_PRESETS)


def genie_preset(name: str, **overrides) -> GenieConfig:
    """The named preset (:data:`GENIE_PRESETS`) with ``overrides`` applied."""
    if name not in _PRESETS:
        raise ValueError(f"unknown Genie preset {name!r}; choose one of {', '.join(GENIE_PRESETS)}")
    cls, values = _PRESETS[name]
    return cls(**{**values, **overrides})
