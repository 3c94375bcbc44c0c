"""The seed's ``world_models.models.diffusion`` package: thin re-exports of the diffusion
families (DIAMOND's denoiser, reward / termination model and actor-critic live in
:mod:`distwm.models.diamond`). Names load on first access."""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "diamond_diffusion": ("AdaptiveGroupNorm", "ResBlock", "AttentionBlock", "TimestepEmbedding", "DownBlock",
                          "UpBlock", "DiffusionUNet", "EDMPreconditioner", "EulerSampler"),
    "reward_termination": ("ConvBlock", "RewardTerminationModel", "RewardTerminationLoss"),
    "actor_critic": ("ActorCriticNetwork", "RLLoss"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
