"""DiT (Peebles & Xie 2023, arXiv:2212.09748): the family's package.

Modules: :mod:`.network` (:class:`DiT`, its blocks, :func:`sinusoidal_time_embedding`),
:mod:`.diffusion` (:class:`DDPM`: schedule, posterior, learned-sigma variance, the VLB term and
the hybrid loss), :mod:`.sampling` (respaced / DDIM sampling, classifier-free guidance),
:mod:`.ema`, :mod:`.factory` (:func:`create_dit`, :func:`dit_from_config`), :mod:`.trainable`
(the dataset-trained :class:`DiTTrainable` that Ray Train workers update), :mod:`.evaluation`
and :mod:`.report` (the in-run sample-quality evaluation), :mod:`.fit` (the seed's single-process
``DiT.train``). The seed's module paths are :mod:`distwm.models.diffusion.DiT` and
:mod:`distwm.models.diffusion.DDPM`. Names load on first access (importing this package imports
no torch).
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

_MODULES = {
    "network": ("DiT", "PatchEmbed", "PatchUnEmbed", "TransformerBlock",
                "sinusoidal_time_embedding"),
    "diffusion": ("DDPM",),
    "sampling": ("sample_images", "space_timesteps", "respace"),
    "factory": ("create_dit", "dit_from_config"),
    "trainable": ("DiTTrainable",),
    "evaluation": ("SampleClassifier", "frechet_distance"),
    "fit": ("train_dit",),
}
_LAZY = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
