"""Build the fully wrapped training env that an ``RLConfig`` describes."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from distwm.envs.wrappers import ActionRepeat, TimeLimit, standardize_actions

__all__ = ["make_env_from_config"]


def make_env_from_config(config: Any, seed: int | None = None) -> gymnasium.Env:
    """``config.env`` through its backend, then ActionRepeat -> NormalizeActions/OneHotAction
    -> TimeLimit(``time_limit // action_repeat``).

    The backend is resolved by :func:`distwm.registry.make_env` (so registered backends count) with
    ``backend=config.env_backend``, ``seed`` (default ``config.seed``), ``size=(image_size,
    image_size)``, ``obs_type=config.obs_type`` and ``config.env_kwargs``. The result observes
    a ``gymnasium.spaces.Dict`` (``image`` uint8 CHW and/or ``state`` float32) and acts with
    float32 ``Box`` vectors. ``time_limit <= 0`` means no time limit of its own.
    """
    from distwm.registry import make_env

    action_repeat = int(config.action_repeat)
    if action_repeat < 1:
        raise ValueError(f"action_repeat must be >= 1, got {config.action_repeat!r}")
    seed = config.seed if seed is None else seed
    kwargs = {"seed": seed, "size": (int(config.image_size), int(config.image_size)),
              "obs_type": config.obs_type, **dict(config.env_kwargs or {})}
    env = make_env(config.env, backend=config.env_backend, **kwargs)
    if not isinstance(env.observation_space, gymnasium.spaces.Dict):
        env.close()
        raise ValueError(
            f"The env built for {config.env!r} observes {env.observation_space}; distwm needs dict "
            "observations ('image' uint8 CHW and/or 'state' float32). Make the backend factory "
            "return them, e.g. with distwm.envs.wrappers.ObsDict"
        )
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    env = standardize_actions(env)
    if not (isinstance(env.action_space, gymnasium.spaces.Box) and env.action_space.dtype == np.float32):
        raise ValueError(f"Expected a float32 Box action space after wrapping, got {env.action_space}")
    if config.time_limit and config.time_limit > 0:
        env = TimeLimit(env, max(1, int(config.time_limit) // action_repeat))
    return env
