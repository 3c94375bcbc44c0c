"""Dataclass configs with strict dict/YAML round trips (see :mod:`distwm.configs.base`)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ConfigBase": "distwm.configs.base",
    "RLConfig": "distwm.configs.rl_config",
    "DreamerConfig": "distwm.configs.dreamer_config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distwm.configs' has no attribute {name!r}")
