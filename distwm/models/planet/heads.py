"""Scalar heads on RSSM latents: reward and value MLPs of PlaNet and DreamerV1.

Both take the deterministic belief ``h`` and the stochastic state ``s`` and return a scalar per
leading index (the trailing unit axis is squeezed away).
"""

from __future__ import annotations

import torch
from torch import nn

from distwm.blocks.layers import build_mlp

__all__ = ["RewardModel", "ValueModel"]


class _LatentScalarHead(nn.Module):
    num_hidden_layers = 2

    def __init__(self, belief_size: int, state_size: int, hidden_size: int, activation_function: str = "relu"):
        super().__init__()
        self.belief_size = belief_size
        self.state_size = state_size
        self.net = build_mlp(
            belief_size + state_size, [hidden_size] * self.num_hidden_layers, 1, activation_function
        )

    def forward(self, belief: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if belief.shape[-1] != self.belief_size or state.shape[-1] != self.state_size:
            raise ValueError(
                f"{type(self).__name__}(belief, state) expects (..., {self.belief_size}) and "
                f"(..., {self.state_size}), got {tuple(belief.shape)} and {tuple(state.shape)}"
            )
        return self.net(torch.cat([belief, state], dim=-1)).squeeze(-1)


class RewardModel(_LatentScalarHead):
    """Predict scalar rewards from Dreamer latent belief and state vectors.

    An MLP (two hidden layers) used for model-based reward supervision and to score imagined
    rollouts (PlaNet's planner, Dreamer's returns).
    """


class ValueModel(_LatentScalarHead):
    """Estimate scalar value from Dreamer latent belief and state vectors.

    An MLP (three hidden layers) trained on imagined returns for actor/value updates.
    """

    num_hidden_layers = 3
