"""What the mask collators share: the batch they collate, the patch grid they mask and the
iteration counter that seeds each batch's shared choices."""

from __future__ import annotations

from collections.abc import Mapping
from multiprocessing import Value
from typing import Any

import numpy as np
import torch

__all__ = ["IterationCounter", "batch_generators", "check_range", "collate", "patch_grid"]


def collate(batch: Any) -> tuple[Any, int]:
    """``(collated batch, batch size)``: a list of samples goes through
    ``torch.utils.data.default_collate``; an already batched tensor ``(B, ...)`` or a dict of
    them (``{"image": (B, C, H, W), "label": (B,)}``) is returned as it is."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            raise ValueError("a mask collator needs a batch, got a 0-d tensor")
        return batch, int(batch.shape[0])
    if isinstance(batch, Mapping):
        if not batch:
            raise ValueError("a mask collator needs a batch, got an empty dict")
        return batch, len(next(iter(batch.values())))
    if len(batch) == 0:
        raise ValueError("a mask collator needs a batch, got no samples")
    return torch.utils.data.default_collate(batch), len(batch)


def patch_grid(owner: str, input_size, patch_size: int) -> tuple[int, int]:
    """The ``(height, width)`` patch grid of ``input_size`` (an int or a pair) images."""
    size = tuple(input_size) if isinstance(input_size, (tuple, list)) else (input_size, input_size)
    if len(size) != 2 or isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"{owner}: input_size must be an int or (H, W) and patch_size a positive int, "
                         f"got input_size={input_size!r}, patch_size={patch_size!r}")
    height, width = int(size[0]) // patch_size, int(size[1]) // patch_size
    if height < 1 or width < 1:
        raise ValueError(f"{owner}: input_size {size} holds no {patch_size}x{patch_size} patch")
    return height, width


def check_range(owner: str, name: str, value, low: float, high: float | None = None) -> tuple[float, float]:
    """``value`` as a ``(min, max)`` pair with ``low <= min <= max`` (``<= high`` when given)."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a (min, max) pair, got {value!r}") from None
    if not (low <= lo <= hi and (high is None or hi <= high)):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: {name} {value!r} must satisfy min <= max within {bound}")
    return lo, hi


class IterationCounter:
    """A counter shared with the DataLoader worker processes a collator is forked into (ijepa's
    ``multiprocessing.Value``), so that the workers number their batches in one sequence.
    Pickling (spawned workers, Ray) copies the current value into a new counter."""

    def __init__(self, start: int = -1):
        self._value = Value("i", start)

    def next(self) -> int:
        with self._value.get_lock():
            self._value.value += 1
            return self._value.value

    @property
    def value(self) -> int:
        return self._value.value

    def __getstate__(self) -> dict:
        return {"value": self._value.value}

    def __setstate__(self, state: dict) -> None:
        self._value = Value("i", state["value"])


def batch_generators(seed: int | None, iteration: int) -> tuple[torch.Generator, torch.Generator | None]:
    """``(shared, per_sample)`` generators of one batch. ``shared`` (block sizes, ratios) is
    seeded by the iteration, as in ijepa, so every worker and rank draws the same sizes for the
    same batch number (offset by ``seed`` when one is given). ``per_sample`` (block positions,
    permutations) is torch's global RNG (``None``, as ijepa) without ``seed``, else seeded by
    ``seed`` and the iteration, so that a seeded collator is deterministic in any worker."""
    if seed is None:
        return torch.Generator().manual_seed(iteration), None
    # torch's CPU generator keeps 32 bits of a seed: mix (seed, iteration) into 32-bit seeds
    shared_seed, sample_seed = np.random.SeedSequence([int(seed) % (1 << 63), iteration]).generate_state(2)
    return torch.Generator().manual_seed(int(shared_seed)), torch.Generator().manual_seed(int(sample_seed))
