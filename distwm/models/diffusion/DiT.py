"""The seed's ``world_models.models.diffusion.DiT``: the Diffusion Transformer, a thin
re-export of :mod:`distwm.models.dit.network` (``DiT.train`` is
:func:`distwm.models.dit.fit.train_dit`)."""

from distwm.models.dit.factory import create_dit
from distwm.models.dit.network import (DiT, PatchEmbed, PatchUnEmbed, TransformerBlock,
                                       sinusoidal_time_embedding)

__all__ = ["DiT", "PatchEmbed", "PatchUnEmbed", "TransformerBlock", "create_dit",
           "sinusoidal_time_embedding"]
