"""Re-exports :mod:`distwm.models.planet.env` (PlanetEnv, PlanetImageEnv)."""

from distwm.models.planet.env import (PlanetEnv, PlanetImageEnv, action_space_info, planet_observation_key,
                                      resolve_device)

__all__ = ["PlanetEnv", "PlanetImageEnv", "resolve_device", "planet_observation_key", "action_space_info"]
