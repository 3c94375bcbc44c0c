"""Optional backends: Gymnasium-Robotics, Brax (CPU JAX), Unity ML-Agents.

Each runs where its extra is installed; the missing-extra errors are tested everywhere by
hiding the package.
"""

from __future__ import annotations

import os
import sys

import gymnasium
import numpy as np
import pytest

from conftest import require
from distwm.envs._optional import is_installed


@pytest.fixture
def hide_module(monkeypatch):
    """Make ``import <name>`` fail as if the package were not installed."""

    def hide(name):
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, module)
        monkeypatch.setitem(sys.modules, name, None)

    return hide


# -- Gymnasium-Robotics -----------------------------------------------------------------------

def test_robotics_point_maze_state():
    require(is_installed("gymnasium_robotics"), "the 'robotics' extra (gymnasium_robotics)",
            "pip install -e '.[robotics]' (the test extra has it)")
    from distwm.envs.robotics_env import list_gymnasium_robotics_envs, make_robotics_env

    from distwm.envs.auto import detect_backend, list_backend_envs

    ids = list_gymnasium_robotics_envs()  # registers them with Gymnasium
    assert "PointMaze_UMaze-v3" in ids and "CartPole-v1" not in ids
    assert detect_backend("PointMaze_UMaze-v3")[0] == "robotics"  # not "gym", though registered
    assert "PointMaze_UMaze-v3" not in list_backend_envs("gym")
    env = make_robotics_env("PointMaze_UMaze-v3", seed=0)
    xml = env.env.unwrapped.tmp_xml_file_path  # written by the maze, removed once loaded
    assert xml.endswith(".xml") and not os.path.exists(xml)
    obs, _ = env.reset()
    # achieved_goal (2) + desired_goal (2) + observation (4), flattened
    assert set(obs) == {"state"} and obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    obs, reward, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
    assert env.observation_space.contains(obs)
    with pytest.raises(ValueError, match="Gymnasium-Robotics env 'CartPole-v1'"):
        make_robotics_env("CartPole-v1")


def test_robotics_missing_extra_names_it(hide_module):
    from distwm.envs.robotics_env import make_robotics_env, register_gymnasium_robotics_envs

    hide_module("gymnasium_robotics")
    with pytest.raises(ImportError, match=r"pip install distwm\[robotics\]"):
        register_gymnasium_robotics_envs()
    with pytest.raises(ImportError, match=r"distwm\[robotics\]"):
        make_robotics_env("FetchReach-v4")


def test_moved_mujoco_error_is_recognised():
    from distwm.envs.robotics_env import is_moved_mujoco_error

    # the entry point Gymnasium registers for Hopper-v3 & co. (replaced once robotics is imported)
    raise_moved = getattr(gymnasium.envs, "_raise_mujoco_py_error", None)
    require(raise_moved is not None, "Gymnasium's moved-MuJoCo entry point (_raise_mujoco_py_error)",
            "install the Gymnasium pyproject.toml pins (gymnasium>=1.0,<1.3)")
    with pytest.raises(ImportError) as info:
        raise_moved()
    assert is_moved_mujoco_error(info.value)
    assert not is_moved_mujoco_error(ImportError("No module named 'box2d'"))


# -- Brax -------------------------------------------------------------------------------------

def test_brax_state_observations_on_cpu():
    require(is_installed("brax"), "the 'brax' extra (brax, jax[cpu])",
            "pip install -e '.[brax]' (the test extra has it)")
    from distwm.envs.brax_env import make_brax_env

    env = make_brax_env("brax/fast", seed=0, obs_type="state", episode_length=3)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    obs, _ = env.reset()
    assert set(obs) == {"state"} and obs["state"].dtype == np.float32 and obs["state"].shape == (2,)
    flags = []
    for _ in range(3):
        obs, reward, terminated, truncated, _ = env.step(np.ones(1, np.float32))
        flags.append((terminated, truncated))
    assert flags[-1] == (False, True) and flags[0] == (False, False)
    assert obs["state"][0] > 0 and isinstance(reward, float)
    with pytest.raises(ValueError, match="no MuJoCo model"):
        make_brax_env("fast", obs_type="pixels")
    with pytest.raises(ValueError, match="Unknown Brax env 'antt'"):
        make_brax_env("antt")


def test_brax_missing_extra_names_it(hide_module):
    from distwm.envs.brax_env import make_brax_env

    hide_module("brax")
    with pytest.raises(ImportError, match=r"pip install distwm\[brax\]"):
        make_brax_env("ant")


# -- Unity ML-Agents --------------------------------------------------------------------------

def test_unity_missing_build_names_the_file_before_importing_mlagents(tmp_path, hide_module):
    from distwm.envs.unity_env import make_unity_mlagents_env

    hide_module("mlagents_envs")  # the file check must come first
    build = tmp_path / "3DBall.x86_64"
    with pytest.raises(FileNotFoundError, match="3DBall.x86_64") as info:
        make_unity_mlagents_env(str(build))
    assert "Unity executable" in str(info.value)
    with pytest.raises(ValueError, match="file_name"):
        make_unity_mlagents_env()


def test_unity_existing_build_without_mlagents_names_the_extra(tmp_path, hide_module):
    from distwm.envs.unity_env import UnityMLAgentsEnv

    hide_module("mlagents_envs")
    build = tmp_path / "Game.x86_64"
    build.write_bytes(b"\x7fELF")
    with pytest.raises(ImportError, match=r"pip install distwm\[unity\]"):
        UnityMLAgentsEnv(str(build))
