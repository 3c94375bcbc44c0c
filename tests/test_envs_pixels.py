"""Image observations rendered off-screen (MuJoCo/DMC via EGL, classic control via pygame).

Where off-screen OpenGL is unavailable (no libEGL, or MUJOCO_GL set to a backend that cannot
start here) these skip with what to install; under CI=true they fail instead (conftest.require).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import require, require_module

PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 8, 8); d = mujoco.MjData(m); r.update_scene(d); r.render(); r.close()\n"
)


GL_INSTALL = ("on Debian/Ubuntu `apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri` (what "
              "scripts/setup_env.sh does when run as root), or libosmesa6 with MUJOCO_GL=osmesa")


@pytest.fixture(scope="module")
def offscreen_gl():
    require_module("mujoco", "pip install -e '.[dmc]' (the test extra has it)")
    backend = os.environ.get("MUJOCO_GL", "")
    require(backend in ("egl", "osmesa"), f"off-screen rendering (MUJOCO_GL={backend!r})",
            "set MUJOCO_GL=egl (the default of scripts/setup_env.sh and tests/conftest.py) or osmesa")
    # the probe starts a fresh interpreter and a GL context: generous, it only guards a hang
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    last = probe.stderr.strip().splitlines()[-1:]
    require(probe.returncode == 0, f"a working MUJOCO_GL={backend} ({last})", GL_INSTALL)
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
    require_module("pygame", "pip install 'gymnasium[classic-control]' (a distwm dependency)")
    from distwm.envs.gym_env import make_gym_env

    env = make_gym_env("Pendulum-v1", obs_type="both", size=(24, 24))
    obs, _ = env.reset()
    assert set(obs) == {"image", "state"} and obs["state"].shape == (3,)
    assert_image(obs, 3, (24, 24))
    assert env.render().shape == (24, 24, 3)
    env.close()
