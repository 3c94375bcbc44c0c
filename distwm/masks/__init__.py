"""Mask collators for JEPA-style masked training (the seed's ``world_models.masks``).

* :class:`MultiblockMaskCollator` (``distwm.masks.multiblock.MaskCollator``, also exported as
  ``MaskCollator``): I-JEPA's multi-block target and context masks;
* :class:`RandomMaskCollator` (``distwm.masks.random.MaskCollator``): a random context / target
  split of the patches;
* :class:`DefaultCollator`: collation without masks.

Each takes a list of samples (a DataLoader's ``collate_fn``) or an already batched tensor and
returns ``(batch, masks_enc, masks_pred)``. Importing this package imports no module of it (nor
torch)::

    from distwm.masks import MaskCollator, DefaultCollator
    collator = MaskCollator(input_size=(64, 64), patch_size=8)
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    "MultiblockMaskCollator": "distwm.masks.multiblock",
    "MaskCollator": "distwm.masks.multiblock",
    "RandomMaskCollator": "distwm.masks.random",
    "DefaultCollator": "distwm.masks.default",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
