"""Layers shared by the Dreamer networks: activations, normalised MLPs, conv stages, init.

DreamerV3 normalises every hidden layer (``Linear -> LayerNorm -> SiLU``); DreamerV1 uses
plain ``Linear -> ELU``. Both are :class:`MLP` with ``layer_norm`` on or off.
"""

from __future__ import annotations

import torch
from torch import nn

from distwm.configs.dreamer_config import ACTIVATION_NAMES

__all__ = ["ACTIVATIONS", "MLP", "ChannelNorm", "activation_layer", "zero_init_"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES


def activation_layer(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key]()


def zero_init_(layer: nn.Linear) -> nn.Linear:
    """Zero the weights and bias of ``layer`` (DreamerV3's reward and critic outputs)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Sequential):
    """``layers`` x (``Linear -> [LayerNorm] -> act``), optionally followed by ``Linear(out_dim)``.

    Without ``out_dim`` the output width is ``units``. With LayerNorm the hidden linears
    have no bias (the norm's shift replaces it), as in DreamerV3.
    """

    def __init__(self, in_dim: int, units: int, layers: int, activation: str = "silu",
                 layer_norm: bool = True, out_dim: int | None = None, zero_out: bool = False):
        if in_dim <= 0 or units <= 0 or layers < 0:
            raise ValueError(
                f"MLP needs in_dim > 0, units > 0 and layers >= 0, got {in_dim}, {units}, {layers}"
            )
        modules: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            modules.append(nn.Linear(width, units, bias=not layer_norm))
            if layer_norm:
                modules.append(nn.LayerNorm(units, eps=1e-3))
            modules.append(activation_layer(activation))
            width = units
        if out_dim is not None:
            head = nn.Linear(width, out_dim)
            modules.append(zero_init_(head) if zero_out else head)
            width = out_dim
        super().__init__(*modules)
        self.out_dim = width


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``(N, C, H, W)`` feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
