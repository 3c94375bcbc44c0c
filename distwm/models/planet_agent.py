"""The seed-era path of PlaNet's protocol class: :class:`~distwm.models.planet.core.PlanetCore`
(``PlanetAgent`` is the same class)."""

from distwm.models.planet.core import PlanetCore
from distwm.models.planet.env import action_space_info, planet_observation_key, resolve_device

PlanetAgent = PlanetCore

__all__ = ["PlanetAgent", "PlanetCore", "resolve_device", "planet_observation_key", "action_space_info"]
