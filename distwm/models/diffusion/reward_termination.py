"""The seed's ``world_models.models.diffusion.reward_termination``: DIAMOND's reward /
termination model, :mod:`distwm.models.diamond.reward_termination`."""

from distwm.models.diamond.reward_termination import (
    ConvBlock,
    RewardTerminationLoss,
    RewardTerminationModel,
)

__all__ = ["ConvBlock", "RewardTerminationLoss", "RewardTerminationModel"]
