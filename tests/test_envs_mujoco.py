"""Native MuJoCo from MJCF strings, files and MJB binaries, with reward and terminal callbacks."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_module

mujoco = require_module("mujoco", "pip install -e '.[mujoco]' (the test extra has it)")

from distwm.envs.mujoco_env import (  # noqa: E402
    MuJoCoImageEnv,
    is_mjcf_string,
    is_mujoco_model_path,
    make_mujoco_env,
    make_mujoco_env_from_config,
)

SLIDER_XML = """
<mujoco>
  <option timestep="0.01"/>
  <worldbody>
    <light pos="0 0 3"/>
    <geom type="plane" size="2 2 .1"/>
    <body name="cart" pos="0 0 0.1">
      <joint name="slide" type="slide" axis="1 0 0"/>
      <geom type="box" size=".1 .1 .05" mass="1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="slide" ctrlrange="-2 2" ctrllimited="true"/>
    <motor joint="slide" ctrllimited="false"/>
  </actuator>
</mujoco>
"""


def position_reward(model, data, action):
    return float(data.qpos[0])


def past_five_cm(model, data):
    return bool(data.qpos[0] > 0.05)


def test_model_recognition():
    assert is_mjcf_string(SLIDER_XML) and is_mjcf_string('<?xml version="1.0"?>\n<mujoco/>')
    assert is_mujoco_model_path("robot.xml") and is_mujoco_model_path("robot.MJB")
    assert not is_mujoco_model_path(SLIDER_XML) and not is_mujoco_model_path("Hopper-v5")


def test_xml_string_with_reward_and_terminal_fn():
    env = make_mujoco_env(SLIDER_XML, obs_type="state", reward_fn=position_reward, terminal_fn=past_five_cm)
    assert env.observation_space["state"].shape == (2,)  # qpos + qvel
    np.testing.assert_array_equal(env.action_space.low, [-1.0, -1.0])  # ctrlrange and the default range
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs["state"], [0.0, 0.0])
    for step in range(1, 200):
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
        assert obs["state"].dtype == np.float32 and not truncated
        assert reward == pytest.approx(obs["state"][0], abs=1e-6)
        if terminated:
            break
    assert terminated and obs["state"][0] > 0.05
    # a constant force of 2 N (action 1 -> ctrl 2) on 1 kg: x = t^2, passing 5 cm after ~0.22 s
    assert 20 <= step <= 24


def test_actions_are_clipped_to_the_control_range():
    env = MuJoCoImageEnv(xml_string=SLIDER_XML, obs_type="state")
    env.reset()
    env.step(np.array([10.0, -10.0], np.float32))
    np.testing.assert_allclose(env.data.ctrl, [2.0, -1.0])


def test_reset_noise_and_seeding():
    make = lambda seed: MuJoCoImageEnv(xml_string=SLIDER_XML, seed=seed, obs_type="state",  # noqa: E731
                                       reset_noise_scale=0.1)
    a, b, c = (make(s).reset()[0]["state"] for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.all(np.abs(a) <= 0.1)


def test_xml_file_and_mjb_binary(tmp_path):
    xml_file = tmp_path / "slider.xml"
    xml_file.write_text(SLIDER_XML)
    from_file = make_mujoco_env(str(xml_file), obs_type="state")
    model = mujoco.MjModel.from_xml_string(SLIDER_XML)
    mjb_file = tmp_path / "slider.mjb"
    mujoco.mj_saveModel(model, str(mjb_file), None)
    from_binary = make_mujoco_env(mjb_file, obs_type="state")
    for env in (from_file, from_binary):
        env.reset()
        obs, *_ = env.step(np.array([1.0, 0.0], np.float32))
        assert obs["state"][1] > 0  # moving right


def test_config_builder_reads_rlconfig_fields():
    from distwm.configs.rl_config import RLConfig

    config = RLConfig(env=SLIDER_XML, obs_type="state", seed=3,
                      env_kwargs={"terminal_fn": past_five_cm, "frame_skip": 5})
    env = make_mujoco_env_from_config(config, size=(32, 32))
    env.reset()
    env.step(np.zeros(2, np.float32))
    assert env.unwrapped.data.time == pytest.approx(0.05)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        make_mujoco_env(str(tmp_path / "missing.xml"), obs_type="state")
    with pytest.raises(ValueError, match="exactly one"):
        MuJoCoImageEnv(xml_path="a.xml", xml_string=SLIDER_XML)
    with pytest.raises(ValueError, match="backend"):
        make_mujoco_env(SLIDER_XML, backend="mjx")
    with pytest.raises(ValueError, match="frame_skip"):
        MuJoCoImageEnv(xml_string=SLIDER_XML, frame_skip=0)
    with pytest.raises(ValueError, match="reward_fn"):
        MuJoCoImageEnv(xml_string=SLIDER_XML, reward_fn=3.0)
    env = MuJoCoImageEnv(xml_string=SLIDER_XML, obs_type="state")
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))


def test_gymnasium_task_ids_go_through_the_gym_adapter():
    env = make_mujoco_env("InvertedPendulum-v5", obs_type="state")
    obs, _ = env.reset()
    assert obs["state"].shape == (4,) and env.action_space.high[0] == 1.0
