"""Random patch masking (facebookresearch/ijepa ``src/masks/random.py``): per batch one masking
ratio drawn from ``ratio`` (by a generator seeded by the batch number, so the batch's masks have
one length); per sample a random permutation of the patches, whose first ``(1 - ratio)``
fraction is the context and the rest the prediction targets.

``seed``: without it the permutations come from torch's global RNG (as in ijepa); with it from a
generator seeded by ``seed`` and the batch number.
"""

from __future__ import annotations

from typing import Any

import torch

from distwm.masks._common import (
    IterationCounter,
    batch_generators,
    check_range,
    collate,
    patch_grid,
)

__all__ = ["MaskCollator", "RandomMaskCollator"]


class MaskCollator:
    """``collator(batch)`` -> ``(collated_batch, [masks_enc (B, K_enc)], [masks_pred (B, N - K_enc)])``
    (each a one-element list, as in ijepa); ``batch`` as for the multi-block collator."""

    def __init__(self, ratio=(0.4, 0.6), input_size=(224, 224), patch_size: int = 16, *,
                 seed: int | None = None):
        self.patch_size = patch_size
        self.height, self.width = patch_grid("random.MaskCollator", input_size, patch_size)
        self.ratio = check_range("random.MaskCollator", "ratio", ratio, 0.0, 1.0)
        self.seed = seed
        self._itr_counter = IterationCounter()

    def step(self) -> int:
        """The next batch number (shared with the DataLoader workers forked from this process)."""
        return self._itr_counter.next()

    def sample_masks(self, batch_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``([masks_enc], [masks_pred])`` for the next batch of ``batch_size`` samples."""
        shared, per_sample = batch_generators(self.seed, self.step())
        low, high = self.ratio
        ratio = low + torch.rand(1, generator=shared).item() * (high - low)
        num_patches = self.height * self.width
        num_keep = int(num_patches * (1.0 - ratio))
        perms = [torch.randperm(num_patches, generator=per_sample) for _ in range(batch_size)]
        return [torch.stack([p[:num_keep] for p in perms])], [torch.stack([p[num_keep:] for p in perms])]

    def __call__(self, batch: Any) -> tuple[Any, list[torch.Tensor], list[torch.Tensor]]:
        collated_batch, batch_size = collate(batch)
        masks_enc, masks_pred = self.sample_masks(batch_size)
        return collated_batch, masks_enc, masks_pred


RandomMaskCollator = MaskCollator
