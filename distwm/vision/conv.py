"""The one conv encoder / decoder stack of the pixel world models (64 x 64 images).

:class:`ConvStack` is the encoder: ``stages`` 4x4 stride-2 convolutions with
``depth * 2**i`` channels at stage ``i`` (Ha & Schmidhuber; PlaNet; Dreamer). With
``padding=0`` a 64 x 64 image goes 31 -> 14 -> 6 -> 2 (PlaNet, DreamerV1, the modular RSSM);
with ``padding=1`` every stage halves it, down to 4 x 4 (DreamerV3's layout).

:class:`DeconvStack` is its transposed mirror: transposed stride-2 convolutions with
``depth * 2**i`` channels for ``i = stages - 2 .. 0`` and then ``out_channels``, with one
kernel size a layer: ``(5, 5, 6, 6)`` and no padding from a 1 x 1 bottleneck
(1 -> 5 -> 13 -> 30 -> 64 pixels, PlaNet / DreamerV1), ``4`` with padding 1 from 4 x 4
(doubling, DreamerV3).

Both are ``nn.Sequential`` (``conv, [norm], activation`` per stage), so the classes that hold
one keep their state-dict keys. The encoder / decoder classes of the seed
(``vision.dreamer_encoder.ConvEncoder``, ``vision.planet_encoder.CNNEncoder``,
``vision.dreamer_decoder.ConvDecoder``, ``vision.planet_decoder.CNNDecoder`` and the modular
RSSM's ``ConvEncoder`` / ``ConvDecoder``) are configurations of these two.
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn

from distwm.blocks.dreamer_blocks import ChannelNorm
from distwm.blocks.layers import activation_module

__all__ = ["ConvStack", "DeconvStack", "conv_output_size", "apply_to_images", "PLANET_KERNELS"]

PLANET_KERNELS = (5, 5, 6, 6)  # 1 -> 5 -> 13 -> 30 -> 64 pixels


def conv_output_size(size: int, stages: int, padding: int = 0, kernel: int = 4) -> int:
    """Side length after ``stages`` stride-2 convolutions of ``kernel`` with ``padding``."""
    for _ in range(stages):
        size = (size + 2 * padding - kernel) // 2 + 1
    return size


def _stage(conv: nn.Module, channels: int, activation: str, layer_norm: bool) -> list:
    layers = [conv]
    if layer_norm:
        layers.append(ChannelNorm(channels, eps=1e-3))
    layers.append(activation_module(activation))
    return layers


class ConvStack(nn.Sequential):
    """``stages`` x (4x4 stride-2 conv with ``depth * 2**i`` channels, [ChannelNorm], act).

    ``layer_norm`` drops the conv bias and normalises over channels (DreamerV3).
    """

    def __init__(self, in_channels: int, depth: int = 32, stages: int = 4,
                 activation: str = "relu", padding: int = 0, layer_norm: bool = False):
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(stages):
            out = depth * 2 ** i
            layers += _stage(nn.Conv2d(channels, out, 4, 2, padding, bias=not layer_norm),
                             out, activation, layer_norm)
            channels = out
        super().__init__(*layers)
        self.stages = stages
        self.padding = padding
        self.out_channels = channels

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(channels, H', W')`` of the output for ``height x width`` inputs."""
        return (self.out_channels, conv_output_size(height, self.stages, self.padding),
                conv_output_size(width, self.stages, self.padding))


class DeconvStack(nn.Sequential):
    """The transposed mirror of :class:`ConvStack`: ``len(kernels)`` transposed stride-2
    convolutions from ``in_channels`` through ``depth * 2**i`` channels
    (``i = len(kernels) - 2 .. 0``) to ``out_channels``; the last layer has no norm and no
    activation (its output is the image mean)."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 32,
                 kernels: Sequence[int] = PLANET_KERNELS, activation: str = "relu",
                 padding: int = 0, layer_norm: bool = False):
        layers: list[nn.Module] = []
        channels = in_channels
        for i, kernel in enumerate(kernels[:-1]):
            out = depth * 2 ** (len(kernels) - 2 - i)
            layers += _stage(nn.ConvTranspose2d(channels, out, kernel, 2, padding,
                                                bias=not layer_norm),
                             out, activation, layer_norm)
            channels = out
        layers.append(nn.ConvTranspose2d(channels, out_channels, kernels[-1], 2, padding))
        super().__init__(*layers)
        self.in_channels = in_channels


def apply_to_images(fn: Callable[[Tensor], Tensor], x: Tensor, trailing: int,
                    out_shape: Sequence[int]) -> Tensor:
    """``fn`` over ``x`` with its leading axes (all but the ``trailing`` ones) merged into one
    batch axis; the result is ``(*lead, *out_shape)``."""
    lead = x.shape[: x.dim() - trailing]
    out = fn(x.reshape(-1, *x.shape[x.dim() - trailing:]))
    return out.reshape(*lead, *out_shape)
