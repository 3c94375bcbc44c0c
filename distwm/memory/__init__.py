"""Replay data structures (pure numpy, no Ray); names load lazily."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ReplayBuffer": "distwm.memory.dreamer_memory",
    "REPLAY_KEYS": "distwm.memory.dreamer_memory",
    "SequenceReplay": "distwm.memory.replay",
    "Memory": "distwm.memory.planet_memory",
    "Episode": "distwm.memory.planet_memory",
    "IRISReplayBuffer": "distwm.memory.iris_memory",
    "IRISOnPolicyBuffer": "distwm.memory.iris_memory",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distwm.memory' has no attribute {name!r}")
