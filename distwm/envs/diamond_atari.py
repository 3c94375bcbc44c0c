"""Atari preprocessing of DIAMOND (Alonso et al., 2024), on top of an ALE env with frameskip 1.

No-op starts, frame skip with a max-pool over the last two frames, life loss as episode end,
reward clipping to {-1, 0, 1} and resizing. Observations are ``{"image": uint8 (3, H, W)}``;
actions are the game's ``Discrete`` indices (wrap with ``OneHotAction`` for one-hot vectors).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from distwm.envs.base import as_size, to_chw_image

__all__ = ["DiamondAtariWrapper", "make_diamond_atari_env"]

_NOOP = 0


class DiamondAtariWrapper(gymnasium.Wrapper):
    """DIAMOND's Atari wrapper (Gymnasium 1.x step API).

    * ``frameskip``: each action is repeated this many frames; rewards are summed and the
      observation is the pixel-wise max of the last two frames (removes sprite flicker).
    * ``max_noop``: a real reset is followed by 1..``max_noop`` no-op frames (random start).
    * ``terminate_on_life_loss``: losing a life ends the episode (``terminated=True``,
      ``info["life_loss"]``); the next ``reset()`` then continues the same game with one no-op
      frame, and only a game over (or ``reset(seed=...)``) resets the emulator.
    * ``reward_clip``: rewards become their sign.
    * ``resize``: ``(height, width)`` of the image, or ``None`` for 210x160.

    The wrapped env must be an ALE env with ``frameskip=1`` and RGB observations.
    """

    def __init__(self, env: gymnasium.Env, frameskip: int = 4, max_noop: int = 30,
                 terminate_on_life_loss: bool = True, reward_clip: bool = True,
                 resize: tuple[int, int] | None = (64, 64)):
        super().__init__(env)
        if not isinstance(env.action_space, gymnasium.spaces.Discrete):
            raise ValueError(f"DiamondAtariWrapper needs a Discrete action space, got {env.action_space}")
        space = env.observation_space
        if not (isinstance(space, gymnasium.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
            raise ValueError(f"DiamondAtariWrapper needs RGB frame observations (obs_type='rgb'), got {space}")
        inner_skip = getattr(env.unwrapped, "_frameskip", 1)
        if inner_skip != 1:
            raise ValueError(
                f"DiamondAtariWrapper does the frame skipping itself; create the ALE env with "
                f"frameskip=1 (got {inner_skip})"
            )
        if not isinstance(frameskip, int) or frameskip < 1:
            raise ValueError(f"frameskip must be an int >= 1, got {frameskip!r}")
        if not isinstance(max_noop, int) or max_noop < 0:
            raise ValueError(f"max_noop must be an int >= 0, got {max_noop!r}")
        self.frameskip = frameskip
        self.max_noop = max_noop
        self.terminate_on_life_loss = terminate_on_life_loss
        self.reward_clip = reward_clip
        self._size = as_size(resize) if resize is not None else tuple(space.shape[:2])
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (space.shape[-1], *self._size), np.uint8)}
        )
        self._lives = 0
        self._continue_game = False

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())

    def _obs(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": to_chw_image(frame, self._size)}

    def reset(self, **kwargs: Any):
        """Gymnasium's ``reset(seed=None, options=None)`` (the seed's ``reset(**kwargs)``); any
        other keyword raises ``TypeError`` naming the accepted ones."""
        unknown = sorted(set(kwargs) - {"seed", "options"})
        if unknown:
            raise TypeError(f"DiamondAtariWrapper.reset() got unexpected keyword(s) {unknown}; "
                            "accepted: seed, options")
        seed, options = kwargs.get("seed"), kwargs.get("options")
        if self._continue_game and seed is None:
            frame, _, terminated, truncated, info = self.env.step(_NOOP)
            if not (terminated or truncated):
                self._continue_game = False
                self._lives = self._ale_lives()
                return self._obs(frame), {**info, "real_reset": False}
        self._continue_game = False
        frame, info = self.env.reset(seed=seed, options=options)
        noops = int(self.np_random.integers(1, self.max_noop + 1)) if self.max_noop > 0 else 0
        for _ in range(noops):
            frame, _, terminated, truncated, info = self.env.step(_NOOP)
            if terminated or truncated:
                frame, info = self.env.reset()
        self._lives = self._ale_lives()
        return self._obs(frame), {**info, "real_reset": True}

    def step(self, action: int):
        total = 0.0
        previous = frame = None
        terminated = truncated = False
        info: dict[str, Any] = {}
        for _ in range(self.frameskip):
            previous = frame
            frame, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        pooled = frame if previous is None else np.maximum(previous, frame)
        lives = self._ale_lives()
        life_loss = lives < self._lives
        self._lives = lives
        game_over = bool(terminated or truncated)
        if life_loss and self.terminate_on_life_loss and not game_over:
            terminated = True
            self._continue_game = True
        reward = float(np.sign(total)) if self.reward_clip else total
        info = {**info, "life_loss": life_loss, "game_over": game_over, "raw_reward": total}
        return self._obs(pooled), reward, bool(terminated), bool(truncated), info


def make_diamond_atari_env(game: str, frameskip: int = 4, max_noop: int = 30,
                           terminate_on_life_loss: bool = True, reward_clip: bool = True,
                           resize: tuple[int, int] | None = (64, 64),
                           seed: int | None = None) -> DiamondAtariWrapper:
    """An ALE game (``Breakout-v5``, ``ALE/Breakout-v5``, ``breakout``) with DIAMOND's
    preprocessing: no sticky actions, the minimal action set, frameskip done by the wrapper."""
    import gymnasium as gym

    from distwm.envs.ale_atari_env import atari_gym_id

    env = gym.make(atari_gym_id(game), obs_type="rgb", frameskip=1, repeat_action_probability=0.0,
                   full_action_space=False)
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
    return DiamondAtariWrapper(env, frameskip=frameskip, max_noop=max_noop,
                               terminate_on_life_loss=terminate_on_life_loss,
                               reward_clip=reward_clip, resize=resize)
