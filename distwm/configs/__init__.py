"""Dataclass configs with strict dict/YAML round trips (see :mod:`distwm.configs.base`)."""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    "ConfigBase": "distwm.configs.base",
    "RLConfig": "distwm.configs.rl_config",
    "DreamerConfig": "distwm.configs.dreamer_config",
    "PlanetConfig": "distwm.configs.planet_config",
    "IRISConfig": "distwm.configs.iris_config",
    "DiamondConfig": "distwm.configs.diamond_config",
    "DiTConfig": "distwm.configs.dit_config",
    "JEPAConfig": "distwm.configs.jepa_config",
    **dict.fromkeys(("GenieConfig", "GenieSmallConfig", "STTransformerConfig", "VideoTokenizerConfig",
                     "LatentActionModelConfig", "DynamicsModelConfig"), "distwm.configs.genie_config"),
    "get_dit_config": "distwm.configs.dit_config",
    "RuntimeConfig": "distwm.configs.runtime_config",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
