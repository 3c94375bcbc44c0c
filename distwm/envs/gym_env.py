"""Any Gymnasium environment with distwm's observation and action conventions.

Vector observations (any space Gymnasium can flatten: Box, Discrete, Dict of them, ...) become
``state`` float32; image observations (uint8 ``(H, W[, C])``) and ``render()`` frames become
``image`` uint8 ``(C, H, W)``. Discrete actions are one-hot vectors, bounded continuous actions
live in ``[-1, 1]``. With ``obs_type="state"`` the env is created without a render mode and
never renders.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from distwm.envs.base import AdapterEnv, ObsFormat, as_size, check_obs_type, to_hwc_image
from distwm.envs.wrappers import standardize_actions

__all__ = ["GymImageEnv", "make_gym_env", "is_image_space"]


def is_image_space(space: gymnasium.Space) -> bool:
    """Whether observations of ``space`` are frames: uint8 ``(H, W)`` or ``(H, W, 1|3|4)``."""
    if not isinstance(space, gymnasium.spaces.Box) or space.dtype != np.uint8:
        return False
    return len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[-1] in (1, 3, 4))


def _resolve_obs_type(obs_type: str, image_obs: bool) -> str:
    check_obs_type(obs_type)
    if obs_type == "auto":
        return "pixels" if image_obs else "state"
    if image_obs and obs_type in ("state", "both"):
        raise ValueError(
            f"obs_type={obs_type!r} needs a vector observation, but this env observes images; "
            "use obs_type='pixels' (or a RAM/state variant of the env)"
        )
    return obs_type


class GymImageEnv(AdapterEnv):
    """Gymnasium env -> distwm conventions (see the module docstring).

    ``env``: a registered id (``"Pendulum-v1"``) or a built ``gymnasium.Env``. ``size``:
    ``(height, width)`` of ``image`` (``None``: native size of image observations). A built env
    must have ``render_mode="rgb_array"`` when images have to come from ``render()``.
    ``obs_type``: ``pixels`` (default, as the class name says), ``state``, ``both`` or
    ``auto`` (pixels for image-observation envs, state otherwise). ``gym_kwargs`` go to
    ``gymnasium.make``.
    """

    def __init__(self, env: str | gymnasium.Env, seed: int = 0, size: int | tuple[int, int] | None = (64, 64),
                 render_mode: str | None = "rgb_array", obs_type: str = "pixels",
                 gym_kwargs: dict[str, Any] | None = None):
        super().__init__(seed)
        check_obs_type(obs_type)
        if isinstance(env, str):
            from distwm.envs.robotics_env import make_gymnasium_env_with_robotics_fallback

            # "auto" and "state" never render (auto is pixels only for image-observation envs)
            mode = render_mode if obs_type in ("pixels", "both") else None
            env = make_gymnasium_env_with_robotics_fallback(env, render_mode=mode, gym_kwargs=gym_kwargs)
        elif not isinstance(env, gymnasium.Env):
            raise ValueError(f"env must be a Gymnasium id or a gymnasium.Env, got {type(env).__name__}")
        raw_space = env.observation_space
        image_obs = is_image_space(raw_space)
        obs_type = _resolve_obs_type(obs_type, image_obs)
        self._image_from_obs = image_obs
        if obs_type in ("pixels", "both") and not image_obs and env.render_mode != "rgb_array":
            raise ValueError(
                f"obs_type={obs_type!r} renders images, which needs render_mode='rgb_array' "
                f"(the env has render_mode={env.render_mode!r})"
            )
        self._raw_space = raw_space
        state_dim = None if image_obs else int(gymnasium.spaces.flatdim(raw_space))
        channels = (raw_space.shape[-1] if len(raw_space.shape) == 3 else 1) if image_obs else 3
        if size is None:
            if not image_obs:
                raise ValueError("size=None (native resolution) needs an env that observes images")
            size = raw_space.shape[:2]
        size = as_size(size)
        self._format = ObsFormat(obs_type, size, state_dim, channels)
        self.env = standardize_actions(env)
        self.action_space = self.env.action_space
        spec = getattr(env, "spec", None)
        self._max_episode_steps = (spec.max_episode_steps if spec is not None else None) or 1000

    @property
    def max_episode_steps(self) -> int:
        return self._max_episode_steps

    @property
    def unwrapped_env(self) -> gymnasium.Env:
        """The Gymnasium env this adapter drives (without the action wrappers)."""
        return self.env.unwrapped

    def _observation(self, raw: Any) -> dict[str, np.ndarray]:
        if self._image_from_obs:
            return self._format(frame=raw)
        state = gymnasium.spaces.flatten(self._raw_space, raw) if self._format.wants_state else None
        frame = self.env.render() if self._format.wants_image else None
        return self._format(state=state, frame=frame)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = self._episode_seed(seed)
        raw, info = self.env.reset(seed=seed, options=options)
        return self._observation(raw), info

    def step(self, action):
        raw, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(raw), float(reward), bool(terminated), bool(truncated), info

    def render(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """The current frame, uint8 ``(H, W, C)`` at ``size`` (the seed's ``render(*args,
        **kwargs)``; like every distwm adapter it renders the one ``rgb_array`` frame, so the
        arguments change nothing)."""
        if self.env.render_mode != "rgb_array":
            raise ValueError("This env was created without render_mode='rgb_array' (obs_type='state')")
        return to_hwc_image(self.env.render(), self._format.size)

    def close(self) -> None:
        self.env.close()


def make_gym_env(env: str | gymnasium.Env, *, seed: int = 0, size: int | tuple[int, int] = (64, 64),
                 render_mode: str | None = "rgb_array", obs_type: str = "auto",
                 gym_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> GymImageEnv:
    """Create a :class:`GymImageEnv` for a Gymnasium id or env (the ``gym`` backend factory).

    ``obs_type="auto"`` gives ``state`` for vector-observation envs (nothing is rendered) and
    ``pixels`` for image-observation envs. Extra ``kwargs`` go to ``gymnasium.make``.
    """
    gym_kwargs = {**(gym_kwargs or {}), **kwargs}
    return GymImageEnv(env, seed=seed, size=size, render_mode=render_mode, obs_type=obs_type,
                       gym_kwargs=gym_kwargs)
