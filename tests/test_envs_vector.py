"""Subprocess vector env: batched stepping, autoreset, and failures that raise instead of hanging.

Worker processes start with ``spawn`` (a fresh interpreter importing gymnasium and distwm: seconds
on a loaded machine), so a short answer timeout is set only around the step that hangs, never
around a start.
"""

from __future__ import annotations

import functools
import os
import time

import gymnasium
import numpy as np
import pytest

from distwm.envs.gym_env import make_gym_env
from distwm.envs.vector_env import EnvWorkerError, NumpyVectorizedEnv, TorchVectorizedEnv


class Faulty(gymnasium.Wrapper):
    """Misbehaves at step ``after``: raises, kills its process, or hangs."""

    def __init__(self, env, after, mode):
        super().__init__(env)
        self.after, self.mode, self.steps = after, mode, 0

    def step(self, action):
        self.steps += 1
        if self.steps >= self.after:
            if self.mode == "raise":
                raise RuntimeError("simulator exploded")
            if self.mode == "exit":
                os._exit(7)
            time.sleep(60)
        return self.env.step(action)


def faulty_cartpole(after, mode):
    return Faulty(make_gym_env("CartPole-v1"), after, mode)


cartpole = functools.partial(make_gym_env, "CartPole-v1")
PUSH_RIGHT = np.array([0.0, 1.0], np.float32)


def test_numpy_vector_env_batches_and_autoresets():
    with NumpyVectorizedEnv(cartpole, num_workers=2, envs_per_worker=2, seed=0) as venv:
        assert venv.num_envs == 4 and venv.action_space.n == 2
        batch = venv.reset_batch()
        assert batch["obs"]["state"].shape == (4, 4) and batch["obs"]["state"].dtype == np.float32
        states = batch["obs"]["state"]
        assert len({tuple(s) for s in states}) == 4  # envs are seeded differently
        saw_end = False
        for _ in range(60):  # pushing right topples the pole within ~10-60 steps
            batch = venv.step_batch(np.stack([PUSH_RIGHT] * 4))
            assert batch["reward"].shape == (4,) and batch["done"].dtype == bool
            for index in np.flatnonzero(batch["done"]):
                saw_end = True
                final = batch["info"][index]["final_observation"]["state"]
                assert abs(final[2]) > 0.2 or abs(final[0]) > 2.4  # the pole fell (or the cart left)
                assert abs(batch["obs"]["state"][index][2]) < 0.06  # a fresh episode started
        assert saw_end
        with pytest.raises(ValueError, match="4 envs"):
            venv.step_batch(np.stack([PUSH_RIGHT] * 3))


def test_torch_vector_env_returns_tensors():
    import torch
    with TorchVectorizedEnv(cartpole, num_workers=1, envs_per_worker=2, seed=1) as venv:
        batch = venv.reset_batch()
        assert isinstance(batch["obs"]["state"], torch.Tensor) and batch["obs"]["state"].shape == (2, 4)
        batch = venv.step_batch(torch.tensor(np.stack([PUSH_RIGHT] * 2)))
        assert batch["reward"].dtype == torch.float32 and batch["done"].dtype == torch.bool


@pytest.mark.parametrize("mode, error, match", [
    ("raise", EnvWorkerError, "simulator exploded"),
    ("exit", EnvWorkerError, "exit code 7"),
])
def test_a_crashed_env_raises_in_the_parent(mode, error, match):
    # the default answer timeout (300 s) is far beyond the test's: only the crash detection
    # can end this in time, and a TimeoutError would not match ``error``
    venv = NumpyVectorizedEnv(functools.partial(faulty_cartpole, 2, mode), num_workers=2,
                              envs_per_worker=1, seed=0)
    venv.reset_batch()
    with pytest.raises(error, match=match):
        for _ in range(3):
            venv.step_batch(np.stack([PUSH_RIGHT] * 2))
    assert not any(worker.is_alive() for worker in venv._workers)  # everything was shut down


def test_a_hung_env_times_out():
    venv = NumpyVectorizedEnv(functools.partial(faulty_cartpole, 1, "hang"), num_workers=1,
                              envs_per_worker=1, seed=0)  # the start: the default 300 s
    venv.reset_batch()
    venv.timeout = 2.0  # the step sleeps 60 s: a short timeout only around what hangs
    with pytest.raises(TimeoutError, match="2 s"):
        venv.step_batch(np.stack([PUSH_RIGHT]))
    assert not venv._workers[0].is_alive()


def test_workers_start_lazily_and_arguments_are_checked():
    venv = NumpyVectorizedEnv(cartpole, num_workers=1, envs_per_worker=1, seed=0)
    assert venv._workers == []  # constructing starts nothing
    venv.close()
    with pytest.raises(ValueError, match="num_workers"):
        NumpyVectorizedEnv(cartpole, num_workers=0)
    with pytest.raises(ValueError, match="start_method"):
        NumpyVectorizedEnv(cartpole, start_method="threads")
    with pytest.raises(ValueError, match="env_factory"):
        NumpyVectorizedEnv("CartPole-v1")
