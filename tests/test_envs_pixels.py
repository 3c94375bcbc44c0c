"""Image observations rendered off-screen (MuJoCo/DMC via EGL, classic control via pygame).

Skipped, with the reason, where off-screen OpenGL is unavailable (no libEGL, or MUJOCO_GL set
to a backend that cannot start here).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 8, 8); d = mujoco.MjData(m); r.update_scene(d); r.render(); r.close()\n"
)


@pytest.fixture(scope="module")
def offscreen_gl():
    pytest.importorskip("mujoco")
    backend = os.environ.get("MUJOCO_GL", "")
    if backend not in ("egl", "osmesa"):
        pytest.skip(f"off-screen rendering needs MUJOCO_GL=egl or osmesa (got {backend!r})")
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"MUJOCO_GL={backend} cannot render here: {probe.stderr.strip().splitlines()[-1:]}")
    return backend


def assert_image(obs, channels, size):
    image = obs["image"]
    assert image.dtype == np.uint8 and image.shape == (channels, *size)
    assert image.flags["C_CONTIGUOUS"] and image.std() > 0  # a real frame, not a blank one


def test_dmc_pixels_and_both(offscreen_gl):
    from distwm.envs.dmc import make_dmc_env

    env = make_dmc_env("cartpole-swingup", obs_type="pixels", size=(48, 40))
    obs, _ = env.reset()
    assert set(obs) == {"image"} and env.observation_space.contains(obs)
    assert_image(obs, 3, (48, 40))
    obs, *_ = env.step(np.ones(1, np.float32))
    assert_image(obs, 3, (48, 40))
    both = make_dmc_env("ball_in_cup-catch", obs_type="both", size=32)
    obs, _ = both.reset()
    assert set(obs) == {"image", "state"} and obs["state"].shape == (8,)
    assert_image(obs, 3, (32, 32))
    assert both.render().shape == (32, 32, 3)


def test_native_mujoco_pixels(offscreen_gl):
    from distwm.envs.mujoco_env import make_mujoco_env

    from test_envs_mujoco import SLIDER_XML

    env = make_mujoco_env(SLIDER_XML, size=(32, 32))  # auto: pixels
    obs, _ = env.reset()
    assert set(obs) == {"image"}
    assert_image(obs, 3, (32, 32))
    env.close()


def test_gym_classic_control_pixels_from_render():
    pytest.importorskip("pygame")
    from distwm.envs.gym_env import make_gym_env

    env = make_gym_env("Pendulum-v1", obs_type="both", size=(24, 24))
    obs, _ = env.reset()
    assert set(obs) == {"image", "state"} and obs["state"].shape == (3,)
    assert_image(obs, 3, (24, 24))
    assert env.render().shape == (24, 24, 3)
    env.close()
