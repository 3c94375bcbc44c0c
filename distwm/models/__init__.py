"""World-model families, one module (or package) each; imported lazily."""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    "DreamerAgent": "distwm.models.dreamer",
    "Dreamer": "distwm.models.dreamer",
    "RSSM": "distwm.models.dreamer_rssm",
    "Planet": "distwm.models.planet",
    "RecurrentStateSpaceModel": "distwm.models.rssm",
    "PlanetAgent": "distwm.models.planet_agent",
    "ModularRSSM": "distwm.models.modular_rssm",
    "create_modular_rssm": "distwm.models.modular_rssm",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
