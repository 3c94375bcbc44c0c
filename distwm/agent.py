"""The agent protocol that the single-process loop and the Ray runtime both drive.

Every RL agent family (Dreamer, PlaNet, IRIS, DIAMOND, ...) implements :class:`Agent`.
The runtime (``distwm.runtime``) only ever talks to this protocol, so it knows nothing
about any particular algorithm. This module imports neither torch nor ray.

Data conventions (DESIGN.md "Data"):

* an observation is a dict of numpy arrays: ``image`` uint8 ``(C, H, W)`` and/or ``state``
  float32 ``(D,)``; batched with a leading env axis ``(N, ...)`` when acting;
* an action is a float32 vector: one-hot for discrete action spaces, in ``[-1, 1]`` for
  continuous ones;
* a replay batch is a dict of numpy arrays shaped ``(B, T, ...)`` with keys ``image`` and/or
  ``state``, ``action``, ``reward``, ``is_first``, ``is_terminal``, ``is_last``. The action
  at index ``t`` is the action that *led to* observation ``t`` (zero at ``is_first``), as
  in DreamerV3's replay format.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

__all__ = ["Agent", "DataSpec", "import_object"]


@dataclass(frozen=True)
class DataSpec:
    """What one replay sample is and how much replay the algorithm wants.

    ``train_ratio`` is replayed steps per env step (DreamerV3's ``train_ratio``): with
    ``batch_size * seq_len`` steps per update, the learner performs
    ``env_steps * train_ratio / (batch_size * seq_len)`` updates.
    """

    batch_size: int
    seq_len: int
    train_ratio: float

    @property
    def steps_per_update(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def updates_per_env_step(self) -> float:
        return self.train_ratio / self.steps_per_update


@runtime_checkable
class Agent(Protocol):
    """The contract between an agent family and whoever trains it.

    Construction: ``AgentClass.from_config(config, observation_space, action_space,
    device="cpu")`` where the spaces are the env adapter's (``gymnasium.spaces.Dict`` and a
    ``Box`` of action vectors).
    """

    # -- data ---------------------------------------------------------------------------
    def data_spec(self) -> DataSpec: ...

    # -- acting (runs on CPU inside env workers) ----------------------------------------
    def initial_state(self, num_envs: int) -> Any: ...

    def act(self, obs: Mapping[str, Any], state: Any, explore: bool) -> tuple[Any, Any]:
        """Return ``(actions (N, A) float32 numpy, new_state)``.

        ``obs`` carries ``is_first`` (N,) bool: the agent resets the recurrent state of the
        envs where it is set.
        """

    def get_weights(self) -> dict[str, Any]:
        """CPU-only state dict of what acting needs (policy and world model)."""

    def set_weights(self, weights: Mapping[str, Any]) -> None: ...

    # -- learning ------------------------------------------------------------------------
    def update(self, batch: Mapping[str, Any]) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimizers, counters."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def import_object(path: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"Bad import path {path!r}: expected 'package.module:attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ImportError(f"{module_name!r} has no attribute {attr!r} (from {path!r})") from exc
