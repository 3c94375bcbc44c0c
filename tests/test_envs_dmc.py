"""DeepMind Control adapter with state observations (pixels: test_envs_pixels.py)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_module

require_module("dm_control", "pip install -e '.[dmc]' (the test extra has it)")

from distwm.envs.dmc import DMC_DOMAINS, DeepMindControlEnv, list_dmc_envs, make_dmc_env, parse_dmc_id  # noqa: E402


def test_known_domains_match_the_installed_suite():
    from dm_control import suite

    assert set(DMC_DOMAINS) == set(suite._DOMAINS)


@pytest.mark.parametrize(
    "name, parsed",
    [
        ("walker-walk", ("walker", "walk")),
        ("cartpole-swingup", ("cartpole", "swingup")),
        ("ball_in_cup-catch", ("ball_in_cup", "catch")),
        ("ball-in-cup-catch", ("ball_in_cup", "catch")),
        ("cup-catch", ("ball_in_cup", "catch")),
        ("finger-turn_hard", ("finger", "turn_hard")),
        ("humanoid_CMU-run", ("humanoid_CMU", "run")),
        ("CartPole-v1", None),
        ("Pendulum-v1", None),
        ("walker", None),
        ("pong", None),
    ],
)
def test_parse_dmc_id(name, parsed):
    assert parse_dmc_id(name) == parsed


def test_walker_state_is_the_flattened_observation_dict():
    env = make_dmc_env("walker-walk", seed=0)
    obs, info = env.reset()
    assert set(obs) == {"state"} and obs["state"].dtype == np.float32
    spec = env.unwrapped._env.observation_spec()
    assert obs["state"].shape == (sum(int(np.prod(s.shape)) for s in spec.values()),) == (24,)
    assert env.action_space.shape == (6,) and env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    obs, reward, terminated, truncated, info = env.step(np.zeros(6, np.float32))
    assert 0.0 <= reward <= 1.0 and not terminated and not truncated and info["discount"] == 1.0


def test_seeding_reproduces_the_initial_state():
    a = make_dmc_env("cartpole-swingup", seed=5).reset()[0]["state"]
    b = make_dmc_env("cartpole-swingup", seed=5).reset()[0]["state"]
    c = make_dmc_env("cartpole-swingup", seed=6).reset()[0]["state"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    env = make_dmc_env("cartpole-swingup", seed=6)
    env.reset()
    np.testing.assert_array_equal(env.reset(seed=5)[0]["state"], a)


def test_time_limit_is_truncation_not_termination():
    env = DeepMindControlEnv("cartpole-balance", seed=0, obs_type="state")
    assert env.max_episode_steps == 1000
    env.reset()
    for step in range(1, 1001):
        _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
        assert not terminated
        if truncated:
            break
    assert step == 1000 and truncated and info["discount"] == 1.0


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="'fly'.*stand, walk, run"):
        make_dmc_env("walker-fly")
    with pytest.raises(ValueError, match="Not a DeepMind Control id"):
        DeepMindControlEnv("CartPole-v1", seed=0)
    with pytest.raises(ValueError, match="obs_type"):
        make_dmc_env("walker-walk", obs_type="rgb")
    env = make_dmc_env("walker-walk")
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, np.float32))


def test_list_dmc_envs_has_the_benchmark_tasks():
    ids = list_dmc_envs()
    assert {"walker-walk", "cartpole-swingup", "ball_in_cup-catch", "cheetah-run"} <= set(ids)
    assert all(parse_dmc_id(i) is not None for i in ids)
