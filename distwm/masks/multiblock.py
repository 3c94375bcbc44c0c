"""I-JEPA's multi-block masking (Assran et al. 2023, Sec. 3; facebookresearch/ijepa
``src/masks/multiblock.py``).

For each batch (:meth:`MaskCollator.sample_masks`):

1. one target-block size and one context-block size are drawn from a generator seeded by the
   batch number (the collator's shared iteration counter), so every sample of the batch, every
   DataLoader worker and every rank uses the same sizes at the same iteration: a block of scale
   ``s`` (fraction of the patch grid) and aspect ratio ``r`` is ``round(sqrt(s N r))`` patches
   high and ``round(sqrt(s N / r))`` wide (clipped to the grid); the context block has aspect
   ratio 1;
2. per sample, ``npred`` target blocks are placed uniformly at random, then ``nenc`` context
   blocks, from which every target block is removed (unless ``allow_overlap``); a block must
   keep more than ``min_keep`` patches, and when a context block keeps too few after 20 tries
   the last target region is given back to it (ijepa's retry rule);
3. every mask is truncated to the shortest mask of its kind in the batch, so that the masks
   stack into ``(B, K)`` tensors.

The constructor's defaults are the seed's (its ``pred_mask_scale=(0.5, 1.0)``; ijepa's code has
``(0.2, 0.8)``); the paper's I-JEPA settings are ``enc_mask_scale=(0.85, 1.0)``,
``pred_mask_scale=(0.15, 0.2)``, ``aspect_ratio=(0.75, 1.5)``, ``npred=4`` (:data:`PAPER_SETTINGS`).

Where this differs from the ijepa code, to do what the paper describes: the scale and the
aspect ratio are two independent draws (ijepa reuses one uniform for both, so a large block
always has the largest aspect ratio); a block may be as large as the grid and may touch its last
row and column (ijepa's ``randint(0, H - h)`` never places a block there and its size clip
keeps a block one patch short of the grid; ijepa PR #40).

``seed``: without it the block positions come from torch's global RNG (as in ijepa); with it
from a generator seeded by ``seed`` and the batch number, so masks are reproducible.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from distwm.masks._common import (
    IterationCounter,
    batch_generators,
    check_range,
    collate,
    patch_grid,
)

__all__ = ["PAPER_SETTINGS", "MaskCollator", "MultiblockMaskCollator"]

logger = logging.getLogger(__name__)

#: I-JEPA's ImageNet masking (the paper's Sec. 3 and its configs)
PAPER_SETTINGS = {"enc_mask_scale": (0.85, 1.0), "pred_mask_scale": (0.15, 0.2), "aspect_ratio": (0.75, 1.5),
                  "nenc": 1, "npred": 4, "min_keep": 10, "allow_overlap": False}

_TRIES_PER_REGION = 20


class MaskCollator:
    """Collate samples and draw the batch's multi-block masks.

    ``collator(batch)`` -> ``(collated_batch, masks_enc, masks_pred)``: ``batch`` is a list of
    samples (e.g. ``(image, label)`` pairs, collated with ``default_collate``) or an already
    batched tensor / dict of tensors (passed through); ``masks_enc`` is a list of ``nenc``
    ``(B, K_enc)`` int64 tensors of patch indices (row-major over the ``input_size //
    patch_size`` grid), ``masks_pred`` a list of ``npred`` ``(B, K_pred)`` ones.
    """

    def __init__(self, input_size=(224, 224), patch_size: int = 16, enc_mask_scale=(0.2, 0.8),
                 pred_mask_scale=(0.5, 1.0), aspect_ratio=(0.3, 3.0), nenc: int = 1, npred: int = 2,
                 min_keep: int = 4, allow_overlap: bool = False, *, seed: int | None = None):
        owner = "multiblock.MaskCollator"
        self.patch_size = patch_size
        self.height, self.width = patch_grid(owner, input_size, patch_size)
        self.enc_mask_scale = check_range(owner, "enc_mask_scale", enc_mask_scale, 0.0, 1.0)
        self.pred_mask_scale = check_range(owner, "pred_mask_scale", pred_mask_scale, 0.0, 1.0)
        self.aspect_ratio = check_range(owner, "aspect_ratio", aspect_ratio, 1e-6)
        for name, value, low in (("nenc", nenc, 1), ("npred", npred, 1), ("min_keep", min_keep, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
        self.nenc, self.npred, self.min_keep = nenc, npred, min_keep
        self.allow_overlap = bool(allow_overlap)
        self.seed = seed
        self._itr_counter = IterationCounter()

    def step(self) -> int:
        """The next batch number (shared with the DataLoader workers forked from this process)."""
        return self._itr_counter.next()

    def _sample_block_size(self, generator: torch.Generator, scale, aspect_ratio_scale) -> tuple[int, int]:
        min_s, max_s = scale
        mask_scale = min_s + torch.rand(1, generator=generator).item() * (max_s - min_s)
        max_keep = int(self.height * self.width * mask_scale)
        min_ar, max_ar = aspect_ratio_scale
        aspect_ratio = min_ar + torch.rand(1, generator=generator).item() * (max_ar - min_ar)
        h = int(round(math.sqrt(max_keep * aspect_ratio)))
        w = int(round(math.sqrt(max_keep / aspect_ratio)))
        return min(max(h, 1), self.height), min(max(w, 1), self.width)

    def _check_fits(self, size: tuple[int, int], what: str) -> None:
        if size[0] * size[1] <= self.min_keep:
            raise ValueError(
                f"multiblock.MaskCollator: a {size[0]}x{size[1]} {what} block holds {size[0] * size[1]} patches, "
                f"which is not more than min_keep={self.min_keep}; lower min_keep, raise the mask scale or use "
                f"more patches ({self.height}x{self.width} now)")

    def _sample_block_mask(self, b_size: tuple[int, int], generator: torch.Generator | None,
                           acceptable_regions: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kept patch indices, complement of the block)``."""
        h, w = b_size
        tries, timeout = 0, _TRIES_PER_REGION
        while True:
            top = int(torch.randint(0, self.height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, self.width - w + 1, (1,), generator=generator))
            mask = torch.zeros((self.height, self.width), dtype=torch.int32)
            mask[top:top + h, left:left + w] = 1
            if acceptable_regions is not None:
                for region in acceptable_regions[:max(len(acceptable_regions) - tries, 0)]:
                    mask *= region
            kept = torch.nonzero(mask.flatten()).squeeze(1)
            if len(kept) > self.min_keep:
                break
            timeout -= 1
            if timeout == 0:
                tries, timeout = tries + 1, _TRIES_PER_REGION
                logger.warning("multiblock mask: no valid context block found, giving back target region %d", tries)
        complement = torch.ones((self.height, self.width), dtype=torch.int32)
        complement[top:top + h, left:left + w] = 0
        return kept, complement

    def sample_masks(self, batch_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(masks_enc, masks_pred)`` for the next batch of ``batch_size`` samples."""
        shared, per_sample = batch_generators(self.seed, self.step())
        p_size = self._sample_block_size(shared, self.pred_mask_scale, self.aspect_ratio)
        e_size = self._sample_block_size(shared, self.enc_mask_scale, (1.0, 1.0))
        self._check_fits(p_size, "target")
        self._check_fits(e_size, "context")
        masks_pred, masks_enc = [], []
        for _ in range(batch_size):
            targets, complements = [], []
            for _ in range(self.npred):
                mask, complement = self._sample_block_mask(p_size, per_sample)
                targets.append(mask)
                complements.append(complement)
            masks_pred.append(targets)
            regions = None if self.allow_overlap else complements
            masks_enc.append([self._sample_block_mask(e_size, per_sample, regions)[0] for _ in range(self.nenc)])
        return _stack_truncated(masks_enc), _stack_truncated(masks_pred)

    def __call__(self, batch: Any) -> tuple[Any, list[torch.Tensor], list[torch.Tensor]]:
        collated_batch, batch_size = collate(batch)
        masks_enc, masks_pred = self.sample_masks(batch_size)
        return collated_batch, masks_enc, masks_pred


def _stack_truncated(per_sample: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """``[sample][mask] -> [mask] (B, K)``, every mask cut to the batch's shortest."""
    keep = min(len(m) for masks in per_sample for m in masks)
    return [torch.stack([masks[j][:keep] for masks in per_sample]) for j in range(len(per_sample[0]))]


MultiblockMaskCollator = MaskCollator
