"""World-model families, one module (or package) each; imported lazily."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DreamerAgent": "distwm.models.dreamer",
    "Dreamer": "distwm.models.dreamer",
    "RSSM": "distwm.models.dreamer_rssm",
    "Planet": "distwm.models.planet",
    "RecurrentStateSpaceModel": "distwm.models.planet",
    "ModularRSSM": "distwm.models.modular_rssm",
    "create_modular_rssm": "distwm.models.modular_rssm",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distwm.models' has no attribute {name!r}")
