"""The Crafter backend: ids, spaces, achievements in info, termination vs truncation, reward
variants, seeding, one-hot actions through a config, and every error. Small worlds (``area``)
where the test is not about the default one: world generation takes ~1 s at 64x64."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import distwm
from distwm.envs.auto import detect_backend, list_backend_envs
from distwm.envs.crafter_env import CRAFTER_ACHIEVEMENTS, CRAFTER_ACTIONS, crafter_variant

pytest.importorskip("crafter")


def test_ids_name_the_variant_and_the_backend():
    assert crafter_variant("crafter") == "reward"
    assert crafter_variant("crafter:reward") == "reward"
    assert crafter_variant("crafter:noreward") == "noreward"
    assert crafter_variant("crafter:no_reward") == "noreward"
    assert crafter_variant("CrafterNoReward-v1") == "noreward"
    assert crafter_variant("CrafterReward-v1") == "reward"
    assert crafter_variant("crafter:hard") is None and crafter_variant("minatar:breakout") is None
    for env_id in ("crafter", "crafter:noreward", "CrafterReward-v1"):
        assert detect_backend(env_id)[0] == "crafter"
    assert "crafter" in distwm.list_env_backends()
    assert list_backend_envs("crafter") == ["crafter:noreward", "crafter:reward"]


def test_detection_and_the_factory_import_no_simulator():
    code = ("import sys, distwm\n"
            "from distwm.envs.auto import detect_backend\n"
            "assert detect_backend('crafter:noreward')[0] == 'crafter'\n"
            "env = distwm.make_env('crafter')\n"
            "import distwm.benchmarks.crafter_score\n"
            "print(sorted(m for m in ('crafter', 'torch', 'ray') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"  # crafter loads on the first reset


def test_bad_ids_and_arguments_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"'crafter:hard' is not a Crafter id.*crafter:noreward"):
        distwm.make_env("crafter:hard", backend="crafter")
    with pytest.raises(ValueError, match=r"obs_type 'state'.*pixels"):
        distwm.make_env("crafter", obs_type="state")
    with pytest.raises(ValueError, match=r"unknown arguments \['sticky'\].*length"):
        distwm.make_env("crafter", sticky=0.25)
    with pytest.raises(ValueError, match="length must be >= 1"):
        distwm.make_env("crafter", length=0)
    with pytest.raises(ValueError, match=r"size must be a positive int"):
        distwm.make_env("crafter", size=(64, 0))


def test_default_env_observes_64x64_rgb_and_reports_the_22_achievements():
    env = distwm.make_env("crafter", seed=0)
    assert env.observation_space["image"].shape == (3, 64, 64)
    assert env.action_space.n == 17 == len(CRAFTER_ACTIONS)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    obs, info = env.reset()
    assert env.observation_space.contains(obs) and obs["image"].std() > 0
    assert env.render().shape == (64, 64, 3)
    for action in (1, 2, 3, 4, 5, 0):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs) and isinstance(reward, float)
        assert not terminated and not truncated
    assert tuple(sorted(info["achievements"])) == CRAFTER_ACHIEVEMENTS
    assert all(isinstance(v, int) and v >= 0 for v in info["achievements"].values())
    assert info["discount"] == 1.0 and len(info["inventory"]) == 16
    with pytest.raises(ValueError, match=r"not in \[0, 17\)"):
        env.step(17)


def test_death_terminates_the_time_limit_truncates_and_noreward_pays_nothing():
    env = distwm.make_env("crafter:noreward", seed=0, area=24, length=None)
    env.reset()
    rng = np.random.default_rng(0)
    rewards, hidden = [], []
    for _ in range(2000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(17)))
        rewards.append(reward)
        hidden.append(info["reward"])
        if terminated or truncated:
            break
    assert terminated and not truncated and info["discount"] == 0.0  # the player died
    assert set(rewards) == {0.0} and any(r != 0 for r in hidden)  # Crafter's reward, not paid
    assert any(count > 0 for count in info["achievements"].values())  # random play unlocks some

    short = distwm.make_env("crafter", seed=0, area=24, length=5)
    short.reset()
    ends = [short.step(0)[2:4] for _ in range(5)]
    assert ends[:4] == [(False, False)] * 4 and ends[4] == (False, True)  # truncated, not dead


def test_seeding_repeats_the_worlds():
    def first_frames(seed):
        env = distwm.make_env("crafter", seed=seed, area=24, size=32)
        first = env.reset()[0]["image"]
        return first, env.reset()[0]["image"]

    a, b = first_frames(3), first_frames(3)
    assert a[0].shape == (3, 32, 32)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # episode 1 and 2 repeat
    assert not np.array_equal(a[0], a[1])  # each episode has a new world
    assert not np.array_equal(a[0], first_frames(4)[0])


def test_a_config_builds_the_wrapped_env_with_one_hot_actions():
    from distwm.envs.factory import make_env_from_config

    config = distwm.create_config("dreamer", env="crafter", action_repeat=1, time_limit=0,
                                  env_kwargs={"area": 24})
    env = make_env_from_config(config)
    obs, _ = env.reset()
    assert obs["image"].shape == (3, 64, 64) and env.action_space.shape == (17,)
    _, reward, _, _, info = env.step(np.eye(17, dtype=np.float32)[3])
    assert isinstance(reward, float) and set(info["achievements"]) == set(CRAFTER_ACHIEVEMENTS)
    with pytest.raises(ValueError, match="one-hot"):
        env.step(np.full(17, 1 / 17, np.float32))
