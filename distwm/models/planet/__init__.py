"""PlaNet (Hafner et al. 2019, arXiv:1811.04551) as a family package.

* :mod:`~distwm.models.planet.core`: :class:`PlanetCore`, the protocol class (an
  :class:`distwm.agent.Agent`) that the runtime and :class:`Planet` drive;
* :mod:`~distwm.models.planet.networks` / :mod:`~distwm.models.planet.heads`: the RSSM and
  its reward / value heads;
* :mod:`~distwm.models.planet.losses`: the bound and its one optimisation step;
* :mod:`~distwm.models.planet.env`: the torch env interface of the seed's rollouts;
* :mod:`~distwm.models.planet.checkpoint`: the one checkpoint format, ``distwm.planet/1``;
* :mod:`~distwm.models.planet.episodes`: episodes in the one training loop;
* :mod:`~distwm.models.planet.trainer`: :class:`Planet`, the seed's single-process wrapper.
"""

from distwm.models.planet.checkpoint import ARCHITECTURE_FIELDS, CHECKPOINT_FORMAT
from distwm.models.planet.core import PlanetCore
from distwm.models.planet.env import PlanetEnv, PlanetImageEnv
from distwm.models.planet.heads import RewardModel, ValueModel
from distwm.models.planet.networks import RecurrentStateSpaceModel
from distwm.models.planet.trainer import SCHEDULER_TYPES, Planet, make_scheduler

__all__ = ["Planet", "PlanetCore", "RecurrentStateSpaceModel", "RewardModel", "ValueModel", "PlanetEnv",
           "PlanetImageEnv", "SCHEDULER_TYPES", "make_scheduler", "CHECKPOINT_FORMAT",
           "ARCHITECTURE_FIELDS"]
