"""Shared fixtures. One local Ray instance per test session (a fresh ray.init costs ~5 s)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """Tiny test models run far faster on one thread, above all on a busy 2-core machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that needs one; shut down at the end."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        # Workers import test-only helper modules (tests/) and distwm by reference.
        here = os.path.dirname(os.path.abspath(__file__))
        pythonpath = os.pathsep.join([here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")])
        ray.init(
            num_cpus=4,
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "MUJOCO_GL": os.environ["MUJOCO_GL"]}},
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()
