"""Atari through ale-py: single env, ALE's native vector env, DIAMOND preprocessing."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from conftest import require_module

require_module("ale_py", "the Atari emulator: pip install -e '.[atari]' (the test extra has it)")

from distwm.envs.ale_atari_env import atari_game, atari_gym_id, list_available_atari_envs, make_atari_env  # noqa: E402
from distwm.envs.ale_atari_vector_env import make_atari_vector_env  # noqa: E402
from distwm.envs.diamond_atari import DiamondAtariWrapper, make_diamond_atari_env  # noqa: E402
from distwm.envs.wrappers import OneHotBox  # noqa: E402


@pytest.mark.parametrize(
    "env_id, game",
    [("pong", "pong"), ("Pong", "pong"), ("ALE/Pong-v5", "pong"), ("PongNoFrameskip-v4", "pong"),
     ("SpaceInvaders", "space_invaders"), ("ms_pacman", "ms_pacman"), ("CartPole-v1", None),
     ("walker-walk", None)],
)
def test_atari_game_recognises_ids(env_id, game):
    assert atari_game(env_id) == game


def test_gym_ids_resolve():
    assert atari_gym_id("pong") == "ALE/Pong-v5"
    assert atari_gym_id("SpaceInvaders") == "ALE/SpaceInvaders-v5"
    assert atari_gym_id("PongNoFrameskip-v4") == "PongNoFrameskip-v4"
    with pytest.raises(ValueError, match="Did you mean 'pong'"):
        atari_gym_id("pongg")
    ids = list_available_atari_envs()
    assert "ALE/Pong-v5" in ids and all(i.startswith("ALE/") for i in ids)


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "pong"])
def test_pong_rgb_observations_are_chw_uint8(env_id):
    env = make_atari_env(env_id, seed=0, size=(64, 64))
    obs, _ = env.reset()
    assert obs["image"].shape == (3, 64, 64) and obs["image"].dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert isinstance(env.action_space, OneHotBox) and env.action_space.n == 6
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs["image"].shape == (3, 64, 64) and isinstance(reward, float)


def test_ram_and_grayscale_observations():
    ram = make_atari_env("pong", obs_type="ram")
    obs, _ = ram.reset()
    assert set(obs) == {"state"} and obs["state"].shape == (128,) and obs["state"].dtype == np.float32
    gray = make_atari_env("pong", obs_type="grayscale", size=None)
    obs, _ = gray.reset()
    assert obs["image"].shape == (1, 210, 160)
    with pytest.raises(ValueError, match="obs_type"):
        make_atari_env("pong", obs_type="both")


def test_vector_env_steps_all_games_at_once():
    env = make_atari_vector_env("pong", 2, img_height=48, img_width=40, stack_num=1, seed=0)
    try:
        obs, info = env.reset()
        assert obs.shape == (2, 1, 48, 40, 3) and obs.dtype == np.uint8
        obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.int64))
        assert reward.shape == terminated.shape == (2,)
    finally:
        env.close()


def test_vector_env_errors():
    with pytest.raises(ValueError, match="ram"):
        make_atari_vector_env("pong", 2, obs_type="ram")
    with pytest.raises(ValueError, match="Unknown Atari game"):
        make_atari_vector_env("pongg", 2)
    with pytest.raises(ValueError, match="num_envs"):
        make_atari_vector_env("pong", 0)


def test_diamond_wrapper_skips_frames_clips_rewards_and_ends_on_life_loss():
    env = make_diamond_atari_env("Breakout-v5", frameskip=4, max_noop=5, resize=(32, 32), seed=0)
    obs, info = env.reset()
    assert obs["image"].shape == (3, 32, 32) and info["real_reset"]
    frames_before = info["episode_frame_number"]
    obs, reward, terminated, truncated, info = env.step(0)
    assert info["episode_frame_number"] - frames_before == 4
    rng = np.random.default_rng(0)
    for _ in range(2000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        assert reward in (-1.0, 0.0, 1.0)
        if terminated or truncated:
            break
    assert terminated and info["life_loss"] and not info["game_over"]
    lives = info["lives"]
    _, info = env.reset()
    assert not info["real_reset"] and info["lives"] == lives  # same game continues


def test_diamond_wrapper_needs_an_unskipped_env():
    with pytest.raises(ValueError, match="frameskip=1"):
        DiamondAtariWrapper(gymnasium.make("ALE/Pong-v5"))


class FakeAtari(gymnasium.Env):
    """A tiny ALE look-alike: odd frames are bright (flicker), reward 3 a frame, a life lost at frame 10."""

    observation_space = gymnasium.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(3)

    def __init__(self):
        self.ale = self
        self.frame = 0
        self.noops = 0

    def lives(self):
        return 3 if self.frame < 10 else 2

    def _obs(self):
        value = 100 + self.frame if self.frame % 2 else self.frame
        return np.full((4, 4, 3), value, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.frame = 0
        return self._obs(), {}

    def step(self, action):
        self.frame += 1
        self.noops += action == 0
        return self._obs(), 3.0, False, False, {}


def test_diamond_wrapper_max_pools_sums_clips_and_flags_life_loss():
    env = DiamondAtariWrapper(FakeAtari(), frameskip=4, max_noop=0, resize=None)
    obs, _ = env.reset()
    assert obs["image"].shape == (3, 4, 4)
    obs, reward, terminated, _, info = env.step(1)
    assert np.all(obs["image"] == 103)  # max of frame 3 (bright) and frame 4
    assert reward == 1.0 and info["raw_reward"] == 12.0 and not terminated
    env.step(1)
    _, _, terminated, truncated, info = env.step(1)  # frames 9-12: the life is lost at 10
    assert terminated and not truncated and info["life_loss"] and not info["game_over"]
    unclipped = DiamondAtariWrapper(FakeAtari(), frameskip=2, max_noop=0, reward_clip=False, resize=None)
    unclipped.reset()
    assert unclipped.step(1)[1] == 6.0


def test_diamond_wrapper_starts_with_random_noops():
    fake = FakeAtari()
    env = DiamondAtariWrapper(fake, frameskip=1, max_noop=7, resize=None)
    counts = set()
    for seed in range(6):
        fake.noops = 0
        env.reset(seed=seed)
        counts.add(fake.noops)
    assert counts <= set(range(1, 8)) and len(counts) > 1
