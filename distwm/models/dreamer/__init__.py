"""Dreamer V1, V2 and V3 (the seed's ``models.dreamer`` module).

* :class:`DreamerCore` (the seed's name: :class:`Dreamer`): world model + imagination
  actor-critic; the protocol class of :mod:`distwm.agent` (``DreamerConfig.AGENT_CLASS``);
* :class:`DreamerAgent`: the single-process experiment API (``train()``, ``evaluate()``);
* :func:`make_env`, :func:`preprocess_obs`, :func:`get_available_memory`: helpers of the seed;
* :class:`~distwm.agent.NonFiniteLossError`: raised after ``max_nonfinite_updates``
  consecutive skipped updates.
"""

from distwm.agent import NonFiniteLossError
from distwm.models.dreamer.agent import DreamerAgent, get_available_memory, make_env
from distwm.models.dreamer.core import Dreamer, DreamerCore
from distwm.models.dreamer.world_model import preprocess_obs

__all__ = ["Dreamer", "DreamerAgent", "DreamerCore", "NonFiniteLossError", "get_available_memory",
           "make_env", "preprocess_obs"]
