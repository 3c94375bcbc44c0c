"""Torch device names: ``"auto"`` resolves to CUDA when there is one."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["resolve_device"]


def resolve_device(device: Any) -> torch.device:
    """``"auto"`` (or ``None``) -> CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
