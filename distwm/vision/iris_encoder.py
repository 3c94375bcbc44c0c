"""IRIS's tokenizer encoder (Micheli et al. 2023; the VQGAN encoder of taming-transformers that
the IRIS reference code uses): frames -> a grid of discrete tokens.

The reference configuration (``IRISEncoder()``'s defaults): 64x64 RGB frames, 64 channels at
every resolution, two residual blocks per resolution, self-attention at 16x16 and 8x8, four
downsamplings to a 4x4 grid (16 tokens per frame), a 512-channel latent, a 1x1 convolution to the
512-dim code space and a 512-entry codebook. Residual blocks are GroupNorm(32) - swish - conv3x3
twice; downsampling is a stride-2 conv3x3 after padding right and bottom by one, as taming's.

The quantiser is :class:`distwm.vision.vq_layer.VectorQuantizer` with ``commitment_weight=1``:
the IRIS code weights the codebook and the commitment term equally (its ``beta = 1.0``, not the
VQ-VAE paper's 0.25).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.vision.vq_layer import VectorQuantizer

__all__ = ["IRISEncoder", "ResidualBlock", "SelfAttentionBlock", "token_grid", "resolution_levels",
           "ATTENTION_RESOLUTIONS"]

#: resolutions (side of the feature map) with self-attention, in the encoder and the decoder
ATTENTION_RESOLUTIONS = (16, 8)


def _norm(channels: int) -> nn.GroupNorm:
    if channels % 32:
        raise ValueError(f"IRIS blocks use GroupNorm(32, channels): channels must be a multiple of "
                         f"32, got {channels}")
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResidualBlock(nn.Module):
    """``x + conv(swish(norm(conv(swish(norm(x))))))`` at a constant channel count."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(channels), nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2, self.conv2 = _norm(channels), nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class SelfAttentionBlock(nn.Module):
    """Single-head self-attention over the positions of a feature map, with a residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))
        return x + self.proj(out.squeeze(1).transpose(-1, -2).reshape(b, c, h, w))


class _Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def resolution_levels(channels: int, resolutions: list[int], blocks: int,
                      resample: Callable[[int], nn.Module]) -> list[nn.Module]:
    """Per resolution ``blocks`` residual blocks (each followed by attention at
    :data:`ATTENTION_RESOLUTIONS`), and ``resample(channels)`` between resolutions: the body
    of the encoder (downsampling) and, mirrored, of the decoder (upsampling)."""
    layers: list[nn.Module] = []
    for i, resolution in enumerate(resolutions):
        for _ in range(blocks):
            layers.append(ResidualBlock(channels))
            if resolution in ATTENTION_RESOLUTIONS:
                layers.append(SelfAttentionBlock(channels))
        if i + 1 < len(resolutions):
            layers.append(resample(channels))
    return layers


def token_grid(frame_shape, tokens_per_frame: int, channels: int, channels_name: str) -> tuple[int, int]:
    """``(side, resamplings)``: the token grid's side and the number of 2x down/upsamplings
    from the frame to it; a clear ``ValueError`` when the two do not fit, or when the frame's
    channels are not ``channels`` (the ``channels_name`` argument)."""
    frame_shape = tuple(frame_shape)
    if frame_shape and frame_shape[0] != channels:
        raise ValueError(f"frame_shape {frame_shape!r} has {frame_shape[0]} channels, "
                         f"{channels_name} is {channels}")
    if len(frame_shape) != 3 or frame_shape[1] != frame_shape[2]:
        raise ValueError(f"frame_shape must be (C, H, W) with H == W, got {frame_shape!r}")
    side = math.isqrt(tokens_per_frame) if tokens_per_frame > 0 else 0
    if side * side != tokens_per_frame:
        raise ValueError(f"tokens_per_frame must be a square (a side x side grid), got {tokens_per_frame!r}")
    ratio = frame_shape[1] // side if side else 0
    if not ratio or ratio * side != frame_shape[1] or ratio & (ratio - 1):
        raise ValueError(f"a {frame_shape[1]}x{frame_shape[2]} frame cannot be halved down to a "
                         f"{side}x{side} token grid (tokens_per_frame={tokens_per_frame})")
    return side, int(math.log2(ratio))


class IRISEncoder(nn.Module):
    """Frames ``(B, C, H, W)`` in ``[-1, 1]`` -> quantised tokens (module docstring).

    ``forward`` returns ``(z_q, indices, vq_loss)``: ``z_q`` ``(B, embedding_dim, side, side)``
    (straight-through), ``indices`` ``(B, side, side)`` and the quantiser's loss dict.
    """

    def __init__(self, vocab_size: int = 512, tokens_per_frame: int = 16, embedding_dim: int = 512,
                 in_channels: int = 3, base_channels: int = 64, num_residual_blocks: int = 2,
                 frame_shape=(3, 64, 64)):
        super().__init__()
        side, downsamplings = token_grid(frame_shape, tokens_per_frame, in_channels, "in_channels")
        self.frame_shape, self.tokens_per_frame, self.side = tuple(frame_shape), tokens_per_frame, side
        self.embedding_dim = embedding_dim
        ch = base_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch, 3, padding=1)]
        layers += resolution_levels(ch, [frame_shape[1] >> i for i in range(downsamplings + 1)],
                                    num_residual_blocks, _Downsample)
        layers += [ResidualBlock(ch), SelfAttentionBlock(ch), ResidualBlock(ch),  # the middle
                   _norm(ch), nn.SiLU(), nn.Conv2d(ch, embedding_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.pre_quant_conv = nn.Conv2d(embedding_dim, embedding_dim, 1)
        self.quantizer = VectorQuantizer(vocab_size, embedding_dim, commitment_weight=1.0)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.frame_shape:
            raise ValueError(f"IRISEncoder expects frames (B, {', '.join(map(str, self.frame_shape))}), "
                             f"got shape {tuple(x.shape)}")

    def latents(self, x: Tensor) -> Tensor:
        """The continuous latents before quantisation ``(B, embedding_dim, side, side)``."""
        self._check(x)
        return self.pre_quant_conv(self.net(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Encode frames to tokens: ``(z_q, indices, vq_loss)`` (class docstring)."""
        return self.quantizer(self.latents(x))

    @torch.no_grad()
    def encode_to_indices(self, x: Tensor) -> Tensor:
        """Token indices ``(B, side, side)`` of frames ``x`` (for the world model)."""
        rows, shape = self.quantizer._flatten(self.latents(x))
        return self.quantizer.nearest(rows).reshape(shape)

    def decode_from_indices(self, indices: Tensor) -> Tensor:
        """Codebook embeddings ``(B, embedding_dim, side, side)`` of token indices ``(B, side,
        side)`` or ``(B, side * side)``."""
        if indices.dim() == 2:
            indices = indices.reshape(indices.shape[0], self.side, self.side)
        return self.quantizer.decode_indices(indices)
