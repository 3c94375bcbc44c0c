"""The seed's ``TorchImageEnvWrapper``: an env driven with tensors that observes images.

Observations are the env's RGB frames as float32 ``(3, H, W)`` tensors preprocessed the PlaNet
way (:func:`distwm.utils.utils.preprocess_img`: ``bit_depth`` bits in ``[-0.5, 0.5]`` plus
dequantisation noise). ``reset()`` returns the observation, ``step(u)`` the seed's 4-tuple
``(observation, reward, done, info)`` with ``done = terminated or truncated`` and both flags in
``info`` (``info["terminated"]``, ``info["truncated"]``: a time limit is not a termination).
The env comes from :func:`distwm.envs.gym_env.make_gym_env` (a Gymnasium env that renders
``rgb_array`` frames or observes images) or, for an id, from the backend that owns it, with
distwm's action conventions (one-hot vectors for discrete actions, ``[-1, 1]`` for bounded
continuous ones) and ``act_rep`` action repeats.

PlaNet's rollouts use :class:`distwm.models.planet.env.TorchImageEnvWrapper`, distwm's form with
Gymnasium's 5-tuple.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np

from distwm.envs.wrappers import ActionRepeat, one_hot, standardize_actions

__all__ = ["TorchImageEnvWrapper"]

_DEFAULT_SHAPE = (3, 64, 64)


class TorchImageEnvWrapper:
    """Torch Env Wrapper that wraps a gym env and makes interactions using Tensors. Also returns
    observations in image form.

    Args:
        env: an env id of any backend (``"Pendulum-v1"``, ``"cartpole-swingup"``) or a Gymnasium
            env created with ``render_mode="rgb_array"`` (or one that observes images).
        bit_depth: bits per colour channel kept by preprocessing (1..8).
        observation_shape: ``(3, H, W)`` of the observations (default ``(3, 64, 64)``).
        act_rep: how many env steps each :meth:`step` repeats the action for (rewards summed).
    """

    def __init__(self, env, bit_depth, observation_shape=None, act_rep=2):
        from distwm.utils.utils import _check_bit_depth

        self.bit_depth = _check_bit_depth(bit_depth)
        shape = tuple(int(d) for d in (observation_shape or _DEFAULT_SHAPE))
        if len(shape) != 3 or shape[0] != 3 or min(shape) < 1:
            raise ValueError(f"observation_shape must be (3, H, W) for RGB frames, got {observation_shape!r}")
        if isinstance(act_rep, bool) or not isinstance(act_rep, int) or act_rep < 1:
            raise ValueError(f"act_rep must be an int >= 1, got {act_rep!r}")
        self.action_repeats = act_rep
        self._shape = shape
        if isinstance(env, str):
            from distwm.registry import make_env

            base = make_env(env, size=shape[1:], obs_type="pixels")
        elif isinstance(env, gymnasium.Env):
            from distwm.envs.gym_env import make_gym_env

            base = make_gym_env(env, size=shape[1:], obs_type="pixels")
        else:
            raise ValueError(f"env must be an env id or a gymnasium.Env, got {type(env).__name__}")
        self._base = base
        spec_limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
        limit = spec_limit or getattr(base, "max_episode_steps", None)
        self._max_episode_steps = math.ceil(int(limit) / act_rep) if limit else None
        wrapped = ActionRepeat(base, act_rep) if act_rep > 1 else base
        self.env = standardize_actions(wrapped)
        self._discrete = getattr(self.env.action_space, "n", None)

    # -- observations ---------------------------------------------------------------------------
    def _observation(self, obs: Any):
        import torch

        from distwm.utils.utils import preprocess_img

        image = obs["image"] if isinstance(obs, dict) else obs
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        return preprocess_img(x, self.bit_depth)

    def reset(self):
        """Start an episode; returns the first observation, float32 ``(3, H, W)``."""
        obs, _ = self.env.reset()
        return self._observation(obs)

    def _action(self, u) -> np.ndarray:
        arr = u.detach().cpu().numpy() if hasattr(u, "detach") else np.asarray(u)
        arr = np.asarray(arr, dtype=np.float32).reshape(-1)
        if self._discrete is not None:
            n = int(self._discrete)
            if arr.size == n:  # one-hot, or scores: the largest entry is the action
                return one_hot(int(np.argmax(arr)), n)
            if arr.size == 1 and float(arr[0]).is_integer() and 0 <= arr[0] < n:
                return one_hot(int(arr[0]), n)
            raise ValueError(f"a discrete action is an index in [0, {n}) or a vector of {n} scores, "
                             f"got {arr.tolist()}")
        expected = self.env.action_space.shape
        if arr.size != int(np.prod(expected)):
            raise ValueError(f"the action must have {int(np.prod(expected))} values (shape {expected}), "
                             f"got {arr.size}")
        return arr.reshape(expected)

    def step(self, u):
        """Act with ``u`` (tensor or array) for ``act_rep`` env steps; returns
        ``(observation, reward, done, info)`` (module docstring)."""
        obs, reward, terminated, truncated, info = self.env.step(self._action(u))
        info = {**info, "terminated": bool(terminated), "truncated": bool(truncated)}
        return self._observation(obs), float(reward), bool(terminated or truncated), info

    def render(self):
        """The current RGB frame, uint8 ``(H, W, 3)`` at the observation size."""
        return self._base.render()

    def close(self):
        self.env.close()

    # -- spaces ---------------------------------------------------------------------------------
    @property
    def observation_size(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def action_size(self) -> int:
        return int(np.prod(self.env.action_space.shape))

    def sample_random_action(self):
        """A uniformly random action as a float32 tensor (one-hot for discrete envs)."""
        import torch

        return torch.as_tensor(np.asarray(self.env.action_space.sample(), dtype=np.float32))

    @property
    def max_episode_steps(self) -> int | None:
        """Steps of this wrapper per episode: the env's time limit over ``act_rep`` (rounded
        up); ``None`` when the env has none."""
        return self._max_episode_steps
