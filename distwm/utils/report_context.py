"""What every family's ``report(batch)`` runs in: eval mode (restored after), a forked seeded
torch RNG (a report never changes training's randomness), and the batch it is given."""

from __future__ import annotations

import contextlib
from typing import Any, Mapping

import torch

__all__ = ["eval_mode", "seeded", "unwrap_sample"]


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """``module.eval()`` inside the block; every submodule's own mode is restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device):
    """A forked torch RNG seeded with ``seed`` (``None``: the global RNG, unforked)."""
    if seed is None:
        yield
        return
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def unwrap_sample(batch: Mapping[str, Any], name: str = "sequences") -> Mapping[str, Any]:
    """A ``(B, T, ...)`` batch, or ``{name: batch}`` as ``update`` receives it."""
    if "is_first" not in batch and isinstance(batch.get(name), Mapping):
        return batch[name]
    return batch
