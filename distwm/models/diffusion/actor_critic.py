"""The seed's ``world_models.models.diffusion.actor_critic``: DIAMOND's actor-critic and RL
loss, :mod:`distwm.models.diamond.actor_critic`."""

from distwm.models.diamond.actor_critic import ActorCriticNetwork, RLLoss

__all__ = ["ActorCriticNetwork", "RLLoss"]
