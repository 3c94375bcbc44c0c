"""PlaNet's deconvolutional image decoder (Hafner et al. 2019, arXiv:1811.04551)."""

from __future__ import annotations

import torch
from torch import nn

from distwm.vision.conv import PLANET_KERNELS, DeconvStack, apply_to_images

__all__ = ["CNNDecoder"]


class CNNDecoder(nn.Module):
    """A Convolutional Neural Network (CNN) decoder for reconstructing image outputs.

    ``forward(latent, state)`` takes the stochastic latent ``(..., latent_size)`` and the
    deterministic state ``(..., state_size)`` and returns the mean image
    ``(..., C, 64, 64)`` in the ``[-0.5, 0.5]`` range of the preprocessed observations
    (a :class:`~distwm.vision.conv.DeconvStack` of depth 32 from a 1 x 1 bottleneck).
    """

    def __init__(
        self,
        state_size: int,
        latent_size: int,
        embedding_size: int,
        activation_function: str = "relu",
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.state_size = state_size
        self.latent_size = latent_size
        self.embedding_size = embedding_size
        self.out_channels = out_channels
        self.fc = nn.Linear(latent_size + state_size, embedding_size)
        # 1 -> 5 -> 13 -> 30 -> 64 pixels, 128 -> 64 -> 32 -> out_channels channels
        self.deconvs = DeconvStack(embedding_size, out_channels, 32, PLANET_KERNELS, activation_function)

    def forward(self, latent: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if latent.shape[-1] != self.latent_size or state.shape[-1] != self.state_size:
            raise ValueError(
                f"CNNDecoder(latent, state) expects (..., {self.latent_size}) and "
                f"(..., {self.state_size}), got {tuple(latent.shape)} and {tuple(state.shape)}"
            )
        return apply_to_images(self._image, torch.cat([latent, state], dim=-1), 1,
                               (self.out_channels, 64, 64))

    def _image(self, features: torch.Tensor) -> torch.Tensor:
        return self.deconvs(self.fc(features).reshape(-1, self.embedding_size, 1, 1))
