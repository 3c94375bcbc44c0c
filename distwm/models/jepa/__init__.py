"""I-JEPA (Assran et al. 2023, arXiv:2301.08243): the family's package.

Modules: :mod:`.model` (:class:`IJEPA`: context encoder, predictor, EMA target encoder and the
loss; :class:`JEPALearner`: AdamW with ijepa's lr / weight-decay / momentum schedules,
gradients averaged over the data-parallel group), :mod:`.trainable` (:class:`JEPATrainable`,
the dataset-trained :class:`~distwm.agent.Trainable` that Ray Train workers and the seed's
``train_jepa.main`` update, with the in-run linear probe in its report) and :mod:`.probe` (the
linear probe). The ViT lives in :mod:`distwm.models.vit`, the masks in :mod:`distwm.masks`; the
seed's entry points are :mod:`distwm.models.jepa_agent` and :mod:`distwm.training.train_jepa`.
Names load on first access (importing this package imports no torch).
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

_MODULES = {
    "model": ("IJEPA", "JEPALearner", "build_networks", "ema_momentum"),
    "trainable": ("JEPATrainable", "images_from_batch", "mask_image", "schedule_length"),
    "probe": ("linear_probe_accuracy", "pooled_features", "probe_accuracy"),
}
_LAZY = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
