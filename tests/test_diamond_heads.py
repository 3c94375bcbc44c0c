"""DIAMOND's reward / termination model and actor-critic (``distwm.models.diamond``): shapes,
the reward-sign classes, padding masks, LSTM burn-in, the reference's lambda-returns
(termination and truncation), the REINFORCE gradient, two tiny learning tasks and argument
checks. Tiny networks on 8x8 / 16x16 frames."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distwm.models.diffusion.actor_critic import ActorCriticNetwork, RLLoss
from distwm.models.diffusion.reward_termination import (
    ConvBlock,
    RewardTerminationLoss,
    RewardTerminationModel,
)


def _reward_model(**overrides):
    kwargs = {"obs_channels": 1, "action_dim": 3, "channels": (8, 8), "lstm_dim": 16, "cond_dim": 8,
              "image_size": 8, "blocks_per_stage": 1}
    return RewardTerminationModel(**{**kwargs, **overrides})


def _actor_critic(**overrides):
    kwargs = {"obs_channels": 1, "action_dim": 3, "channels": (4, 4, 8, 8), "lstm_dim": 16, "image_size": 16}
    return ActorCriticNetwork(**{**kwargs, **overrides})


def _frames(*shape):
    return torch.rand(*shape) * 2 - 1


def _randomise_heads(net):
    for head in (net.actor, net.critic):
        torch.nn.init.normal_(head.weight)


# -- shapes ------------------------------------------------------------------------------------
def test_reward_model_shapes_and_predict():
    model = _reward_model()
    obs, next_obs = _frames(2, 5, 1, 8, 8), _frames(2, 5, 1, 8, 8)
    actions = torch.randint(0, 3, (2, 5))
    rewards, ends, (h, c) = model(obs, actions, next_obs=next_obs)
    assert rewards.shape == (2, 5, 3) and ends.shape == (2, 5, 2)
    assert h.shape == c.shape == (1, 2, 16)
    assert model(obs, actions)[0].shape == (2, 5, 3)  # the seed's call (obs stands in for next_obs)
    reward, terminated, state = model.predict(obs[:, 0], actions[:, 0], (h, c), next_obs=next_obs[:, 0])
    assert reward.shape == (2,) and set(reward.tolist()) <= {-1.0, 0.0, 1.0}
    assert terminated.dtype == torch.bool and terminated.shape == (2,)
    assert state[0].shape == (1, 2, 16)
    assert [t.shape for t in model.init_hidden(4, "cpu")] == [(1, 4, 16)] * 2


def test_conv_block_shapes_and_stride():
    block = ConvBlock(4, 6, cond_dim=5)
    assert block(torch.randn(2, 4, 8, 8), torch.randn(2, 5)).shape == (2, 6, 4, 4)
    same = ConvBlock(4, 4, cond_dim=5, stride=1, attention=True)
    assert same(torch.randn(2, 4, 8, 8), torch.randn(2, 5)).shape == (2, 4, 8, 8)


def test_conv_block_is_conditioned_on_cond():
    block = ConvBlock(4, 4, cond_dim=5, stride=1)
    torch.nn.init.normal_(block.residual.conv2.weight)  # the reference zero-initialises it
    x = torch.randn(1, 4, 8, 8)
    assert not torch.allclose(block(x, torch.zeros(1, 5)), block(x, torch.ones(1, 5)))


def test_actor_critic_shapes_and_initial_policy():
    net = _actor_critic()
    obs = _frames(2, 4, 1, 16, 16)
    logits, values, (h, c) = net(obs)
    assert logits.shape == (2, 4, 3) and values.shape == (2, 4, 1) and h.shape == c.shape == (2, 16)
    # zero-initialised heads (the reference): a uniform policy and a zero value
    assert torch.equal(logits, torch.zeros_like(logits)) and torch.equal(values, torch.zeros_like(values))
    actions, state = net.get_action(obs[:, 0])
    assert actions.shape == (2,) and actions.dtype == torch.long and state[0].shape == (2, 16)
    assert net.get_actions(obs[:, 0], state, deterministic=True)[0].shape == (2,)
    value, _ = net.get_value(obs[:, 0])
    assert value.shape == (2, 1)
    assert net.get_hidden_size() == 16 and [t.shape for t in net.init_hidden(3, "cpu")] == [(3, 16)] * 2


# -- reward classes and masks ------------------------------------------------------------------
def test_reward_classes_are_the_sign_of_the_reward():
    rewards = torch.tensor([[-3.0, -0.5, 0.0, 0.2, 7.0]])
    assert RewardTerminationLoss.reward_classes(rewards).tolist() == [[0, 0, 1, 2, 2]]
    logits = torch.randn(1, 5, 3)
    ends = torch.randn(1, 5, 2)
    total, reward_loss, end_loss = RewardTerminationLoss()(logits, ends, rewards, torch.zeros(1, 5))
    assert torch.allclose(reward_loss, F.cross_entropy(logits[0], torch.tensor([0, 0, 1, 2, 2])))
    assert torch.allclose(end_loss, F.cross_entropy(ends[0], torch.zeros(5, dtype=torch.long)))
    assert torch.allclose(total, reward_loss + end_loss)


def test_masked_steps_do_not_change_the_loss():
    loss = RewardTerminationLoss()
    rewards, ends = torch.randn(2, 6), (torch.rand(2, 6) < 0.3).float()
    reward_logits, end_logits = torch.randn(2, 6, 3), torch.randn(2, 6, 2)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False  # padding at the end of the first segment
    base = loss(reward_logits, end_logits, rewards, ends, mask)
    changed = [t.clone() for t in (reward_logits, end_logits, rewards, ends)]
    for t in changed[:3]:
        t[0, 4:] = torch.randn_like(t[0, 4:]) * 5
    changed[3][0, 4:] = 1.0 - ends[0, 4:]
    for got, want in zip(loss(*changed, mask), base):
        assert torch.allclose(got, want)
    unmasked = [t.clone() for t in changed]
    unmasked[0][0, 1, 0] += 3.0
    assert not torch.allclose(loss(*unmasked, mask)[1], base[1])
    assert not torch.allclose(loss(*changed)[0], base[0])  # without the mask the padding counts
    empty = loss(reward_logits, end_logits, rewards, ends, torch.zeros_like(mask))
    assert all(float(t) == 0.0 for t in empty)


# -- burn-in -----------------------------------------------------------------------------------
def test_reward_model_burn_in_changes_the_outputs():
    model = _reward_model()
    obs, actions = _frames(2, 4, 1, 8, 8), torch.randint(0, 3, (2, 4))
    state = model.burn_in(obs[:, :3], actions[:, :3], next_obs=obs[:, 1:])
    assert not state[0].requires_grad
    fresh = model(obs[:, 3:], actions[:, 3:])[0]
    burnt = model(obs[:, 3:], actions[:, 3:], state)[0]
    assert not torch.allclose(fresh, burnt)
    whole = model(obs[:, :3], actions[:, :3], next_obs=obs[:, 1:])[2]
    assert torch.allclose(whole[0], state[0])


def test_actor_critic_burn_in_changes_the_outputs_and_resets_at_episode_starts():
    net = _actor_critic()
    _randomise_heads(net)
    frames = _frames(2, 5, 1, 16, 16)
    state = net.burn_in(frames[:, :4])
    assert not state[0].requires_grad
    fresh_logits, fresh_values, _ = net.step(frames[:, 4], net.initial_state(2))
    logits, values, _ = net.step(frames[:, 4], state)
    assert not torch.allclose(fresh_logits, logits) and not torch.allclose(fresh_values, values)
    is_first = torch.zeros(2, 4, dtype=torch.bool)
    is_first[:, 3] = True  # an episode starts at the last burn-in frame: only it counts
    reset = net.burn_in(frames[:, :4], is_first)
    alone = net.burn_in(frames[:, 3:4])
    assert torch.allclose(reset[0], alone[0]) and not torch.allclose(reset[0], state[0])


# -- lambda-returns ----------------------------------------------------------------------------
def test_lambda_returns_match_a_hand_computation_with_termination_and_truncation():
    loss = RLLoss(discount_factor=0.5, lambda_returns=0.5, clip_rewards=False)
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    bootstrap = torch.tensor([[10.0, 20.0, 30.0, 40.0], [10.0, 20.0, 30.0, 40.0]])  # V after each step
    ends = torch.tensor([[0, 0, 1, 0], [0, 1, 0, 0]])
    truncs = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]])
    # row 0: R3 = 4 + .5*40 = 24 (last step); R2 = 3 (terminated); R1 = 2 + .5*20 = 12 (truncated:
    #        bootstrap, no lambda-mixing across the reset); R0 = 1 + .5*(.5*10 + .5*12) = 6.5
    # row 1: R3 = 24; R2 = 3 + .5*(.5*30 + .5*24) = 16.5; R1 = 2 (terminated); R0 = 1 + .5*(.5*10 + .5*2) = 4
    expected = torch.tensor([[6.5, 12.0, 3.0, 24.0], [4.0, 2.0, 16.5, 24.0]])
    assert torch.allclose(loss.compute_lambda_returns(rewards, bootstrap, ends, truncs), expected)
    # the seed's layout (values of states 0..T) is the same where nothing resets
    values = torch.cat([torch.full((2, 1), -99.0), bootstrap], 1)
    alive = torch.zeros(2, 4)
    assert torch.allclose(loss.compute_lambda_returns(rewards, values, alive),
                          loss.compute_lambda_returns(rewards, bootstrap, alive))
    # a truncation without ``truncated`` is a termination: no bootstrap
    assert loss.compute_lambda_returns(rewards, bootstrap, truncs)[0, 1] == 2.0


def test_lambda_returns_edge_cases_and_reward_clipping():
    rewards, values = torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([[0.0, 2.0, 4.0, 8.0]])
    alive = torch.zeros(1, 3)
    one_step = RLLoss(discount_factor=0.5, lambda_returns=0.0).compute_lambda_returns(rewards, values, alive)
    assert torch.allclose(one_step, torch.tensor([[2.0, 3.0, 5.0]]))  # r + gamma V_{t+1}
    monte_carlo = RLLoss(discount_factor=0.5, lambda_returns=1.0).compute_lambda_returns(rewards, values, alive)
    assert torch.allclose(monte_carlo, torch.tensor([[1.0 + 0.5 + 0.25 + 0.125 * 8, 1.0 + 0.5 + 0.25 * 8, 1.0 + 4.0]]))
    clipped = RLLoss(discount_factor=0.5, lambda_returns=0.0).compute_lambda_returns(
        torch.tensor([[5.0, -3.0, 0.0]]), values, alive)
    assert torch.allclose(clipped, torch.tensor([[2.0, 1.0, 4.0]]))  # sign(r) + .5 V_{t+1}


# -- the actor-critic loss ---------------------------------------------------------------------
@pytest.mark.parametrize("advantage", [2.0, -2.0])
def test_policy_gradient_follows_the_advantage(advantage):
    logits = torch.zeros(1, 1, 4, requires_grad=True)
    values = torch.tensor([[1.0, 0.0]], requires_grad=True)
    actions = torch.tensor([[2]])
    returns = values.detach()[:, :1] + advantage
    loss = RLLoss(entropy_weight=0.0).policy_loss(logits, actions, returns, values)
    loss.backward()
    assert values.grad is None or torch.all(values.grad == 0)  # the baseline is detached
    assert (logits.grad[0, 0, 2] < 0) == (advantage > 0)  # descent raises log pi(a) iff A > 0
    with torch.no_grad():
        stepped = logits - logits.grad
    before, after = (torch.log_softmax(x, -1)[0, 0, 2] for x in (logits, stepped))
    assert (after > before) == (advantage > 0)


def test_entropy_bonus_and_value_loss_gradients():
    logits = torch.tensor([[[2.0, 0.0, 0.0]]], requires_grad=True)
    returns = torch.zeros(1, 1)
    RLLoss(entropy_weight=1.0).policy_loss(logits, torch.tensor([[0]]), returns, torch.zeros(1, 2)).backward()
    assert logits.grad[0, 0, 0] > 0  # zero advantage: the bonus lowers the dominant logit
    values = torch.tensor([[0.0, 5.0]], requires_grad=True)
    RLLoss().value_loss(values, torch.tensor([[3.0]])).backward()
    assert values.grad[0, 0] < 0 and values.grad[0, 1] == 0  # V_0 moves up towards R_0 = 3


def test_rl_loss_forward_sums_its_terms():
    loss = RLLoss()
    logits = torch.randn(2, 3, 4, requires_grad=True)
    values = torch.randn(2, 3, 1, requires_grad=True)
    out = loss(logits, torch.randint(0, 4, (2, 3)), torch.randn(2, 3), values, torch.zeros(2, 3),
               truncated=torch.zeros(2, 3), bootstrap_values=torch.randn(2, 3))
    assert torch.allclose(out["loss"], out["loss_actions"] + out["loss_entropy"] + out["loss_values"])
    assert out["lambda_returns"].shape == (2, 3) and not out["lambda_returns"].requires_grad
    out["loss"].backward()
    assert values.grad is not None and logits.grad is not None


# -- learning ----------------------------------------------------------------------------------
def test_reward_model_learns_a_deterministic_task():
    """The reward's sign is the action's (0: -1, 1: 0, 2: +1); the episode ends on a bright next frame."""
    model = _reward_model()
    loss_fn = RewardTerminationLoss()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    actions = torch.randint(0, 3, (16, 4))
    bright = torch.rand(16, 4) < 0.3
    obs = _frames(16, 4, 1, 8, 8) * 0.1
    next_obs = torch.where(bright[..., None, None, None], torch.ones_like(obs), -torch.ones_like(obs))
    rewards = actions.float() - 1.0
    for _ in range(50):
        reward_logits, end_logits, _ = model(obs, actions, next_obs=next_obs)
        total, _, _ = loss_fn(reward_logits, end_logits, rewards, bright.float())
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    reward, terminated, _ = model.predict(obs[:, 0], actions[:, 0], next_obs=next_obs[:, 0], sample=False)
    assert torch.equal(reward, rewards[:, 0]) and torch.equal(terminated, bright[:, 0])
    assert float(total.detach()) < 0.3


def test_actor_critic_learns_a_contextual_bandit():
    """A bright frame pays +1 for action 0, a dark one for action 1; every step ends the episode."""
    net = _actor_critic(action_dim=2)
    loss_fn = RLLoss()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        bright = torch.rand(32) < 0.5
        frames = torch.where(bright[:, None, None, None, None], 1.0, -1.0).expand(32, 1, 1, 16, 16)
        logits, values, _ = net(frames)
        actions = torch.distributions.Categorical(logits=logits).sample()
        rewards = (actions[:, 0] == (~bright).long()).float()[:, None]
        out = loss_fn(logits, actions, rewards, torch.cat([values[..., 0], torch.zeros(32, 1)], 1), torch.ones(32, 1))
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
    frames = torch.tensor([1.0, -1.0])[:, None, None, None].expand(2, 1, 16, 16)
    probs = torch.softmax(net.step(frames, net.initial_state(2))[0], -1)
    assert probs[0, 0] > 0.9 and probs[1, 1] > 0.9
    value, _ = net.get_value(frames)
    assert torch.all(value > 0.5)  # the value learns the (now high) expected reward


# -- argument checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("build, message", [
    (lambda: ConvBlock(4, 4, 5, stride=3), r"one of \(1, 2\), got 3"),
    (lambda: _reward_model(channels=()), r"channels must be a non-empty sequence of integers >= 1, got \(\)"),
    (lambda: _reward_model(action_dim=0), r"action_dim must be an integer >= 1, got 0"),
    (lambda: _actor_critic(image_size=24), r"image_size must be a multiple of 16 .* got 24"),
    (lambda: _actor_critic(channels=(4, -1)), r"got \(4, -1\)"),
    (lambda: RLLoss(discount_factor=1.5), r"discount_factor must be a finite number in \(0, 1\], got 1.5"),
    (lambda: RLLoss(lambda_returns=-0.1), r"lambda_returns must be a finite number in \[0, 1\], got -0.1"),
    (lambda: RLLoss(entropy_weight=float("nan")), r"entropy_weight must be a finite number >= 0, got nan"),
])
def test_bad_arguments_raise_value_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_inputs_raise_value_errors():
    model = _reward_model()
    obs = _frames(2, 3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\] \(action_dim=3\), got 7"):
        model(obs, torch.tensor([[0, 1, 7], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"obs must be \(B, T, 1, 8, 8\), got \(2, 3, 1, 4, 4\)"):
        model(_frames(2, 3, 1, 4, 4), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"frames must be \(\.\.\., 1, 16, 16\), got \(2, 1, 8, 8\)"):
        _actor_critic().step(_frames(2, 1, 8, 8), _actor_critic().initial_state(2))
    loss = RLLoss()
    with pytest.raises(ValueError, match=r"values must be \(B, T\) or \(B, T \+ 1\) with T = 3, got \(2, 5\)"):
        loss.compute_lambda_returns(torch.zeros(2, 3), torch.zeros(2, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="hold no bootstrap value"):
        loss(torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))
