"""The CEM planner (RSSMPolicy) on toy models whose best actions are known."""

from __future__ import annotations

import pytest
import torch

from distwm.controller.rssm_policy import RSSMPolicy
from distwm.models.planet import RecurrentStateSpaceModel


class ToyModel:
    """Latent 'state' = the action just taken; reward = -|action - target|^2 (best: target)."""

    action_size, state_size, latent_size = 2, 2, 1

    def __init__(self, target):
        self.target = torch.as_tensor(target, dtype=torch.float32)

    def rollout_prior(self, act, h_t, s_t):
        return act.clone(), torch.zeros(*act.shape[:2], 1)

    def pred_reward(self, h_t, s_t):
        return -((h_t - self.target) ** 2).sum(-1)


class OneHotToy(ToyModel):
    """Discrete actions: reward 1 for action index 2 of 4, else 0."""

    action_size, state_size = 4, 4

    def pred_reward(self, h_t, s_t):
        return h_t[..., 2]


def _policy(model, **kw):
    settings = dict(planning_horizon=3, num_candidates=200, num_iterations=5, top_candidates=20, device="cpu")
    settings.update(kw)
    return RSSMPolicy(model, **settings)


def test_cem_finds_the_known_best_action_and_beats_random():
    torch.manual_seed(0)
    model = ToyModel([0.5, -0.3])
    policy = _policy(model)
    h, s = torch.zeros(6, 2), torch.zeros(6, 1)  # six envs planned in one batch
    action = policy.plan(h, s)
    assert action.shape == (6, 2)
    torch.testing.assert_close(action, model.target.expand(6, 2), atol=0.05, rtol=0)
    planned = model.pred_reward(action, None).mean()
    random = model.pred_reward(torch.rand(10000, 2) * 2 - 1, None).mean()
    assert planned > random + 0.5


def test_actions_stay_within_bounds_even_when_the_optimum_is_outside():
    torch.manual_seed(0)
    model = ToyModel([3.0, -3.0])
    policy = _policy(model, action_low=[-1.0, -0.5], action_high=[0.2, 1.0])
    action = policy.plan(torch.zeros(4, 2), torch.zeros(4, 1))
    assert (action[:, 0] <= 0.2 + 1e-6).all() and (action[:, 1] >= -0.5 - 1e-6).all()
    torch.testing.assert_close(action, torch.tensor([[0.2, -0.5]]).expand(4, 2), atol=0.05, rtol=0)
    noisy = policy.explore(action.repeat(100, 1))
    assert (noisy[:, 0] <= 0.2 + 1e-6).all() and (noisy[:, 0] >= -1.0 - 1e-6).all()
    assert noisy.std() > 0.01


def test_discrete_cem_returns_the_best_one_hot_action():
    torch.manual_seed(0)
    policy = _policy(OneHotToy([0.0]), discrete=True, action_low=0.0, action_high=1.0)
    action = policy.plan(torch.zeros(3, 4), torch.zeros(3, 1))
    torch.testing.assert_close(action, torch.tensor([[0.0, 0.0, 1.0, 0.0]]).expand(3, 4))
    explored = policy.explore(action.repeat(200, 1))
    assert (explored.sum(-1) == 1).all() and (explored.argmax(-1) != 2).any()


def test_poll_filters_and_plans_with_an_rssm():
    torch.manual_seed(0)
    rssm = RecurrentStateSpaceModel(2, 8, 3, 8, 16, obs_shape=(4,))
    policy = _policy(rssm, num_candidates=16, top_candidates=4, num_iterations=2)
    policy.reset()
    action = policy.poll(torch.zeros(4))
    assert action.shape == (1, 2) and (action.abs() <= 1).all()
    assert not torch.equal(policy.h, torch.zeros(1, 8))
    torch.testing.assert_close(policy.a, action)
    with pytest.raises(ValueError, match="call reset"):
        policy.poll(torch.zeros(3, 4))
    policy.reset(3)
    assert policy.poll(torch.zeros(3, 4), explore=True).shape == (3, 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_candidates=300), "cannot exceed"),
    (dict(planning_horizon=0), "planning_horizon must be a positive int"),
    (dict(action_low=1.0, action_high=-1.0), "must be below"),
    (dict(action_noise=-0.1), "action_noise"),
])
def test_bad_planner_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _policy(ToyModel([0.0, 0.0]), **kwargs)
