"""Re-exports :mod:`distwm.models.planet.heads` (RewardModel, ValueModel)."""

from distwm.models.planet.heads import RewardModel, ValueModel

__all__ = ["RewardModel", "ValueModel"]
