"""A Gymnasium env seen the way PlaNet's rollouts use it: torch observations, preprocessed.

:class:`PlanetEnv` wraps an env whose observations are a dict with ``image`` (uint8 CHW)
and/or ``state`` (float32), or a plain array, and whose actions are a float ``Box`` or a
``Discrete`` space (driven with one-hot vectors). Observations come back as float tensors:
images in ``[-0.5, 0.5]`` at ``bit_depth`` bits with dequantisation noise, vectors as is.
The helpers here read an env's spaces the way PlaNet models them (observation key, action
size and bounds) and resolve ``device="auto"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from distwm.models.planet.losses import prepare_observation
from distwm.utils.devices import resolve_device
from distwm.utils.utils import postprocess_img

__all__ = ["PlanetEnv", "PlanetImageEnv", "resolve_device", "planet_observation_key", "action_space_info"]


def planet_observation_key(observation_space: Any) -> str:
    """The observation PlaNet models: ``image`` when the env provides one, else ``state``."""
    keys = list(getattr(observation_space, "spaces", {}) or {})
    for key in ("image", "state"):
        if key in keys:
            return key
    raise ValueError(
        f"PlaNet needs an 'image' or 'state' observation; the observation space has {keys or observation_space!r}"
    )


def action_space_info(action_space: Any) -> tuple[int, bool, np.ndarray, np.ndarray]:
    """``(action_size, discrete, low, high)`` of a ``Discrete`` space or a float ``Box``.

    A ``Discrete(n)`` space, or a Box of one-hot vectors with an ``n`` attribute (the env
    adapters' ``OneHotBox``), is planned over one-hot vectors of size ``n``.
    """
    n = getattr(action_space, "n", None)
    shape = tuple(getattr(action_space, "shape", None) or ())
    if n is not None and shape in ((), (int(n),)):  # Discrete(n), or a one-hot Box of size n
        return int(n), True, np.zeros(int(n), np.float32), np.ones(int(n), np.float32)
    if len(shape) != 1:
        raise ValueError(f"PlaNet needs a Discrete or a 1-D Box action space, got {action_space!r}")
    size = int(shape[0])
    low = np.broadcast_to(np.asarray(action_space.low, np.float32), (size,))
    high = np.broadcast_to(np.asarray(action_space.high, np.float32), (size,))
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"PlaNet's planner needs finite action bounds, got low={low}, high={high}")
    return size, False, low.copy(), high.copy()


class PlanetEnv:
    """Torch interface to a Gymnasium env for :class:`~distwm.controller.rollout_generator.RolloutGenerator`.

    Args:
        env: a Gymnasium env (Gymnasium 1.x API).
        bit_depth: bits per image channel kept by preprocessing.
        obs_key: which entry of a dict observation to use (default: ``image`` if present, else
            ``state``).
        device: device of the returned tensors.
        max_episode_steps: episode cap (default: the env spec's ``max_episode_steps``).
    """

    def __init__(self, env: Any, bit_depth: int = 5, obs_key: str | None = None, device: Any = "cpu",
                 max_episode_steps: int | None = None):
        self.env = env
        self.bit_depth = bit_depth
        self.device = torch.device(device)
        spaces = getattr(env.observation_space, "spaces", None)
        if spaces is not None:
            if obs_key is None:
                obs_key = "image" if "image" in spaces else "state" if "state" in spaces else None
            if obs_key not in spaces:
                raise ValueError(f"PlanetEnv: obs_key {obs_key!r} is not one of {sorted(spaces)}")
            self.obs_space = spaces[obs_key]
        else:
            self.obs_space = env.observation_space
        self.obs_key = obs_key
        self.action_size, self.discrete, self.action_low, self.action_high = action_space_info(env.action_space)
        spec = getattr(env, "spec", None)
        self._max_episode_steps = max_episode_steps or getattr(spec, "max_episode_steps", None)

    @property
    def observation_space(self):
        return self.env.observation_space

    @property
    def action_space(self):
        return self.env.action_space

    @property
    def render_mode(self) -> str | None:
        return getattr(self.env, "render_mode", None)

    @property
    def observation_size(self) -> tuple[int, ...]:
        return tuple(self.obs_space.shape)

    @property
    def is_image(self) -> bool:
        return len(self.observation_size) == 3

    @property
    def max_episode_steps(self) -> int | None:
        return self._max_episode_steps

    def _observation(self, obs: Any) -> torch.Tensor:
        raw = obs[self.obs_key] if self.obs_key is not None else obs
        return prepare_observation(np.asarray(raw), self.bit_depth, self.device)

    def to_storage(self, obs: torch.Tensor) -> np.ndarray:
        """A preprocessed observation as stored in an Episode: uint8 image or float32 vector."""
        array = obs.detach().cpu().numpy() if torch.is_tensor(obs) else np.asarray(obs)
        return postprocess_img(array, self.bit_depth) if self.is_image else array.astype(np.float32)

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, dict]:
        obs, info = self.env.reset(seed=seed)
        return self._observation(obs), info

    def _env_action(self, action: Any) -> Any:
        vector = np.asarray(action.detach().cpu().numpy() if torch.is_tensor(action) else action,
                            dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.action_size:
            raise ValueError(f"PlanetEnv.step: expected {self.action_size} action values, got {vector.shape[0]}")
        if self.discrete and getattr(self.env.action_space, "n", None) is not None and not self.env.action_space.shape:
            return int(vector.argmax())
        return vector

    def step(self, action: Any) -> tuple[torch.Tensor, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(self._env_action(action))
        return self._observation(obs), float(reward), bool(terminated), bool(truncated), info

    def sample_random_action(self) -> torch.Tensor:
        if self.discrete:
            return torch.nn.functional.one_hot(torch.randint(self.action_size, ()), self.action_size).float()
        return torch.from_numpy(np.random.uniform(self.action_low, self.action_high).astype(np.float32))

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


class PlanetImageEnv(PlanetEnv):
    """A :class:`PlanetEnv` over the rendered frames of an env: tensors in and out, image
    observations (the seed's ``utils.utils.TorchImageEnvWrapper`` is the same idea with the
    seed's ``reset() -> x`` / ``step(u) -> (x, r, done, info)`` contract:
    :class:`distwm.envs.torch_image_env.TorchImageEnvWrapper`).

    Args:
        env: an env id of any backend (``"CartPole-v1"``, ``"cartpole-swingup"``; built here
            with pixel observations) or a Gymnasium env (rendered with ``render_mode="rgb_array"``).
        bit_depth: bits per image channel kept by preprocessing.
        observation_shape: ``(3, H, W)`` of the images (default ``(3, 64, 64)``).
        act_rep: action repeat.
        seed: seed of the env.

    ``reset()`` returns ``(image, info)`` and ``step(action)`` Gymnasium's 5-tuple, with
    images as float tensors in ``[-0.5, 0.5]``; actions are float vectors (one-hot for discrete
    envs), see :class:`PlanetEnv`.
    """

    def __init__(self, env: Any, bit_depth: int, observation_shape: Any = None, act_rep: int = 2,
                 seed: int = 0):
        from distwm.envs.wrappers import ActionRepeat, standardize_actions

        shape = tuple(int(d) for d in (observation_shape or (3, 64, 64)))
        if len(shape) != 3 or shape[0] != 3:
            raise ValueError(f"observation_shape must be (3, H, W) for RGB frames, got {shape}")
        if not isinstance(act_rep, int) or act_rep < 1:
            raise ValueError(f"act_rep must be an int >= 1, got {act_rep!r}")
        if isinstance(env, str):
            from distwm.configs.rl_config import RLConfig
            from distwm.envs import make_env_from_config

            config = RLConfig(env=env, obs_type="pixels", image_size=shape[1], action_repeat=act_rep,
                              time_limit=0, seed=seed)
            if shape[1] != shape[2]:
                config = config.replace(env_kwargs={"size": [shape[1], shape[2]]})
            wrapped = make_env_from_config(config, seed)
        else:
            from distwm.envs.gym_env import make_gym_env

            wrapped = make_gym_env(env, seed=seed, size=shape[1:], obs_type="pixels")
            if act_rep > 1:
                wrapped = ActionRepeat(wrapped, act_rep)
            wrapped = standardize_actions(wrapped)
        super().__init__(wrapped, bit_depth, obs_key="image")
        self.act_rep = act_rep
        if self._max_episode_steps is None:
            limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
            self._max_episode_steps = -(-limit // act_rep) if limit else None
