"""PlanetCore's protocol details: the non-finite guard, the one checkpoint format, the seed paths."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from distwm.agent import DEFAULT_SAMPLE, NonFiniteLossError
from distwm.models.planet import CHECKPOINT_FORMAT, PlanetCore
from distwm.models.planet.losses import memory_sequences, time_major_batch, train_step
from planet_testing import tiny_planet_config, toy_memory

STATE_SPACE = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _core(**overrides) -> PlanetCore:
    torch.manual_seed(0)
    return PlanetCore.from_config(tiny_planet_config(**overrides), STATE_SPACE, ACTION_SPACE)


def _batch(memory=None, obs_key="state"):
    np.random.seed(0)
    return {DEFAULT_SAMPLE: memory_sequences(memory or toy_memory(), 4, 6, obs_key)}


def test_memory_sequences_are_replay_batches_with_a_mask():
    batch = memory_sequences(toy_memory(length=3), 2, 5, "state")
    assert batch["state"].shape == (2, 6, 4) and batch["action"].shape == (2, 6, 2)
    assert batch["is_first"][:, 0].all() and not batch["is_first"][:, 1:].any()
    np.testing.assert_array_equal(batch["action"][:, 0], 0.0)
    np.testing.assert_array_equal(batch["mask"], [[1, 1, 1, 1, 0, 0]] * 2)  # 3 transitions + start
    tensors = time_major_batch(batch, "state", 5)
    assert tensors["obs"].shape == (6, 2, 4) and tensors["mask"].shape == (6, 2)


def test_update_takes_its_one_named_sample():
    core = _core()
    metrics = core.update(_batch())
    assert metrics["skipped"] == 0.0 and metrics["updates"] == 1.0 and core.updates == 1
    with pytest.raises(ValueError, match="takes {'sequences': batch}.*got samples \\['frames'\\]"):
        core.update({"frames": _batch()[DEFAULT_SAMPLE]})


def test_a_non_finite_loss_or_gradient_skips_the_update_and_a_run_of_them_raises():
    core = _core()
    assert core.max_nonfinite_updates == getattr(core.config, "max_nonfinite_updates", 10)
    core.max_nonfinite_updates = 3
    before = core.get_weights()
    bad = _batch()
    bad[DEFAULT_SAMPLE]["state"][0, 2, 1] = np.nan
    for expected in (1.0, 2.0):
        metrics = core.update(bad)
        assert metrics["skipped"] == 1.0 and metrics["nonfinite_updates"] == expected
        assert not np.isfinite(metrics["loss"])
    assert core.updates == 0 and all(torch.equal(before[k], v) for k, v in core.get_weights().items())
    assert core.update(_batch())["skipped"] == 0.0  # a good update ends the run of bad ones
    core.update(bad)
    core.update(bad)
    with pytest.raises(NonFiniteLossError, match="3 consecutive updates had a non-finite loss"):
        core.update(bad)
    assert issubclass(NonFiniteLossError, FloatingPointError)


def test_a_non_finite_gradient_leaves_the_weights_alone():
    core = _core()
    batch = time_major_batch(_batch()[DEFAULT_SAMPLE], "state", 5)
    hook = core.rssm.fc_prior[0].weight.register_hook(lambda g: g * float("nan"))
    before = core.get_weights()
    metrics = train_step(core.rssm, core.optimizer, batch)
    hook.remove()
    assert metrics["skipped"] == 1.0 and np.isfinite(metrics["loss"]) and not np.isfinite(metrics["grad_norm"])
    assert all(torch.equal(before[k], v) for k, v in core.get_weights().items())
    assert not core.optimizer.state  # Adam never stepped


def test_state_dict_is_in_the_one_format_and_names_every_mismatch():
    core = _core()
    core.update(_batch())
    state = core.state_dict()
    assert state["format"] == CHECKPOINT_FORMAT == "distwm.planet/1"
    assert state["architecture"] == {"state_size": 16, "latent_size": 4, "hidden_size": 16, "embedding_size": 16,
                                     "activation": "relu", "obs_shape": [4], "action_size": 2, "discrete": False}
    assert all(v.device.type == "cpu" for v in state["rssm"].values())
    restored = _core()
    restored.load_state_dict(state)
    assert restored.updates == 1
    other = PlanetCore.from_config(tiny_planet_config(state_size=8, hidden_size=32), STATE_SPACE, ACTION_SPACE)
    with pytest.raises(ValueError) as info:
        other.load_state_dict(state)
    assert "state_size: checkpoint 16 vs agent 8" in str(info.value)
    assert "hidden_size: checkpoint 16 vs agent 32" in str(info.value)
    with pytest.raises(ValueError, match="not a Planet checkpoint \\(format 'distwm.dreamer/1'"):
        restored.load_state_dict({**state, "format": "distwm.dreamer/1"})


def test_the_seed_module_paths_re_export_the_package():
    import distwm.models.planet as package
    from distwm.models import planet_agent, planet_env, planet_loss, rssm, rssm_heads

    assert planet_agent.PlanetAgent is planet_agent.PlanetCore is package.PlanetCore
    assert rssm.RecurrentStateSpaceModel is package.RecurrentStateSpaceModel
    assert rssm_heads.RewardModel is package.RewardModel and planet_env.PlanetEnv is package.PlanetEnv
    assert planet_loss.train_step is train_step


def test_the_seed_training_step_and_update_are_the_same_step():
    from distwm.training.train_planet import train

    memory, seed_core, core = toy_memory(), _core(), _core()
    np.random.seed(3)
    torch.manual_seed(3)
    seed_metrics = train(memory, seed_core.rssm, seed_core.optimizer, "cpu", N=4, H=6, beta=core.kl_beta,
                         free_nats=core.config.free_nats, grad_clip=core.config.grad_clip_norm)
    np.random.seed(3)
    torch.manual_seed(3)
    metrics = core.update({DEFAULT_SAMPLE: memory_sequences(memory, 4, 6, "state")})
    assert metrics["loss"] == pytest.approx(seed_metrics["loss"], rel=1e-6)
    assert all(torch.allclose(v, core.get_weights()[k]) for k, v in seed_core.get_weights().items())
