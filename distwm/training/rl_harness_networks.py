"""The actor-critic networks of the PPO harness (:mod:`distwm.training.rl_harness`).

:class:`ActorCritic`: a CNN trunk shared by a policy head and a value head for ``(C, H, W)``
images (uint8 scaled to [0, 1]), or two separate two-layer tanh MLPs for vector observations;
a ``Categorical`` over ``action_dim`` actions. :class:`GaussianActorCritic`: a diagonal Gaussian
with a learned log-std for continuous actions. Orthogonal initialisation as CleanRL's
``layer_init``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from distwm.vision.conv import ConvStack, conv_output_size

__all__ = ["ActorCritic", "GaussianActorCritic"]

_SQRT2 = math.sqrt(2.0)


def _layer(linear: nn.Linear, std: float) -> nn.Linear:
    """Orthogonal weights with gain ``std``, zero bias (CleanRL's ``layer_init``)."""
    nn.init.orthogonal_(linear.weight, std)
    nn.init.zeros_(linear.bias)
    return linear


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, out_std: float) -> nn.Sequential:
    return nn.Sequential(_layer(nn.Linear(in_dim, hidden_dim), _SQRT2), nn.Tanh(),
                         _layer(nn.Linear(hidden_dim, hidden_dim), _SQRT2), nn.Tanh(),
                         _layer(nn.Linear(hidden_dim, out_dim), out_std))


def _conv_stages(side: int) -> int:
    """Halving stages (at most 4) until the feature map is at most 4 pixels on its short side."""
    stages, size = 0, side
    while stages < 4 and (stages == 0 or size > 4):
        size, stages = conv_output_size(size, 1, padding=1), stages + 1
    return stages


class ActorCritic(nn.Module):
    """Actor-critic for discrete actions: ``forward(obs) -> (logits (B, action_dim), value (B, 1))``.

    ``obs_shape`` ``(C, H, W)``: a shared CNN (4x4 stride-2 :class:`ConvStack`, ReLU, a linear
    layer of ``hidden_dim``) under linear actor and critic heads; uint8 images are scaled to
    ``[0, 1]``. ``obs_shape`` ``(D,)``: separate two-layer tanh MLPs of ``hidden_dim`` for the
    actor and the critic (CleanRL's classic-control network). Leading batch dimensions of
    ``obs`` may be any shape.
    """

    def __init__(self, obs_shape: tuple, action_dim: int, hidden_dim: int = 256):
        super().__init__()
        obs_shape = tuple(int(size) for size in obs_shape)
        if len(obs_shape) not in (1, 3) or min(obs_shape) < 1:
            raise ValueError(f"obs_shape must be (D,) for vectors or (C, H, W) for images, got {obs_shape}")
        if len(obs_shape) == 3 and min(obs_shape[1:]) < 2:
            raise ValueError(f"Images must be at least 2 x 2 pixels, got obs_shape {obs_shape}")
        for name, value in (("action_dim", action_dim), ("hidden_dim", hidden_dim)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.obs_shape, self.action_dim, self.hidden_dim = obs_shape, int(action_dim), int(hidden_dim)
        if len(obs_shape) == 3:
            channels, height, width = obs_shape
            conv = ConvStack(channels, depth=32, stages=_conv_stages(min(height, width)), padding=1)
            features = int(np.prod(conv.output_shape(height, width)))
            self.encoder: nn.Module = nn.Sequential(
                conv, nn.Flatten(), _layer(nn.Linear(features, hidden_dim), _SQRT2), nn.ReLU())
            self.actor: nn.Module = _layer(nn.Linear(hidden_dim, action_dim), 0.01)
            self.critic: nn.Module = _layer(nn.Linear(hidden_dim, 1), 1.0)
        else:
            self.encoder = nn.Identity()
            self.actor = _mlp(obs_shape[0], hidden_dim, action_dim, 0.01)
            self.critic = _mlp(obs_shape[0], hidden_dim, 1, 1.0)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Forward pass through CNN, then actor and critic heads."""
        rank = len(self.obs_shape)
        if obs.dim() <= rank or tuple(obs.shape[-rank:]) != self.obs_shape:
            raise ValueError(f"Expected observations shaped (batch, {', '.join(map(str, self.obs_shape))}), "
                             f"got {tuple(obs.shape)}")
        batch = obs.shape[:-rank]
        obs = obs.reshape(-1, *self.obs_shape)
        obs = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        features = self.encoder(obs)
        logits, value = self.actor(features), self.critic(features)
        return logits.reshape(*batch, -1), value.reshape(*batch, 1)

    def distribution(self, logits: Tensor) -> Distribution:
        """The action distribution the actor head's output stands for."""
        return Categorical(logits=logits)

    def get_action(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample action from policy: ``(action (B,), log_prob (B,), value (B, 1))``."""
        logits, value = self(obs)
        dist = self.distribution(logits)
        action = dist.sample()
        return action, dist.log_prob(action), value

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(log_prob (B,), entropy (B,), value (B, 1))`` of given ``actions`` at ``obs``."""
        logits, value = self(obs)
        dist = self.distribution(logits)
        return dist.log_prob(actions), dist.entropy(), value


class GaussianActorCritic(ActorCritic):
    """:class:`ActorCritic` for continuous actions: the actor outputs the mean of a diagonal
    Gaussian whose log-std is a learned, state-independent parameter (initially 0);
    actions are ``(B, action_dim)`` and unbounded (the trainer clips what it sends)."""

    def __init__(self, obs_shape: tuple, action_dim: int, hidden_dim: int = 256):
        super().__init__(obs_shape, action_dim, hidden_dim)
        self.log_std = nn.Parameter(torch.zeros(self.action_dim))

    def distribution(self, logits: Tensor) -> Distribution:
        return Independent(Normal(logits, self.log_std.exp().expand_as(logits)), 1)
