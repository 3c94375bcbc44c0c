"""DIAMOND's model-size presets (``ModelPreset``: ``paper`` is the reference architecture) and
the default device, as ``distwm.configs.diamond_config`` exports them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PRESETS", "ModelPreset", "get_default_device"]


def get_default_device() -> str:
    """The best torch device here: ``cuda``, else ``mps``, else ``cpu`` (``device='auto'``)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


@dataclass
class ModelPreset:
    """Model architecture preset for different hardware tiers."""

    diffusion_channels: list[int]
    diffusion_res_blocks: int
    diffusion_cond_dim: int
    reward_channels: list[int]
    reward_lstm_dim: int
    actor_channels: list[int]
    actor_lstm_dim: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: ``paper`` is the reference architecture (the defaults); the others shrink it for smaller GPUs
#: (``medium``, ``small``) and for CPU smoke runs (``tiny``).
PRESETS: dict[str, ModelPreset] = {
    "paper": ModelPreset([64, 64, 64, 64], 2, 256, [32, 32, 32, 32], 512, [32, 32, 64, 64], 512),
    "medium": ModelPreset([48, 48, 48, 48], 2, 192, [32, 32, 32, 32], 384, [32, 32, 64, 64], 384),
    "small": ModelPreset([32, 32, 32, 32], 1, 128, [16, 16, 16, 16], 256, [16, 16, 32, 32], 256),
    "tiny": ModelPreset([16, 16, 16, 16], 1, 64, [8, 8, 8, 8], 64, [8, 8, 16, 16], 64),
}
