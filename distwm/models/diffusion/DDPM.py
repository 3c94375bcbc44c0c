"""The seed's ``world_models.models.diffusion.DDPM``: a thin re-export of
:mod:`distwm.models.dit.diffusion`."""

from distwm.models.dit.diffusion import DDPM

__all__ = ["DDPM"]
