"""PlaNet's convolutional image encoder (Hafner et al. 2019, arXiv:1811.04551)."""

from __future__ import annotations

import torch
from torch import nn

from distwm.vision.conv import ConvStack, apply_to_images

__all__ = ["CNNEncoder"]

_CONV_FEATURES = 1024  # 256 channels x 2 x 2 after four stride-2 convolutions of a 64x64 image


class CNNEncoder(nn.Module):
    """A Convolutional Neural Network (CNN) encoder for processing image inputs.

    Four 4x4 stride-2 convolutions (32, 64, 128, 256 channels) turn a ``(B, C, 64, 64)``
    image in ``[-0.5, 0.5]`` into 1024 features; a linear layer maps them to
    ``embedding_size`` when that is not 1024 (PlaNet's layout: a
    :class:`~distwm.vision.conv.ConvStack` of depth 32).
    """

    image_size = 64

    def __init__(self, embedding_size: int, activation_function: str = "relu", in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(embedding_size, int) or embedding_size <= 0:
            raise ValueError(f"embedding_size must be a positive int, got {embedding_size!r}")
        self.embedding_size = embedding_size
        self.in_channels = in_channels
        self.convs = ConvStack(in_channels, 32, 4, activation_function)
        self.fc = (
            nn.Identity() if embedding_size == _CONV_FEATURES else nn.Linear(_CONV_FEATURES, embedding_size)
        )

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if observation.dim() < 4 or tuple(observation.shape[-3:]) != expected:
            raise ValueError(
                f"CNNEncoder expects images shaped (..., {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(observation.shape)}"
            )
        return apply_to_images(self._embed, observation, 3, (self.embedding_size,))

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(images).flatten(1))
