"""Gymnasium wrappers of the Dreamer family, with the Gymnasium 1.x step API.

``step`` returns ``(obs, reward, terminated, truncated, info)``. ``terminated`` means the MDP
ended; ``truncated`` means a time limit cut the episode (value targets bootstrap through it).
"""

from __future__ import annotations

import datetime
import uuid as _uuid
from typing import Any, Hashable

import gymnasium
import numpy as np

from distwm.envs.base import as_size, to_chw_image

__all__ = [
    "ActionRepeat",
    "NormalizeActions",
    "ObsDict",
    "OneHotAction",
    "OneHotBox",
    "RenderImage",
    "ResizeImage",
    "RewardObs",
    "SelectAction",
    "TimeLimit",
    "UUID",
    "standardize_actions",
]


class TimeLimit(gymnasium.Wrapper):
    """End episodes after ``duration`` steps by setting ``truncated`` (never ``terminated``).

    If the env reports no ``discount`` at the time limit, ``info["discount"] = 1.0`` is added
    so learners that read it bootstrap through the cut. Stepping after an episode ended
    without ``reset()`` raises ``RuntimeError``.
    """

    def __init__(self, env: gymnasium.Env, duration: int | None):
        super().__init__(env)
        if duration is not None and (not isinstance(duration, (int, np.integer)) or duration <= 0):
            raise ValueError(f"TimeLimit duration must be a positive int or None, got {duration!r}")
        self._duration = None if duration is None else int(duration)
        self._step: int | None = None

    @property
    def duration(self) -> int | None:
        return self._duration

    def step(self, action):
        if self._step is None:
            raise RuntimeError("TimeLimit: call reset() before step() (the episode has ended)")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        if self._duration is not None and self._step >= self._duration:
            truncated = True
            if not terminated:
                info = {**info}
                info.setdefault("discount", np.float32(1.0))
        if terminated or truncated:
            self._step = None
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._step = 0
        return self.env.reset(seed=seed, options=options)


class ActionRepeat(gymnasium.Wrapper):
    """Repeat each action ``amount`` times, summing rewards; stop early when the episode ends."""

    def __init__(self, env: gymnasium.Env, amount: int):
        super().__init__(env)
        if not isinstance(amount, (int, np.integer)) or amount < 1:
            raise ValueError(f"ActionRepeat amount must be an int >= 1, got {amount!r}")
        self._amount = int(amount)

    @property
    def amount(self) -> int:
        return self._amount

    def step(self, action):
        total = 0.0
        for _ in range(self._amount):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class NormalizeActions(gymnasium.Wrapper):
    """Expose ``[-1, 1]`` for every bounded dimension of a ``Box`` action space.

    Incoming actions are clipped to ``[-1, 1]`` and mapped affinely onto the wrapped bounds;
    unbounded dimensions pass through unchanged.
    """

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gymnasium.spaces.Box):
            raise ValueError(f"NormalizeActions needs a Box action space, got {space}")
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        self._mask = np.isfinite(low) & np.isfinite(high)
        self._low = np.where(self._mask, low, -1.0)
        self._high = np.where(self._mask, high, 1.0)
        self._env_dtype = space.dtype
        self.action_space = gymnasium.spaces.Box(
            np.where(self._mask, -1.0, low).astype(np.float32),
            np.where(self._mask, 1.0, high).astype(np.float32),
            dtype=np.float32,
        )

    def action(self, action) -> np.ndarray:
        """Map a normalized action onto the wrapped env's bounds."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"Action of shape {action.shape} does not match the action space shape "
                f"{self.action_space.shape}"
            )
        clipped = np.clip(action, -1.0, 1.0)
        mapped = (clipped + 1.0) / 2.0 * (self._high - self._low) + self._low
        return np.where(self._mask, mapped, action).astype(self._env_dtype)

    def step(self, action):
        return self.env.step(self.action(action))


class OneHotBox(gymnasium.spaces.Box):
    """``Box(0, 1, (n,), float32)`` whose samples and members are one-hot vectors."""

    def __init__(self, n: int, seed: int | np.random.Generator | None = None):
        super().__init__(0.0, 1.0, (int(n),), np.float32, seed=seed)
        self.n = int(n)

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        index = int(self.np_random.integers(self.n))
        return one_hot(index, self.n)

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        return x.shape == (self.n,) and bool(np.isin(x, (0, 1)).all()) and float(x.sum()) == 1.0

    def __repr__(self) -> str:
        return f"OneHotBox({self.n})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, OneHotBox) and other.n == self.n


def one_hot(index: int, n: int) -> np.ndarray:
    vector = np.zeros(n, np.float32)
    vector[index] = 1.0
    return vector


class OneHotAction(gymnasium.Wrapper):
    """Accept one-hot float vectors for a ``Discrete`` env and forward the integer index.

    A vector that is not exactly one-hot (one 1, the rest 0) raises ``ValueError``.
    """

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gymnasium.spaces.Discrete):
            raise ValueError(f"OneHotAction needs a Discrete action space, got {space}")
        self._start = int(space.start)
        self.action_space = OneHotBox(int(space.n))

    def action(self, action) -> int:
        """The integer action a one-hot vector stands for."""
        vector = np.asarray(action)
        n = self.action_space.n
        if vector.shape != (n,):
            raise ValueError(f"Expected a one-hot action of shape ({n},), got shape {vector.shape}")
        index = int(np.argmax(vector))
        if not np.array_equal(vector.astype(np.float32), one_hot(index, n)):
            raise ValueError(f"Expected a one-hot action vector, got {vector.tolist()}")
        return index + self._start

    def step(self, action):
        return self.env.step(self.action(action))


def standardize_actions(env: gymnasium.Env) -> gymnasium.Env:
    """Wrap ``env`` so that actions are float32 vectors: one-hot or in ``[-1, 1]``.

    ``Discrete`` -> :class:`OneHotAction`; a ``Box`` with a finite bound other than
    ``[-1, 1]`` (or not float32) -> :class:`NormalizeActions`; otherwise ``env`` unchanged.
    """
    space = env.action_space
    if isinstance(space, gymnasium.spaces.Discrete):
        return OneHotAction(env)
    if isinstance(space, gymnasium.spaces.Box):
        if isinstance(space, OneHotBox):
            return env
        finite = np.isfinite(space.low) & np.isfinite(space.high)
        unit = np.all(space.low[finite] == -1.0) and np.all(space.high[finite] == 1.0)
        if unit and space.dtype == np.float32:
            return env
        return NormalizeActions(env)
    raise ValueError(
        f"Unsupported action space {space}: distwm agents act with Discrete or Box actions"
    )


class ObsDict(gymnasium.Wrapper):
    """Put a non-dict observation under ``key`` of a dict observation."""

    def __init__(self, env: gymnasium.Env, key: str = "obs"):
        super().__init__(env)
        self._key = key
        self.observation_space = gymnasium.spaces.Dict({key: env.observation_space})

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {self._key: obs}, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return {self._key: obs}, info


def _dict_space(env: gymnasium.Env, wrapper: str) -> gymnasium.spaces.Dict:
    space = env.observation_space
    if not isinstance(space, gymnasium.spaces.Dict):
        raise ValueError(f"{wrapper} needs dict observations; wrap the env with ObsDict first (got {space})")
    return space


class RewardObs(gymnasium.Wrapper):
    """Add the last reward to the observation as ``obs["reward"]`` (float32, shape (1,))."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        spaces = dict(_dict_space(env, "RewardObs").spaces)
        spaces["reward"] = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.observation_space = gymnasium.spaces.Dict(spaces)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {**obs, "reward": np.array([reward], np.float32)}, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return {**obs, "reward": np.zeros(1, np.float32)}, info


def _is_chw_image(space: gymnasium.Space) -> bool:
    return isinstance(space, gymnasium.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


class ResizeImage(gymnasium.Wrapper):
    """Resize every uint8 ``(C, H, W)`` entry of a dict observation to ``size`` (nearest neighbour)."""

    def __init__(self, env: gymnasium.Env, size: int | tuple[int, int] = (64, 64)):
        super().__init__(env)
        self._size = as_size(size)
        spaces = dict(_dict_space(env, "ResizeImage").spaces)
        self._keys = [k for k, s in spaces.items() if _is_chw_image(s) and s.shape[1:] != self._size]
        for key in self._keys:
            spaces[key] = gymnasium.spaces.Box(0, 255, (spaces[key].shape[0], *self._size), np.uint8)
        self.observation_space = gymnasium.spaces.Dict(spaces)

    @property
    def obs_space(self) -> gymnasium.spaces.Dict:
        return self.observation_space

    def _resize(self, obs: dict) -> dict:
        obs = dict(obs)
        for key in self._keys:
            obs[key] = to_chw_image(np.asarray(obs[key]).transpose(1, 2, 0), self._size, "nearest")
        return obs

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._resize(obs), reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._resize(obs), info


class RenderImage(gymnasium.Wrapper):
    """Add ``env.render()`` (an ``rgb_array`` frame) as ``obs[key]``, uint8 ``(3, H, W)`` at ``size``.

    The env must have been created with ``render_mode="rgb_array"``.
    """

    def __init__(self, env: gymnasium.Env, key: str = "image", size: int | tuple[int, int] = (64, 64)):
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"RenderImage needs an env with render_mode='rgb_array', got {env.render_mode!r}"
            )
        self._key = key
        self._size = as_size(size)
        spaces = dict(_dict_space(env, "RenderImage").spaces)
        spaces[key] = gymnasium.spaces.Box(0, 255, (3, *self._size), np.uint8)
        self.observation_space = gymnasium.spaces.Dict(spaces)

    @property
    def obs_space(self) -> gymnasium.spaces.Dict:
        return self.observation_space

    def _add_frame(self, obs: dict) -> dict:
        return {**obs, self._key: to_chw_image(self.env.render(), self._size)}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._add_frame(obs), reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._add_frame(obs), info


class UUID(gymnasium.Wrapper):
    """Give every episode an id (``<timestamp>-<uuid4 hex>``) in ``self.id`` and ``info["uuid"]``."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.id: str | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        timestamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        self.id = f"{timestamp}-{_uuid.uuid4().hex}"
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "uuid": self.id}


class SelectAction(gymnasium.Wrapper):
    """Accept a dict of actions and forward only ``action[key]``."""

    def __init__(self, env: gymnasium.Env, key: Hashable):
        super().__init__(env)
        self._key = key

    def step(self, action):
        if not isinstance(action, dict) or self._key not in action:
            raise ValueError(f"SelectAction expects a dict action with key {self._key!r}, got {action!r}")
        return self.env.step(action[self._key])
