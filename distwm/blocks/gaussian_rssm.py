"""The Gaussian RSSM of PlaNet (Hafner et al., 2019), shared by PlaNet's
:class:`~distwm.models.planet.networks.RecurrentStateSpaceModel` and the modular RSSM's GRU and
LSTM backbones.

``[stoch, action] -> Linear -> act`` feeds a recurrent cell (the subclass's: GRU or LSTM) that
gives ``deter``; the prior's ``(mean, std)`` come from ``deter``, the posterior's from
``[deter, obs_embed]``, each through a one-hidden-layer MLP, with ``std = softplus(x) +
min_std``. Dreamer's RSSM (V1's Gaussian latents) uses the same parameterisation
(:func:`~distwm.blocks.layers.gaussian_params`) around its own (layer-normed) layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distwm.blocks.layers import activation_module, build_mlp, gaussian_params

__all__ = ["GaussianRSSMLayers", "gaussian_sample"]


def gaussian_sample(mean: Tensor, std: Tensor) -> Tensor:
    """A reparameterised sample ``mean + std * eps``."""
    return mean + std * torch.randn_like(std)


class GaussianRSSMLayers(nn.Module):
    """The input, prior and posterior layers of a Gaussian RSSM (subclasses add the cell).

    Args:
        action_size, stoch_size, deter_size: action, stochastic and deterministic widths.
        hidden_size: width of the prior / posterior hidden layer.
        embed_size: observation embedding width.
        activation: activation name.
        min_std: floor of the prior and posterior standard deviations.
    """

    def __init__(self, action_size: int, stoch_size: int, deter_size: int, hidden_size: int,
                 embed_size: int, activation: str, min_std: float = 0.1):
        super().__init__()
        self.min_std = float(min_std)
        self.fc_state_action = nn.Sequential(
            nn.Linear(stoch_size + action_size, deter_size), activation_module(activation))
        self.fc_prior = build_mlp(deter_size, [hidden_size], 2 * stoch_size, activation)
        self.fc_posterior = build_mlp(deter_size + embed_size, [hidden_size], 2 * stoch_size,
                                      activation)

    def cell_input(self, stoch: Tensor, action: Tensor) -> Tensor:
        """What the recurrent cell takes: ``act(Linear([stoch, action]))``."""
        return self.fc_state_action(torch.cat([stoch, action], dim=-1))

    def prior_stats(self, deter: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` of the prior ``p(s_t | h_t)``."""
        return gaussian_params(self.fc_prior(deter), self.min_std)

    def posterior_stats(self, deter: Tensor, obs_embed: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` of the posterior ``q(s_t | h_t, e_t)``."""
        return gaussian_params(self.fc_posterior(torch.cat([deter, obs_embed], dim=-1)),
                               self.min_std)
