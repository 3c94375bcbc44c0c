"""Building a :class:`~distwm.models.dit.network.DiT` from a
:class:`~distwm.configs.dit_config.DiTConfig` (``create_model("dit")`` calls
:func:`create_dit`)."""

from __future__ import annotations

from typing import Any, Optional

from distwm.configs.dit_config import DiTConfig, get_dit_config
from distwm.models.dit.network import DiT

__all__ = ["create_dit", "dit_from_config", "dit_kwargs"]


def dit_kwargs(config: DiTConfig, num_classes: Optional[int] = None) -> dict[str, Any]:
    """The :class:`DiT` constructor's arguments for ``config``; ``num_classes`` (default the
    config's; None there means unconditional here) decides the class conditioning."""
    if not isinstance(config, DiTConfig):
        raise ValueError(f"a DiT is built from a DiTConfig, got {type(config).__name__}")
    classes = config.num_classes if num_classes is None else num_classes
    return dict(img_size=config.IMG_SIZE, patch_size=config.PATCH, in_channels=config.CHANNELS,
                d_model=config.WIDTH, depth=config.DEPTH, heads=config.HEADS, drop=config.DROP,
                t_dim=config.t_dim, num_classes=int(classes or 0),
                class_dropout_prob=config.class_dropout_prob, learn_sigma=config.learn_sigma,
                mlp_ratio=config.mlp_ratio, autocast=config.autocast)


def dit_from_config(config: Optional[DiTConfig] = None, num_classes: Optional[int] = None) -> DiT:
    """A :class:`DiT` for ``config`` (default :class:`DiTConfig`)."""
    return DiT(**dit_kwargs(config or DiTConfig(), num_classes))


def create_dit(config: Optional[DiTConfig] = None, **overrides: Any) -> DiT:
    """A :class:`DiT` from ``config`` with config-field ``overrides`` (as
    :func:`~distwm.configs.dit_config.get_dit_config`: ``model_size="B"`` fills in the depth,
    width and heads)."""
    base = config if config is not None else get_dit_config()
    if not isinstance(base, DiTConfig):
        raise ValueError(f"create_dit takes a DiTConfig, got {type(base).__name__}")
    return dit_from_config(base.replace(**overrides) if overrides else base)
