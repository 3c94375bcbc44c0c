"""The seed's module path of Genie's dynamics model: :mod:`distwm.models.genie.dynamics_model`."""

from distwm.models.genie.dynamics_model import DynamicsModel, MaskGITSampler, create_dynamics_model

__all__ = ["DynamicsModel", "MaskGITSampler", "create_dynamics_model"]
