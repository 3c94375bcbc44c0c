"""Gymnasium adapter: state observations, one-hot and normalised actions, no rendering for state."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from distwm.envs.gym_env import GymImageEnv, make_gym_env
from distwm.envs.wrappers import OneHotBox


def test_cartpole_state_observations_and_one_hot_actions():
    env = make_gym_env("CartPole-v1", seed=3)
    assert env.observation_space == gymnasium.spaces.Dict(
        {"state": gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
    assert isinstance(env.action_space, OneHotBox) and env.action_space.n == 2
    obs, _ = env.reset()
    assert set(obs) == {"state"} and obs["state"].dtype == np.float32 and obs["state"].shape == (4,)
    obs, reward, terminated, truncated, _ = env.step(np.array([0.0, 1.0], np.float32))
    assert reward == 1.0 and isinstance(terminated, bool) and isinstance(truncated, bool)
    assert env.observation_space.contains(obs)
    assert env.max_episode_steps == 500


def test_state_only_never_renders(monkeypatch):
    env = make_gym_env("CartPole-v1", obs_type="state")
    assert env.unwrapped_env.render_mode is None

    def forbidden(*args, **kwargs):
        raise AssertionError("render() called for a state-only env")

    monkeypatch.setattr(type(env.unwrapped_env), "render", forbidden)
    env.reset()
    env.step(env.action_space.sample())


def test_pendulum_continuous_actions_are_mapped_to_unit_range():
    env = make_gym_env("Pendulum-v1")
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    env.reset(seed=0)
    env.unwrapped_env.state = np.array([0.0, 0.0])
    env.step(np.array([1.0], np.float32))
    assert env.unwrapped_env.last_u == pytest.approx(2.0)  # Pendulum's max torque


def test_first_reset_uses_the_constructor_seed():
    first, _ = make_gym_env("CartPole-v1", seed=11).reset()
    again, _ = make_gym_env("CartPole-v1", seed=11).reset()
    other, _ = make_gym_env("CartPole-v1", seed=12).reset()
    np.testing.assert_array_equal(first["state"], again["state"])
    assert not np.array_equal(first["state"], other["state"])


def test_discrete_observations_become_one_hot_state():
    env = make_gym_env("FrozenLake-v1")
    obs, _ = env.reset()
    assert obs["state"].shape == (16,) and obs["state"].sum() == 1.0


def test_prebuilt_env_and_render_mode_check():
    env = GymImageEnv(gymnasium.make("CartPole-v1"), obs_type="state")
    assert env.reset()[0]["state"].shape == (4,)
    with pytest.raises(ValueError, match="rgb_array"):
        GymImageEnv(gymnasium.make("CartPole-v1"), obs_type="pixels")


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="obs_type"):
        make_gym_env("CartPole-v1", obs_type="rgb")
    with pytest.raises(ValueError, match="size"):
        make_gym_env("CartPole-v1", size=(0, 4))
    with pytest.raises(gymnasium.error.Error):
        make_gym_env("NoSuchEnv-v0")
