"""PlaNet's deconvolutional image decoder (Hafner et al. 2019, arXiv:1811.04551)."""

from __future__ import annotations

import torch
from torch import nn

from distwm.blocks.layers import activation_module

__all__ = ["CNNDecoder"]


class CNNDecoder(nn.Module):
    """A Convolutional Neural Network (CNN) decoder for reconstructing image outputs.

    ``forward(latent, state)`` takes the stochastic latent ``(..., latent_size)`` and the
    deterministic state ``(..., state_size)`` and returns the mean image
    ``(..., C, 64, 64)`` in the ``[-0.5, 0.5]`` range of the preprocessed observations.
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
        act = activation_function
        self.deconvs = nn.Sequential(  # 1 -> 5 -> 13 -> 30 -> 64 pixels
            nn.ConvTranspose2d(embedding_size, 128, 5, stride=2), activation_module(act),
            nn.ConvTranspose2d(128, 64, 5, stride=2), activation_module(act),
            nn.ConvTranspose2d(64, 32, 6, stride=2), activation_module(act),
            nn.ConvTranspose2d(32, out_channels, 6, stride=2),
        )

    def forward(self, latent: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if latent.shape[-1] != self.latent_size or state.shape[-1] != self.state_size:
            raise ValueError(
                f"CNNDecoder(latent, state) expects (..., {self.latent_size}) and "
                f"(..., {self.state_size}), got {tuple(latent.shape)} and {tuple(state.shape)}"
            )
        lead = latent.shape[:-1]
        hidden = self.fc(torch.cat([latent, state], dim=-1)).reshape(-1, self.embedding_size, 1, 1)
        image = self.deconvs(hidden)
        return image.reshape(*lead, *image.shape[1:])
