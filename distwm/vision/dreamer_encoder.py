"""Observation encoders of the Dreamer world model (the seed's ``vision.dreamer_encoder``).

:class:`ConvEncoder` embeds images, :class:`MultiEncoder` combines it with an MLP over
vector observations (``symlog`` first in DreamerV3) for image, vector and mixed inputs.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from distwm.blocks.dreamer_blocks import MLP, use_rms_norm_
from distwm.blocks.returns import symlog
from distwm.vision.conv import ConvStack, apply_to_images

__all__ = ["ConvEncoder", "MultiEncoder", "conv_stages"]


def conv_stages(input_shape: Sequence[int]) -> int:
    """Number of stride-2 stages that take a square power-of-two image down to 4 x 4."""
    if len(input_shape) != 3:
        raise ValueError(f"image shape must be (C, H, W), got {tuple(input_shape)}")
    _, height, width = input_shape
    if height != width or height < 8 or height & (height - 1):
        raise ValueError(
            f"Dreamer's conv encoder needs square power-of-two images of at least 8 x 8, "
            f"got {height} x {width}; set image_size to 16, 32, 64 or 128"
        )
    return int(math.log2(height)) - 2


class ConvEncoder(nn.Module):
    """Stride-2 convolutions (kernel 4, padding 1) that halve the image until 4 x 4, doubling
    the width (a :class:`~distwm.vision.conv.ConvStack`).

    Args:
        input_shape: ``(C, H, W)`` of the (already normalised, float) images.
        embed_size: width of the output; when it differs from the flattened conv output a
            linear layer projects to it. ``None`` keeps the conv output.
        activation: activation name.
        depth: channels of the first conv (``depth * 2**i`` at stage ``i``).
        layer_norm: LayerNorm over channels after every conv (DreamerV3).
        norm: ``"layer"`` or ``"rms"`` (RMSNorm over channels and conv biases; current
            dreamerv3 code), with ``layer_norm``.
    """

    def __init__(self, input_shape: Sequence[int], embed_size: int | None = None,
                 activation: str = "relu", depth: int = 32, layer_norm: bool = False,
                 norm: str = "layer"):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.convs = ConvStack(self.input_shape[0], depth, conv_stages(self.input_shape),
                               activation, padding=1, layer_norm=layer_norm)
        if layer_norm and norm == "rms":
            use_rms_norm_(self.convs)
        flat = self.convs.out_channels * 16
        self.proj = nn.Linear(flat, embed_size) if embed_size and embed_size != flat else None
        self.embed_size = embed_size if self.proj is not None else flat

    def _embed(self, images: Tensor) -> Tensor:
        x = self.convs(images).flatten(1)
        return x if self.proj is None else self.proj(x)

    def forward(self, inputs: Tensor) -> Tensor:
        return apply_to_images(self._embed, inputs, 3, (self.embed_size,))


class MultiEncoder(nn.Module):
    """Embeds ``{"image": (…, C, H, W) float, "state": (…, D) float}`` (either or both).

    Images go through :class:`ConvEncoder`, vectors through an MLP (after ``symlog`` when
    ``symlog_inputs``); the embeddings are concatenated.
    """

    def __init__(self, obs_shapes: Mapping[str, Sequence[int]], units: int, layers: int,
                 depth: int, activation: str, layer_norm: bool, symlog_inputs: bool,
                 embed_size: int | None = None, norm: str = "layer"):
        super().__init__()
        unknown = set(obs_shapes) - {"image", "state"}
        if unknown or not obs_shapes:
            raise ValueError(
                f"observation keys must be 'image' and/or 'state', got {sorted(obs_shapes)}"
            )
        self.symlog_inputs = symlog_inputs
        self.image = None
        self.state = None
        self.embed_size = 0
        if "image" in obs_shapes:
            self.image = ConvEncoder(obs_shapes["image"], embed_size, activation, depth, layer_norm,
                                     norm)
            self.embed_size += self.image.embed_size
        if "state" in obs_shapes:
            shape = tuple(obs_shapes["state"])
            if len(shape) != 1:
                raise ValueError(f"'state' observations must be vectors (D,), got shape {shape}")
            self.state = MLP(shape[0], units, max(layers, 1), activation, layer_norm, norm=norm)
            self.embed_size += self.state.out_dim

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        parts = []
        if self.image is not None:
            parts.append(self.image(obs["image"]))
        if self.state is not None:
            state = obs["state"]
            parts.append(self.state(symlog(state) if self.symlog_inputs else state))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)
