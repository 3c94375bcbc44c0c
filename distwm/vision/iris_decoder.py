"""IRIS's tokenizer decoder and the whole discrete autoencoder (the VQGAN decoder of
taming-transformers that the IRIS reference code uses).

The decoder mirrors :class:`distwm.vision.iris_encoder.IRISEncoder`: a 1x1 convolution out of
the code space, a 3x3 convolution in, the middle (residual, attention, residual), then per
resolution from the token grid up three residual blocks (with attention at 8x8 and 16x16) and a
2x nearest-neighbour upsampling followed by a 3x3 convolution, and GroupNorm - swish - conv3x3
to the output channels. Outputs are in the encoder's input space (``[-1, 1]``), unbounded, as
the reference's.

:class:`DiscreteAutoencoder` takes frames in ``[0, 1]``, works in ``[-1, 1]`` as IRIS does, and
returns ``(reconstruction in [0, 1], indices, losses)``. Its loss is IRIS's tokenizer loss:
``vq_loss`` (codebook + commitment, equal weights) + the L1 reconstruction error in ``[-1, 1]``
+ a perceptual term when a ``perceptual(x, y)`` callable is given. LPIPS needs pretrained VGG
weights, which distwm never downloads: pass a loaded LPIPS module to use that term; without
one it is left out (``losses`` then has no ``perceptual_loss``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.vision.vq_layer import check_indices
from distwm.vision.iris_encoder import (IRISEncoder, ResidualBlock, SelfAttentionBlock, _norm,
                                        resolution_levels, token_grid)

__all__ = ["IRISDecoder", "UpsampleBlock", "ResidualBlock", "DiscreteAutoencoder"]


class UpsampleBlock(nn.Module):
    """2x nearest-neighbour upsampling, a 3x3 convolution ``in -> mid``, and a 1x1 projection
    ``mid -> out`` when they differ (``UpsampleBlock(c, c, c)`` is taming's upsampling)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.proj = nn.Conv2d(mid_channels, out_channels, 1) if mid_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))


class IRISDecoder(nn.Module):
    """Token embeddings ``(B, embedding_dim, side, side)`` -> frames ``(B, C, H, W)``.

    ``tokens_per_frame`` (beyond the seed's parameters) sets the token grid, 16 (4x4) as IRIS.
    ``decode_from_indices`` looks tokens up in ``self.embedding`` (the autoencoder shares the
    encoder's codebook with it).
    """

    def __init__(self, vocab_size: int = 512, embedding_dim: int = 512, base_channels: int = 32,
                 out_channels: int = 3, frame_shape=(3, 64, 64), *, tokens_per_frame: int = 16,
                 num_residual_blocks: int = 2):
        super().__init__()
        side, upsamplings = token_grid(frame_shape, tokens_per_frame, out_channels, "out_channels")
        self.frame_shape, self.side, self.embedding_dim = tuple(frame_shape), side, embedding_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        ch = base_channels
        self.post_quant_conv = nn.Conv2d(embedding_dim, embedding_dim, 1)
        layers: list[nn.Module] = [nn.Conv2d(embedding_dim, ch, 3, padding=1),
                                   ResidualBlock(ch), SelfAttentionBlock(ch), ResidualBlock(ch)]
        layers += resolution_levels(ch, [side << i for i in range(upsamplings + 1)],
                                    num_residual_blocks + 1, lambda c: UpsampleBlock(c, c, c))
        layers += [_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Decode token embeddings ``(B, embedding_dim, side, side)`` to frames."""
        expected = (self.embedding_dim, self.side, self.side)
        if z.dim() != 4 or tuple(z.shape[1:]) != expected:
            raise ValueError(f"IRISDecoder expects embeddings (B, {', '.join(map(str, expected))}), "
                             f"got shape {tuple(z.shape)}")
        return self.net(self.post_quant_conv(z))

    def decode_from_embeddings(self, z_flat: Tensor) -> Tensor:
        """Frames from token embeddings ``(B, side * side, C)`` (a sequence) or ``(B, C, side, side)``."""
        if z_flat.dim() == 3:
            z_flat = z_flat.transpose(1, 2).reshape(z_flat.shape[0], -1, self.side, self.side)
        return self(z_flat)

    def decode_from_indices(self, indices: Tensor) -> Tensor:
        """Frames from token indices ``(B, side, side)`` or ``(B, side * side)`` in ``[0, vocab_size)``."""
        indices = indices.reshape(indices.shape[0], -1)
        if indices.shape[1] != self.side * self.side:
            raise ValueError(f"expected {self.side * self.side} tokens per frame, got {indices.shape[1]}")
        check_indices(indices, self.embedding.num_embeddings)
        return self.decode_from_embeddings(self.embedding(indices.long()))


class DiscreteAutoencoder(nn.Module):
    """IRIS's tokenizer: :class:`IRISEncoder` + :class:`IRISDecoder` sharing one codebook
    (module docstring for the value ranges and the loss)."""

    def __init__(self, vocab_size: int = 512, tokens_per_frame: int = 16, embedding_dim: int = 512,
                 base_channels: int = 64, frame_shape=(3, 64, 64), *,
                 perceptual: Callable[[Tensor, Tensor], Tensor] | None = None, num_residual_blocks: int = 2,
                 l2_weight: float = 0.0):
        super().__init__()
        if isinstance(l2_weight, bool) or not isinstance(l2_weight, (int, float)) or not l2_weight >= 0.0:
            raise ValueError(f"DiscreteAutoencoder: l2_weight must be a number >= 0, got {l2_weight!r}")
        self.l2_weight = float(l2_weight)  # IRIS: 0 (L1 only)
        self.encoder = IRISEncoder(vocab_size, tokens_per_frame, embedding_dim, frame_shape[0],
                                   base_channels, num_residual_blocks, frame_shape=frame_shape)
        self.decoder = IRISDecoder(vocab_size, embedding_dim, base_channels, frame_shape[0],
                                   frame_shape, tokens_per_frame=tokens_per_frame,
                                   num_residual_blocks=num_residual_blocks)
        self.decoder.embedding = self.encoder.quantizer.embedding  # one codebook
        self.perceptual = perceptual

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Frames ``x`` ``(B, C, H, W)`` in ``[0, 1]`` -> ``(reconstruction, indices, losses)``."""
        if x.is_floating_point() and x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"DiscreteAutoencoder expects frames in [0, 1], got values from "
                             f"{float(x.min()):.3g} to {float(x.max()):.3g}")
        target = x * 2.0 - 1.0
        z_q, indices, losses = self.encoder(target)
        output = self.decoder(z_q)
        losses = dict(losses)
        losses["reconstruction_loss"] = (target - output).abs().mean()
        total = losses["vq_loss"] + losses["reconstruction_loss"]
        if self.l2_weight:
            losses["reconstruction_l2_loss"] = (target - output).pow(2).mean()
            total = total + self.l2_weight * losses["reconstruction_l2_loss"]
        if self.perceptual is not None:
            losses["perceptual_loss"] = self.perceptual(target, output).mean()
            total = total + losses["perceptual_loss"]
        losses["loss"] = total
        return (output + 1.0) / 2.0, indices, losses

    def encode(self, x: Tensor) -> Tensor:
        """Token indices ``(B, side, side)`` of frames in ``[0, 1]``."""
        return self.encoder.encode_to_indices(x * 2.0 - 1.0)

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Frames in ``[0, 1]`` (clamped) from token indices."""
        return ((self.decoder.decode_from_indices(indices) + 1.0) / 2.0).clamp(0.0, 1.0)
