"""Fields every RL agent config shares: which env, how it is wrapped, seeds, logging and the
single-process loop's cadences."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from distwm.configs.base import ConfigBase

__all__ = ["RLConfig"]


@dataclass
class RLConfig(ConfigBase):
    """Environment and bookkeeping settings shared by Dreamer, PlaNet, IRIS and DIAMOND.

    ``obs_type``: ``state`` (vector observations), ``pixels`` (``image`` uint8 CHW),
    ``both``, or ``auto`` (the backend's natural choice: state for Gymnasium classic control
    and DMC, pixels for Atari).

    Cadences of the single-process ``train()`` (:class:`distwm.loop.TrainLoop`), all in env
    steps (frames, after action repeat):

    * ``eval_interval``: an evaluation of ``eval_episodes`` greedy episodes (``0``: never);
    * ``checkpoint_interval``: a checkpoint (``0``: never);
    * ``log_interval``: a metrics record (``>= 1``).

    ``eval_env_kwargs`` go over ``env_kwargs`` for the evaluation envs (:meth:`for_evaluation`),
    e.g. Atari 100k's whole games and single no-op start in evaluation.

    On Ray the runtime's config (``distwm.configs.runtime_config``) sets these instead.
    """

    env: str = "walker-walk"
    env_backend: str = "auto"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    obs_type: Literal["auto", "state", "pixels", "both"] = "auto"
    image_size: int = 64
    action_repeat: int = 2
    time_limit: int = 1000
    seed: int = 0
    device: str = "auto"
    log_dir: str = "runs"

    # -- single-process cadences (env steps) ----------------------------------------------------
    eval_interval: int = 10_000
    eval_episodes: int = 5
    checkpoint_interval: int = 50_000
    log_interval: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, low in (("eval_interval", 0), ("checkpoint_interval", 0), ("eval_episodes", 1),
                          ("log_interval", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "an integer >= 0 (env steps, 0: never)" if low == 0 else "a positive integer"
                raise ValueError(f"{type(self).__name__}.{name} must be {what}, got {value!r}")

    def for_evaluation(self) -> "RLConfig":
        """This config with :attr:`eval_env_kwargs` over ``env_kwargs``: what evaluation envs
        are built from (the runtime's evaluator and every family's single-process loop)."""
        if not self.eval_env_kwargs:
            return self
        return self.replace(env_kwargs={**dict(self.env_kwargs or {}), **self.eval_env_kwargs})
