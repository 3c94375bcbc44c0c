"""Backend detection, env listing, the config-driven factory and the lazy package surface."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

import distwm
from distwm.envs._optional import is_installed
from distwm.envs.auto import BACKEND_ORDER, detect_backend, list_backend_envs
from distwm.envs.wrappers import ActionRepeat, OneHotAction, TimeLimit


@pytest.mark.parametrize(
    "env_id, backend",
    [
        ("walker-walk", "dmc"),
        ("cartpole-swingup", "dmc"),
        ("ball_in_cup-catch", "dmc"),
        ("ALE/Pong-v5", "atari"),
        ("pong", "atari"),
        ("PongNoFrameskip-v4", "atari"),
        ("CartPole-v1", "gym"),
        ("Pendulum-v1", "gym"),
        ("HalfCheetah-v5", "gym"),
        ("robots/arm.xml", "mujoco"),
        ("robots/arm.mjb", "mujoco"),
        ("<mujoco><worldbody/></mujoco>", "mujoco"),
        ("builds/3DBall.x86_64", "unity"),
        ("brax/ant", "brax"),
        ("minatar:breakout", "minatar"),
        ("MinAtar/SpaceInvaders-v1", "minatar"),
    ],
)
def test_detect_backend(env_id, backend):
    found, tried = detect_backend(env_id)
    assert found == backend and tried[-1] == backend
    assert tried == list(BACKEND_ORDER[: BACKEND_ORDER.index(backend) + 1])


def test_an_existing_executable_is_a_unity_build(tmp_path):
    build = tmp_path / "MyGame"
    build.write_bytes(b"\x7fELF")
    build.chmod(0o755)
    assert detect_backend(str(build))[0] == "unity"
    build.chmod(0o644)
    assert detect_backend(str(build))[0] is None


def test_unknown_ids_list_what_was_tried():
    assert detect_backend("no-such-env") == (None, list(BACKEND_ORDER))
    with pytest.raises(ValueError) as info:
        distwm.make_env("no-such-env")
    message = str(info.value)
    assert "'no-such-env'" in message
    for backend in BACKEND_ORDER:
        assert backend in message


def test_detection_imports_no_simulator():
    code = (
        "import sys, json\n"
        "import distwm.envs\n"
        "from distwm.envs import detect_backend\n"
        "for i in ['walker-walk', 'ALE/Pong-v5', 'pong', 'CartPole-v1', 'a.xml', 'x.x86_64', 'brax/ant', 'minatar:breakout', 'crafter:reward', 'zzz']:\n"
        "    detect_backend(i)\n"
        "print(json.dumps([m for m in ('mujoco', 'dm_control', 'ale_py', 'jax', 'brax', 'mlagents_envs',\n"
        "                              'gymnasium_robotics', 'minatar', 'crafter', 'torch', 'ray') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_list_backend_envs():
    gym_ids = list_backend_envs("gym")
    assert "CartPole-v1" in gym_ids and not any(i.startswith("ALE/") for i in gym_ids)
    assert "Hopper-v3" not in gym_ids  # moved to gymnasium-robotics, not makeable from gym
    if is_installed("ale_py"):
        assert "ALE/Pong-v5" in list_backend_envs("atari")
    if is_installed("mujoco"):
        assert "Hopper-v5" in list_backend_envs("mujoco")
    assert list_backend_envs("unity") == []
    with pytest.raises(ValueError, match="'vizdoom'.*atari"):
        list_backend_envs("vizdoom")


def test_distwm_envs_exports_lazily():
    code = (
        "import sys, json, distwm.envs as e\n"
        "names = sorted(e.__all__)\n"
        "before = [m for m in ('mujoco', 'dm_control', 'ale_py', 'jax', 'torch') if m in sys.modules]\n"
        "print(json.dumps([before, names]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, names = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == []
    import distwm.envs as envs

    for name in names:
        assert getattr(envs, name) is not None
    with pytest.raises(AttributeError, match="NoSuchThing"):
        envs.NoSuchThing  # noqa: B018


def rl_config(**overrides):
    from distwm.configs.rl_config import RLConfig

    return RLConfig(**overrides)


def test_make_env_from_config_wraps_in_order():
    from distwm.envs.factory import make_env_from_config

    env = make_env_from_config(rl_config(env="CartPole-v1", obs_type="state", action_repeat=2, time_limit=10))
    assert isinstance(env, TimeLimit) and env.duration == 5
    assert isinstance(env.env, ActionRepeat) and env.env.amount == 2
    assert isinstance(env.observation_space, gymnasium.spaces.Dict)
    assert isinstance(env.action_space, gymnasium.spaces.Box) and env.action_space.dtype == np.float32
    env.reset()
    for step in range(1, 6):
        _, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0], np.float32) if step % 2 else
                                                        np.array([0.0, 1.0], np.float32))
        assert reward == 2.0
    assert truncated and not terminated and step == 5


def test_make_env_from_config_dmc_seed_and_size():
    from distwm.envs.factory import make_env_from_config

    config = rl_config(env="cartpole-swingup", obs_type="state", action_repeat=4, time_limit=1000, seed=3)
    first = make_env_from_config(config).reset()[0]["state"]
    again = make_env_from_config(config, seed=3).reset()[0]["state"]
    other = make_env_from_config(config, seed=4).reset()[0]["state"]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_make_env_from_config_honours_registered_backends():
    from distwm.envs.factory import make_env_from_config
    from distwm.registry import deregister_env_backend, register_env_backend

    register_env_backend("toy-discrete", "test_envs_auto:toy_discrete_backend",
                         matcher=lambda env_id: env_id.startswith("toy:"))
    try:
        env = make_env_from_config(rl_config(env="toy:3", action_repeat=1, time_limit=4, seed=9))
        assert isinstance(env.env, OneHotAction) and env.action_space.shape == (3,)
        obs, info = env.reset()
        assert info == {"seed": 9, "size": (64, 64), "obs_type": "auto"}
        env.step(np.array([0.0, 0.0, 1.0], np.float32))
        assert env.unwrapped.actions == [2]
    finally:
        deregister_env_backend("toy-discrete")


def test_make_env_from_config_rejects_non_dict_observations():
    from distwm.envs.factory import make_env_from_config
    from distwm.registry import deregister_env_backend, register_env_backend

    register_env_backend("toy-flat", "test_envs_auto:toy_flat_backend")
    try:
        with pytest.raises(ValueError, match="dict observations"):
            make_env_from_config(rl_config(env="anything", env_backend="toy-flat"))
    finally:
        deregister_env_backend("toy-flat")


def test_distwm_envs_make_env_delegates_to_the_api():
    from distwm.envs import make_env

    env = make_env("CartPole-v1", backend="gym", obs_type="state")
    assert env.reset()[0]["state"].shape == (4,)
    with pytest.raises(ValueError, match="tried"):
        make_env("definitely-unknown")


class ToyEnv(gymnasium.Env):
    def __init__(self, n, **factory_kwargs):
        self.observation_space = gymnasium.spaces.Dict(
            {"state": gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)})
        self.action_space = gymnasium.spaces.Discrete(n)
        self.factory_kwargs = factory_kwargs
        self.actions = []

    def reset(self, *, seed=None, options=None):
        return {"state": np.zeros(1, np.float32)}, dict(self.factory_kwargs)

    def step(self, action):
        self.actions.append(action)
        return {"state": np.zeros(1, np.float32)}, 0.0, False, False, {}


def toy_discrete_backend(env_id, **kwargs):
    return ToyEnv(int(env_id.split(":")[1]), **kwargs)


def toy_flat_backend(env_id, **kwargs):
    return gymnasium.make("CartPole-v1")
