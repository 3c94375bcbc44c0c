"""The seed's ``world_models.models.diffusion`` package: thin re-exports of the diffusion
families (DIAMOND's denoiser, reward / termination model and actor-critic live in
:mod:`distwm.models.diamond`; DiT and its DDPM in :mod:`distwm.models.dit`). Names load on
first access.

``DiT`` and ``DDPM`` name both a class and a module of this package, as in the seed: the
package attribute is the class once it has been looked up here (``from
distwm.models.diffusion import DiT``); ``import distwm.models.diffusion.DiT`` binds the module
until then.
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

_MODULES = {
    "diamond_diffusion": ("AdaptiveGroupNorm", "ResBlock", "AttentionBlock", "TimestepEmbedding", "DownBlock",
                          "UpBlock", "DiffusionUNet", "EDMPreconditioner", "EulerSampler"),
    "reward_termination": ("ConvBlock", "RewardTerminationModel", "RewardTerminationLoss"),
    "actor_critic": ("ActorCriticNetwork", "RLLoss"),
    "DiT": ("DiT", "PatchEmbed", "PatchUnEmbed", "TransformerBlock", "sinusoidal_time_embedding",
            "create_dit"),
    "DDPM": ("DDPM",),
}
_LAZY = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
