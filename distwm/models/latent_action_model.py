"""The seed's module path of Genie's latent action model: :mod:`distwm.models.genie.latent_action_model`."""

from distwm.models.genie.latent_action_model import LatentActionModel, create_latent_action_model

__all__ = ["LatentActionModel", "create_latent_action_model"]
