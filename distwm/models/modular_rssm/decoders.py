"""The modular RSSM's observation decoders: conv (the shared transposed conv stack) and MLP."""

from __future__ import annotations

import math
from typing import Any, Sequence, Tuple, Union

from torch import Tensor, distributions, nn

from distwm.blocks.layers import build_mlp
from distwm.models.modular_rssm.base import DecoderBase, _image_shape, _positive_int
from distwm.vision.conv import PLANET_KERNELS, DeconvStack, apply_to_images

__all__ = ["ConvDecoder", "MLPDecoder"]


class ConvDecoder(DecoderBase):
    """Convolutional decoder for image observations (Dreamer's layout, 64x64 output).

    ``features`` (..., stoch + deter) -> linear to ``32 * depth`` -> four transposed
    convolutions (1 -> 5 -> 13 -> 30 -> 64 pixels, the shared
    :class:`~distwm.vision.conv.DeconvStack`). Returns
    ``Independent(Normal(mean, 1), 3)`` over ``output_shape``.
    """

    def __init__(
        self,
        stoch_size: int,
        deter_size: int,
        output_shape: Tuple[int, int, int],
        activation: str = "elu",
        depth: int = 32,
    ):
        super().__init__()
        self.output_shape = _image_shape("ConvDecoder", output_shape)
        if self.output_shape[1:] != (64, 64):
            raise ValueError(f"ConvDecoder produces 64x64 images; output_shape {self.output_shape} is not (C, 64, 64)")
        self.stoch_size = _positive_int("ConvDecoder", "stoch_size", stoch_size)
        self.deter_size = _positive_int("ConvDecoder", "deter_size", deter_size)
        _positive_int("ConvDecoder", "depth", depth)
        self.bottleneck = 32 * depth
        self.fc = nn.Linear(stoch_size + deter_size, self.bottleneck)
        self.deconvs = DeconvStack(self.bottleneck, self.output_shape[0], depth, PLANET_KERNELS, activation)

    def _mean(self, features: Tensor) -> Tensor:
        return self.deconvs(self.fc(features).reshape(-1, self.bottleneck, 1, 1))

    def forward(self, features: Tensor) -> Any:
        mean = apply_to_images(self._mean, features, 1, self.output_shape)
        return distributions.Independent(distributions.Normal(mean, 1.0), 3)


class MLPDecoder(DecoderBase):
    """MLP decoder for state-based observations (and rewards).

    ``output_dim`` is an int or a shape (for instance an image shape: the output is reshaped to
    it). ``dist``: ``'normal'`` (unit-variance Gaussian), ``'binary'`` (Bernoulli logits) or
    ``'none'`` (the raw tensor); distributions are ``Independent`` over the output axes.
    """

    DISTS = ("normal", "binary", "none")

    def __init__(
        self,
        stoch_size: int,
        deter_size: int,
        output_dim: Union[int, Sequence[int]],
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "elu",
        dist: str = "normal",
    ):
        super().__init__()
        if dist not in self.DISTS:
            raise ValueError(f"MLPDecoder: unknown dist {dist!r}; valid: {', '.join(self.DISTS)}")
        self.output_shape = (output_dim,) if isinstance(output_dim, int) else tuple(int(d) for d in output_dim)
        self.stoch_size = _positive_int("MLPDecoder", "stoch_size", stoch_size)
        self.deter_size = _positive_int("MLPDecoder", "deter_size", deter_size)
        self.dist = dist
        self.net = build_mlp(stoch_size + deter_size, list(hidden_sizes), math.prod(self.output_shape), activation)

    def forward(self, features: Tensor) -> Any:
        out = self.net(features)
        out = out.reshape(*out.shape[:-1], *self.output_shape)
        if self.dist == "none":
            return out
        base = distributions.Normal(out, 1.0) if self.dist == "normal" else distributions.Bernoulli(logits=out)
        return distributions.Independent(base, len(self.output_shape))
