"""Building :class:`~distwm.models.genie.genie.Genie`: the seed's factories and from a config.

:func:`genie_kwargs` maps a :class:`~distwm.configs.genie_config.GenieConfig` onto the
constructor (the two name several fields differently: ``tokenizer_encoder_depth`` is
``encoder_depth``, ``action_encoder_depth`` is ``latent_action_depth``); every path that builds
Genie from a config goes through it, so no config field falls back to a constructor default.
"""

from __future__ import annotations

from typing import Any, Literal

from distwm.configs.genie_config import GenieConfig
from distwm.models.genie.genie import Genie

__all__ = ["create_genie", "create_genie_large", "create_genie_small", "genie_from_config",
           "genie_kwargs"]

Pooling = Literal["mean", "windowed_attention"]


def genie_kwargs(config: GenieConfig) -> dict[str, Any]:
    """:class:`Genie` keyword arguments for ``config``."""
    c = config
    return dict(
        num_frames=c.num_frames, image_size=c.image_size, in_channels=c.in_channels,
        tokenizer_vocab_size=c.tokenizer_vocab_size, tokenizer_embedding_dim=c.tokenizer_embedding_dim,
        tokenizer_encoder_dim=c.tokenizer_encoder_dim, tokenizer_decoder_dim=c.tokenizer_decoder_dim,
        action_vocab_size=c.action_vocab_size, action_embedding_dim=c.action_embedding_dim,
        action_encoder_dim=c.action_encoder_dim,
        action_decoder_dim=c.action_decoder_dim or c.action_encoder_dim,
        dynamics_dim=c.dynamics_dim, dynamics_depth=c.dynamics_depth,
        dynamics_num_heads=c.dynamics_num_heads, encoder_depth=c.tokenizer_encoder_depth,
        decoder_depth=c.tokenizer_decoder_depth, latent_action_depth=c.action_encoder_depth,
        use_bfloat16=c.use_bfloat16, action_pooling=c.action_pooling,
        window_attention_heads=c.window_attention_heads, tokenizer_num_heads=c.tokenizer_num_heads,
        action_num_heads=c.action_num_heads, tokenizer_patch_size=c.tokenizer_patch_size,
        action_patch_size=c.action_patch_size, action_decoder_depth=c.action_decoder_depth,
        tokenizer_commitment_weight=c.tokenizer_commitment_weight,
        action_commitment_weight=c.action_commitment_weight,
        action_variance_weight=c.action_variance_weight, maskgit_steps=c.maskgit_steps,
        sample_temperature=c.sample_temperature, autocast=c.autocast)


def genie_from_config(config: GenieConfig | None = None, **overrides: Any) -> Genie:
    """``create_model("genie")``: :class:`Genie` from ``config`` (default :class:`GenieConfig`);
    ``overrides`` are constructor arguments."""
    config = GenieConfig() if config is None else config
    if not isinstance(config, GenieConfig):
        raise ValueError(f"genie_from_config needs a GenieConfig, got {type(config).__name__}")
    return Genie(**{**genie_kwargs(config), **overrides})


def create_genie(num_frames: int = 16, image_size: int = 64, in_channels: int = 3,
                 tokenizer_vocab_size: int = 1024, tokenizer_embedding_dim: int = 32,
                 action_vocab_size: int = 8, action_embedding_dim: int = 32,
                 dynamics_dim: int = 5120, dynamics_depth: int = 48, dynamics_num_heads: int = 40,
                 use_bfloat16: bool = False, action_pooling: Pooling = "mean",
                 window_attention_heads: int = 1) -> Genie:
    """A :class:`Genie` (the paper's sizes by default; 40 dynamics heads, see :mod:`.genie`)."""
    return Genie(num_frames=num_frames, image_size=image_size, in_channels=in_channels,
                 tokenizer_vocab_size=tokenizer_vocab_size,
                 tokenizer_embedding_dim=tokenizer_embedding_dim,
                 action_vocab_size=action_vocab_size, action_embedding_dim=action_embedding_dim,
                 dynamics_dim=dynamics_dim, dynamics_depth=dynamics_depth,
                 dynamics_num_heads=dynamics_num_heads, use_bfloat16=use_bfloat16,
                 action_pooling=action_pooling, window_attention_heads=window_attention_heads)


def create_genie_small(num_frames: int = 16, image_size: int = 64, use_bfloat16: bool = False,
                       action_pooling: Pooling = "mean", window_attention_heads: int = 1) -> Genie:
    """A small Genie for development (the seed's :class:`GenieSmallConfig` sizes)."""
    from distwm.configs.genie_config import GenieSmallConfig

    config = GenieSmallConfig(num_frames=num_frames, image_size=image_size,
                              use_bfloat16=use_bfloat16, action_pooling=action_pooling,
                              window_attention_heads=window_attention_heads)
    return genie_from_config(config)


def create_genie_large(num_frames: int = 16, image_size: int = 64, use_bfloat16: bool = True,
                       action_pooling: Pooling = "mean", window_attention_heads: int = 1) -> Genie:
    """The paper's 11B Genie (approximately): 10.1B dynamics model, 200M tokenizer, 300M LAM."""
    return Genie(num_frames=num_frames, image_size=image_size, tokenizer_encoder_dim=512,
                 tokenizer_decoder_dim=1024, encoder_depth=12, decoder_depth=20,
                 action_encoder_dim=1024, action_decoder_dim=1024, latent_action_depth=20,
                 dynamics_dim=5120, dynamics_depth=48, dynamics_num_heads=40,
                 use_bfloat16=use_bfloat16, action_pooling=action_pooling,
                 window_attention_heads=window_attention_heads)
