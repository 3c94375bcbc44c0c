"""Termination is not truncation, through the whole path (DESIGN.md "Data").

A time limit ends an episode (``is_last``) without ending the MDP (``is_terminal`` false): the
value after it is still worth bootstrapping. A real termination sets both. These tests follow
the flags from the env adapter through :class:`EnvRunner` into the continue head's target, the
imagination's start weight and the replayed lambda returns, with expected values computed by
hand here, and into PlaNet's episode memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distwm.configs.dreamer_config import DreamerConfig
from distwm.envs.factory import make_env_from_config
from distwm.loop.env_loop import EnvRunner
from distwm.models.dreamer import DreamerCore
from distwm.models.dreamer.replay_value import replay_lambda_returns, replay_last
from dreamer_helpers import random_batch, tiny_config

LEFT, RIGHT = np.array([1, 0], np.float32), np.array([0, 1], np.float32)


class Constant:
    """The acting half of the protocol: always the same action."""

    def __init__(self, action):
        self.action = action

    def initial_state(self, num_envs):
        return None

    def act(self, obs, state, explore):
        return np.stack([self.action] * len(obs["is_first"])), None


def cartpole(time_limit: int):
    cfg = DreamerConfig(env="CartPole-v1", env_backend="gym", obs_type="state",
                        time_limit=time_limit, action_repeat=1)
    return make_env_from_config(cfg, seed=0)


def run(runner: EnvRunner, steps: int) -> dict[str, np.ndarray]:
    records = [runner.step()[0] for _ in range(steps)]
    return {k: np.stack([r[k] for r in records])[:, 0] for k in ("is_first", "is_last", "is_terminal", "action")}


def test_a_time_limit_is_recorded_as_last_but_not_terminal():
    # alternating pushes keep the pole up: the 5-step limit ends the episode, not the pole
    env = cartpole(time_limit=5)
    runner = EnvRunner([env], Constant(LEFT), seeds=[0])
    flags = []
    for t in range(7):
        runner.agent = Constant(LEFT if t % 2 else RIGHT)
        flags.append(runner.step()[0])
    first = [bool(f["is_first"][0]) for f in flags]
    last = [bool(f["is_last"][0]) for f in flags]
    terminal = [bool(f["is_terminal"][0]) for f in flags]
    assert first == [True, False, False, False, False, False, True]
    assert last == [False, False, False, False, False, True, False]  # step 5: the limit
    assert not any(terminal)
    assert not flags[6]["action"].any()  # the first step of the next episode has no action


def test_a_falling_pole_is_recorded_as_terminal_and_last():
    env = cartpole(time_limit=500)
    runner = EnvRunner([env], Constant(LEFT), seeds=[0])
    flags = run(runner, 40)  # pushing left only: the pole falls within ~10 steps, repeatedly
    ends = np.flatnonzero(flags["is_last"])
    assert len(ends) >= 2 and ends[0] > 3
    np.testing.assert_array_equal(flags["is_terminal"], flags["is_last"])  # every end is a fall
    assert flags["is_first"][ends[ends < 39] + 1].all()


# -- Dreamer ------------------------------------------------------------------------------

SHAPES = {"state": (5,)}


def truncated_batch() -> dict[str, np.ndarray]:
    """Row 0 ends by a termination at step 3, row 1 by a time limit at step 3; both start a
    new episode at step 4."""
    batch = random_batch(SHAPES, 2, True, batch=2, steps=6, seed=3)
    batch["is_first"][:] = False
    batch["is_first"][:, [0, 4]] = True
    batch["action"][batch["is_first"]] = 0.0
    batch["is_terminal"][:] = False
    batch["is_terminal"][0, 3] = True
    batch["is_last"][:] = False
    batch["is_last"][:, 3] = True
    return batch


@pytest.mark.parametrize("version", ["v3", "v3-2024"])
def test_the_continue_head_learns_one_minus_terminal_not_one_minus_last(version):
    torch.manual_seed(0)
    core = DreamerCore(tiny_config(version), SHAPES, 2, discrete=True)
    batch = truncated_batch()
    seen = {}
    original = core.model_loss

    def spy(data):
        seen["is_terminal"] = data["is_terminal"].clone()
        return original(data)

    core.model_loss = spy
    core.update({"sequences": batch})
    start = core.args.replay_context  # v3-2024 trains on the steps after its context step
    np.testing.assert_array_equal(seen["is_terminal"].numpy(), batch["is_terminal"][:, start:])
    # the continue loss by hand: BCE of the head's logits against 1 - terminal (times the
    # discount with contdisc) on the posterior features
    target = 1.0 - torch.as_tensor(batch["is_terminal"][:, start:]).float()
    if core.args.cont_discount:
        target = target * core.args.discount
    assert target[0, 3 - start] == 0.0 and target[1, 3 - start] > 0.99  # truncation: continue
    data = core._batch_to_tensors(batch)
    if core.args.replay_context:
        data = core._apply_replay_context(data, batch)
    _, post, metrics = core.model_loss(data)
    with torch.no_grad():
        logits = core.world_model.cont(core.world_model.rssm.get_feat(post)).base_dist.logits
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="mean")
    assert float(metrics["cont_loss"]) == pytest.approx(float(expected), rel=1e-5)
    wrong = F.binary_cross_entropy_with_logits(
        logits, (1.0 - torch.as_tensor(batch["is_last"][:, start:]).float()) * (
            core.args.discount if core.args.cont_discount else 1.0), reduction="mean")
    assert abs(float(wrong) - float(expected)) > 1e-4  # the test can tell the two apart


def test_imagination_continues_from_a_truncated_state_and_stops_at_a_terminal_one():
    torch.manual_seed(0)
    core = DreamerCore(tiny_config("v3", imagine_cont="prob"), SHAPES, 2, discrete=True)
    batch = truncated_batch()
    seen = {}
    original = core.imagine

    def spy(post, is_terminal):
        seen["is_terminal"] = is_terminal.clone()
        imag = original(post, is_terminal)
        seen["imag"] = imag
        return imag

    core.imagine = spy
    core.update({"sequences": batch})
    np.testing.assert_array_equal(seen["is_terminal"].numpy(), batch["is_terminal"])
    # start states flattened batch-major: row 0 step 3 (terminal) and row 1 step 3 (time limit)
    cont0 = seen["imag"].cont[0].reshape(2, 6)
    assert cont0[0, 3] == 0.0 and cont0[1, 3] == 1.0
    weight = seen["imag"].weight.reshape(-1, 2, 6)
    assert torch.all(weight[1:, 0, 3] == 0.0)  # nothing after a terminal start counts
    assert torch.all(weight[1:, 1, 3] > 0.0)


def test_replayed_lambda_returns_bootstrap_through_a_time_limit_and_stop_at_a_terminal():
    gamma, lam = 0.9, 0.5
    reward = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]] * 2)
    boot = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0]] * 2)
    data = {"is_first": torch.tensor([[1, 0, 0, 1, 0]] * 2, dtype=torch.bool),
            "is_terminal": torch.tensor([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool),
            "is_last": torch.tensor([[0, 0, 1, 0, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)}
    last = replay_last(data)
    returns = replay_lambda_returns(reward, data["is_terminal"], last, boot, gamma, lam)
    # by hand, R_t = r_{t+1} + l_{t+1} ((1 - lam c_{t+1}) b_{t+1} + lam c_{t+1} R_{t+1}),
    # l = gamma (1 - terminal), c = 1 - last; R_4 = b_4
    r3 = 4.0 + gamma * ((1 - lam) * 50.0 + lam * 50.0)  # step 4 continues: R_4 = b_4 = 50
    # row 0: step 2 terminal -> R_1 = r_2 (no bootstrap)
    r1_term = 2.0
    r0_term = 1.0 + gamma * ((1 - lam) * 20.0 + lam * r1_term)
    # row 1: step 2 is a time limit -> R_1 = r_2 + gamma * b_2 (bootstrap, no lambda mixing)
    r1_trunc = 2.0 + gamma * 30.0
    r0_trunc = 1.0 + gamma * ((1 - lam) * 20.0 + lam * r1_trunc)
    # R_2 (the step at the episode end): step 3 starts a new episode, so it is not followed;
    # it still reads r_3 and b_3 (the weight 1 - last_2 = 0 drops it from the loss)
    r2 = 3.0 + gamma * ((1 - lam) * 40.0 + lam * r3)
    expected = torch.tensor([[r0_term, r1_term, r2, r3], [r0_trunc, r1_trunc, r2, r3]])
    torch.testing.assert_close(returns, expected)


# -- PlaNet -------------------------------------------------------------------------------

class _TorchCartPole:
    """PlaNet's env interface over the config-built CartPole (state vector as the obs)."""

    def __init__(self, time_limit: int):
        self.env = cartpole(time_limit)
        self.max_episode_steps = 100
        self.t = 0

    def reset(self):
        self.t = 0
        return torch.as_tensor(self.env.reset(seed=0)[0]["state"])

    def sample_random_action(self):
        self.t += 1
        return torch.as_tensor(LEFT if self.t % 2 else RIGHT)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action))
        return torch.as_tensor(obs["state"]), reward, terminated, truncated, info


def test_planet_episodes_store_terminal_only_for_a_real_termination():
    from distwm.controller.rollout_generator import RolloutGenerator

    truncated = RolloutGenerator(_TorchCartPole(time_limit=5), "cpu").rollout_once(random_policy=True)
    assert len(truncated.r) == 5 and not any(truncated.t)

    class LeftOnly(_TorchCartPole):
        def sample_random_action(self):
            return torch.as_tensor(LEFT)

    fallen = RolloutGenerator(LeftOnly(time_limit=500), "cpu").rollout_once(random_policy=True)
    assert 3 < len(fallen.r) < 100
    assert fallen.t[-1] == 1.0 and sum(fallen.t) == 1.0
