"""Re-exports :mod:`distwm.models.planet.env` (PlanetEnv, TorchImageEnvWrapper)."""

from distwm.models.planet.env import (PlanetEnv, TorchImageEnvWrapper, action_space_info, planet_observation_key,
                                      resolve_device)

__all__ = ["PlanetEnv", "TorchImageEnvWrapper", "resolve_device", "planet_observation_key", "action_space_info"]
