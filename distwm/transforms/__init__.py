"""Image augmentation pipelines (the seed's ``world_models.transforms``): I-JEPA's
:func:`~distwm.transforms.transforms.make_transforms` and
:class:`~distwm.transforms.transforms.GaussianBlur`, on torch tensors (no torchvision).
Importing this package imports no module of it (nor torch)."""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    "make_transforms": "distwm.transforms.transforms",
    "GaussianBlur": "distwm.transforms.transforms",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
