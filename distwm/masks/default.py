"""The collator without masks (facebookresearch/ijepa ``src/masks/default.py``)."""

from __future__ import annotations

from typing import Any

from distwm.masks._common import collate

__all__ = ["DefaultCollator"]


class DefaultCollator:
    """``collator(batch)`` -> ``(collated_batch, None, None)``: the JEPA collators' return shape
    with masking off (``batch``: a list of samples, or a batched tensor / dict passed through)."""

    def __call__(self, batch: Any) -> tuple[Any, None, None]:
        return collate(batch)[0], None, None
