"""Layer helpers shared by every network family (PlaNet, modular RSSM, Dreamer): activations, MLPs, Gaussians.

``activation_module(name)`` turns an activation name into a fresh ``nn.Module`` and
``build_mlp`` stacks linear layers with that activation. Both raise ``ValueError`` naming the
bad value and the valid choices.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from distwm.configs.activations import ACTIVATION_NAMES

__all__ = ["ACTIVATIONS", "AlignedLinear", "activation_module", "build_mlp", "gaussian_params", "sample_categorical", "epsilon_greedy"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "mish": nn.Mish,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES


def activation_module(name: str) -> nn.Module:
    """A new activation layer for ``name`` (one of :data:`ACTIVATIONS`)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}; valid activations: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[key]()


def build_mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    """``Linear -> act`` for every hidden size, then a final ``Linear`` to ``out_dim``."""
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"build_mlp: {name} must be a positive int, got {value!r}")
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden_sizes:
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"build_mlp: hidden sizes must be positive ints, got {list(hidden_sizes)!r}")
        layers += [nn.Linear(width, size), activation_module(activation)]
        width = size
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def gaussian_params(raw: torch.Tensor, min_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``raw`` (..., 2 * D) into a mean and a positive std ``softplus(x) + min_std``."""
    mean, std_raw = torch.chunk(raw, 2, dim=-1)
    return mean, F.softplus(std_raw) + min_std


def sample_categorical(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Indices sampled from ``softmax(logits / temperature)`` over the last axis, by the
    Gumbel-max trick: the same distribution as ``Categorical(logits=...).sample()`` without the
    distribution object (imagination samples 17 times per step)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    gumbel = -torch.empty_like(logits, dtype=torch.float32).exponential_().log()
    return (logits.float() / temperature + gumbel).argmax(-1)


def epsilon_greedy(actions: torch.Tensor, num_actions: int, epsilon: float) -> torch.Tensor:
    """``actions`` with each replaced, with probability ``epsilon``, by a uniform one."""
    if epsilon <= 0:
        return actions
    uniform = torch.randint(0, num_actions, actions.shape, device=actions.device)
    return torch.where(torch.rand(actions.shape, device=actions.device) < epsilon, uniform, actions)


class AlignedLinear(nn.Linear):
    """``nn.Linear`` whose matmul runs with the output rows padded to a multiple of 16.

    A wide output that is not a multiple of the GEMM kernels' tile (the two-hot heads' 255
    buckets) runs much slower than the padded width: 16,384 x 256 -> 255 takes 60 ms on one
    CPU thread, -> 256 40 ms. The weight and bias keep their shapes (checkpoints are those of
    ``nn.Linear``); the matmul uses them padded with zero rows and returns the first
    ``out_features`` columns (a view), so the output and every gradient are those of
    ``nn.Linear``. Narrow outputs (fewer than 64) and aligned ones run as ``nn.Linear``.
    """

    ALIGN = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = -self.out_features % self.ALIGN
        if extra == 0 or self.out_features < 64:
            return F.linear(x, self.weight, self.bias)
        weight = F.pad(self.weight, (0, 0, 0, extra))
        bias = None if self.bias is None else F.pad(self.bias, (0, extra))
        return F.linear(x, weight, bias)[..., : self.out_features]
