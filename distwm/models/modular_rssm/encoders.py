"""The modular RSSM's observation encoders: conv (the shared conv stack), MLP and ViT."""

from __future__ import annotations

import math
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from distwm.blocks.layers import activation_module, build_mlp
from distwm.blocks.mhsa import TransformerBlock
from distwm.models.modular_rssm.base import EncoderBase, _image_shape, _positive_int
from distwm.models.vit import Block, PatchEmbed, get_2d_sincos_pos_embed
from distwm.vision.conv import ConvStack, apply_to_images

__all__ = ["ConvEncoder", "MLPEncoder", "ViTEncoder", "TransformerBlock"]


class ConvEncoder(EncoderBase):
    """Convolutional encoder from Dreamer (image observations).

    Four 4x4 stride-2 convolutions with ``depth x (1, 2, 4, 8)`` channels (the shared
    :class:`~distwm.vision.conv.ConvStack`), then a linear layer to ``embed_size``. Inputs
    ``(..., C, H, W)`` in ``[-0.5, 0.5]``; H and W at least 47.
    """

    def __init__(self, input_shape: Tuple[int, int, int], embed_size: int, activation: str = "elu", depth: int = 32):
        super().__init__()
        self.input_shape = _image_shape("ConvEncoder", input_shape)
        self.embed_size = _positive_int("ConvEncoder", "embed_size", embed_size)
        _positive_int("ConvEncoder", "depth", depth)
        self.convs = ConvStack(self.input_shape[0], depth, 4, activation)
        channels, height, width = self.convs.output_shape(*self.input_shape[1:])
        if height < 1 or width < 1:
            raise ValueError(
                f"ConvEncoder: input {self.input_shape} is too small for four stride-2 convolutions "
                "(H and W must be at least 47)"
            )
        self.fc = nn.Linear(channels * height * width, embed_size)

    def _embed(self, images: Tensor) -> Tensor:
        return self.fc(self.convs(images).flatten(1))

    def forward(self, obs: Tensor) -> Tensor:
        if tuple(obs.shape[-3:]) != self.input_shape:
            raise ValueError(f"ConvEncoder expects (..., {self.input_shape}), got {tuple(obs.shape)}")
        return apply_to_images(self._embed, obs, 3, (self.embed_size,))


class MLPEncoder(EncoderBase):
    """MLP encoder for state-based observations.

    With ``input_shape`` (say an image ``(C, H, W)`` whose size is ``input_dim``) the trailing
    axes of that shape are flattened first.
    """

    def __init__(
        self,
        input_dim: int,
        embed_size: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "elu",
        input_shape: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        self.input_dim = _positive_int("MLPEncoder", "input_dim", input_dim)
        self.embed_size = _positive_int("MLPEncoder", "embed_size", embed_size)
        self.input_shape = tuple(input_shape) if input_shape is not None else (input_dim,)
        if math.prod(self.input_shape) != input_dim:
            raise ValueError(f"MLPEncoder: input_shape {self.input_shape} does not hold {input_dim} values")
        self.net = build_mlp(input_dim, list(hidden_sizes), embed_size, activation)

    def forward(self, obs: Tensor) -> Tensor:
        n = len(self.input_shape)
        if tuple(obs.shape[obs.dim() - n:]) != self.input_shape:
            raise ValueError(f"MLPEncoder expects (..., {self.input_shape}), got {tuple(obs.shape)}")
        lead = obs.shape[: obs.dim() - n]
        return self.net(obs.reshape(*lead, self.input_dim).float())


class ViTEncoder(EncoderBase):
    """Vision Transformer encoder for image observations (the layers of :mod:`distwm.models.vit`).

    Non-overlapping ``patch_size`` patches are embedded (:class:`~distwm.models.vit.PatchEmbed`),
    a class token and position embeddings are added (learned, initialised to the 2-D sin-cos
    table of the patch grid; the class token's position starts at 0), ``depth``
    :class:`~distwm.models.vit.Block` layers run (``activation`` in their MLPs), and the
    normalised class token is the embedding (width ``embed_size``).
    """

    def __init__(
        self,
        input_shape: Tuple[int, int, int],
        embed_size: int,
        patch_size: int = 8,
        depth: int = 6,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
    ):
        super().__init__()
        self.input_shape = _image_shape("ViTEncoder", input_shape)
        self.embed_size = _positive_int("ViTEncoder", "embed_size", embed_size)
        _positive_int("ViTEncoder", "patch_size", patch_size)
        _positive_int("ViTEncoder", "depth", depth)
        channels, height, width = self.input_shape
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"ViTEncoder: image size {height}x{width} is not divisible by patch_size {patch_size}"
            )
        if embed_size % num_heads:
            raise ValueError(
                f"ViTEncoder: embed_size ({embed_size}) must be divisible by num_heads ({num_heads})"
            )
        self.patch_embed = PatchEmbed((height, width), patch_size, channels, embed_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_size))
        table_width = -(-embed_size // 4) * 4  # the 2-D table needs a multiple of 4 channels
        table = get_2d_sincos_pos_embed(table_width, self.patch_embed.grid_size, cls_token=True)
        self.pos_embed = nn.Parameter(torch.from_numpy(table[:, :embed_size]).float().unsqueeze(0))
        act_layer = partial(activation_module, activation)
        self.blocks = nn.ModuleList(
            Block(embed_size, num_heads, mlp_ratio, qkv_bias=True, act_layer=act_layer) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_size)

    def forward(self, obs: Tensor) -> Tensor:
        if tuple(obs.shape[-3:]) != self.input_shape:
            raise ValueError(f"ViTEncoder expects (..., {self.input_shape}), got {tuple(obs.shape)}")
        return apply_to_images(self._embed, obs, 3, (self.embed_size,))

    def _embed(self, images: Tensor) -> Tensor:
        tokens = self.patch_embed(images)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens[:, 0])
