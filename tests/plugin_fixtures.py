"""A small third-party world model, config and env backend used to test distwm.registry."""

from __future__ import annotations

from dataclasses import dataclass

from distwm.configs.base import ConfigBase


@dataclass
class ToyConfig(ConfigBase):
    env: str = "toy-env"
    hidden: int = 8
    lr: float = 1e-3


class ToyModel:
    def __init__(self, config: ToyConfig, scale: float = 1.0):
        self.config = config
        self.scale = scale


def make_toy_env(env_id: str, length: int = 3):
    import gymnasium as gym

    class CountEnv(gym.Env):
        observation_space = gym.spaces.Box(0, length, (1,), dtype="float32")
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self._obs(), {"env_id": env_id}

        def step(self, action):
            self.t += 1
            return self._obs(), 1.0, self.t >= length, False, {}

        def _obs(self):
            import numpy as np

            return np.array([self.t], dtype="float32")

    return CountEnv()
