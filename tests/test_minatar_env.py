"""The MinAtar backend: ids, the RGB rendering of the grid, state observations, actions, seeding,
and the full distwm wrapping of a config."""

from __future__ import annotations

import numpy as np
import pytest

import distwm
from distwm.envs.minatar_env import MINATAR_GAMES, minatar_game, render_grid


def test_ids_name_the_game():
    assert minatar_game("minatar:breakout") == "breakout"
    assert minatar_game("MinAtar/SpaceInvaders-v1") == "space_invaders"
    assert minatar_game("minatar:space_invaders") == "space_invaders"
    assert minatar_game("ALE/Breakout-v5") is None
    with pytest.raises(ValueError, match="'pacman'.*asterix"):
        distwm.make_env("minatar:pacman")


def test_rendering_colours_each_cell_by_its_highest_channel():
    grid = np.zeros((10, 10, 4), bool)
    grid[0, 0, 0] = True
    grid[9, 9, [1, 3]] = True
    image = render_grid(grid, (20, 20))
    assert image.shape == (3, 20, 20) and image.dtype == np.uint8
    assert (image[:, 2:18, 2:18] == 0).all()  # empty cells are black
    assert (image[:, :2, :2] == image[:, :1, :1]).all() and image[:, 0, 0].any()  # 2x2 block per cell
    alone = grid.copy()
    alone[9, 9] = [False, False, False, True]
    assert (render_grid(alone, (20, 20))[:, 19, 19] == image[:, 19, 19]).all()  # channel 3 wins
    assert not (image[:, 0, 0] == image[:, 19, 19]).all()


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_every_game_steps_with_pixels_and_state(game):
    env = distwm.make_env(f"minatar:{game}", seed=1, size=(32, 32), obs_type="both")
    obs, _ = env.reset()
    assert env.observation_space.contains(obs)
    assert obs["state"].sum() > 0 and obs["image"].any()
    total, done, steps = 0.0, False, 0
    while not done and steps < 200:
        obs, reward, done, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and not truncated
        total, steps = total + reward, steps + 1
    assert np.isfinite(total)
    with pytest.raises(ValueError, match="not in"):
        env.step(env.action_space.n)


def test_seeding_repeats_an_episode():
    def episode(seed):
        env = distwm.make_env("minatar:breakout", seed=seed, size=(10, 10))
        frames = [env.reset()[0]["image"]]
        rng = np.random.default_rng(0)
        for _ in range(60):
            obs, _, done, _, _ = env.step(int(rng.integers(3)))
            frames.append(obs["image"])
            if done:
                break
        return np.stack(frames)

    assert np.array_equal(episode(3), episode(3))
    assert not np.array_equal(episode(3), episode(4))


def test_a_config_builds_the_wrapped_env():
    from distwm.envs.factory import make_env_from_config

    config = distwm.create_config("dreamer", env="minatar:breakout", image_size=32, time_limit=0)
    env = make_env_from_config(config)
    obs, _ = env.reset()
    assert obs["image"].shape == (3, 32, 32) and env.action_space.shape == (3,)
    obs, reward, *_ = env.step(np.eye(3, dtype=np.float32)[1])
    assert isinstance(reward, float)
