"""Fields every RL agent config shares: which env, how it is wrapped, seeds and logging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from distwm.configs.base import ConfigBase

__all__ = ["RLConfig"]


@dataclass
class RLConfig(ConfigBase):
    """Environment and bookkeeping settings shared by Dreamer, PlaNet, IRIS and DIAMOND.

    ``obs_type``: ``state`` (vector observations), ``pixels`` (``image`` uint8 CHW),
    ``both``, or ``auto`` (the backend's natural choice: state for Gymnasium classic control
    and DMC, pixels for Atari).
    """

    env: str = "walker-walk"
    env_backend: str = "auto"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    obs_type: Literal["auto", "state", "pixels", "both"] = "auto"
    image_size: int = 64
    action_repeat: int = 2
    time_limit: int = 1000
    seed: int = 0
    device: str = "auto"
    log_dir: str = "runs"
