"""The seed's ``world_models.models.diffusion.diamond_diffusion``: DIAMOND's U-Net blocks
(:mod:`distwm.models.diamond.unet`) and the EDM preconditioner / Euler sampler
(:mod:`distwm.blocks.diffusion`), re-exported under the seed's names. The full world model
(U-Net + preconditioning + sampling) is :class:`distwm.models.diamond.denoiser.DiamondDenoiser`."""

from distwm.blocks.diffusion import EDMPreconditioner, EulerSampler
from distwm.models.diamond.unet import (
    AdaptiveGroupNorm,
    AttentionBlock,
    DiffusionUNet,
    DownBlock,
    ResBlock,
    TimestepEmbedding,
    UpBlock,
)

__all__ = [
    "AdaptiveGroupNorm",
    "AttentionBlock",
    "DiffusionUNet",
    "DownBlock",
    "EDMPreconditioner",
    "EulerSampler",
    "ResBlock",
    "TimestepEmbedding",
    "UpBlock",
]
