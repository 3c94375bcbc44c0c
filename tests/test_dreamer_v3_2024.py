"""``version: v3-2024``: the current dreamerv3 code's recipe, item by item (the replayed-value
loss, the block GRU with RMSNorm, symexp two-hot bins, LaProp with AGC and warmup, the joint
update, REINFORCE everywhere, contdisc, the policy's output scale), and that v3 stays as it was."""

from __future__ import annotations

import math
import os
import time
import traceback

import numpy as np
import pytest
import torch

from distwm.blocks.block_gru import BlockGRUCore, BlockLinear
from distwm.blocks.dreamer_blocks import RMSNorm, init_weights_
from distwm.blocks.returns import TwoHotEncoder, symexp, symexp_bins
from distwm.configs.dreamer_config import VERSION_DEFAULTS, DreamerConfig, dreamer_v3_2024_config
from distwm.models.dreamer import DreamerCore
from distwm.models.dreamer.replay_value import replay_lambda_returns, replay_last, replayed_value_loss
from distwm.utils import distributed
from distwm.utils.optim import ClippedAdam, LaProp, warmup_factor
from dreamer_helpers import OBS_CASES, random_batch, tiny_config

SHAPES = {"state": (5,)}
ACTIONS = 3

#: the current dreamerv3 code's defaults (configs.yaml, agent.py, rssm.py, embodied/jax)
HEAD = dict(
    norm="rms", deter_blocks=8, prior_layers=2, head_layers=1, twohot_bins="symexp",
    cont_discount=True, imagine_cont="prob", learned_initial_state=False, unimix=0.01,
    actor_unimix=0.0, actor_outscale=0.01, actor_grad="reinforce", actor_dist="normal",
    actor_entropy=3e-4, kl_dyn_scale=1.0, kl_rep_scale=0.1, free_nats=1.0, free_nats_per_step=True,
    discount=1 - 1 / 333, td_lambda=0.95, imagine_horizon=15, slow_critic_fraction=0.02,
    slow_critic_interval=1, slow_critic_reg=1.0, slow_critic_target=False, return_norm=True,
    return_norm_decay=0.99, return_norm_limit=1.0, return_norm_percentiles=(5.0, 95.0),
    return_norm_init="zero", repval_loss_scale=0.3, repval_grad=True, update_mode="joint",
    optimizer="laprop", agc=0.3, warmup_steps=1000, model_learning_rate=4e-5,
    actor_learning_rate=4e-5, value_learning_rate=4e-5, adam_epsilon=1e-20, ac_epsilon=1e-20,
    grad_clip_norm=0.0, ac_grad_clip_norm=0.0, weight_init="trunc_normal_in", action_clip=1.0,
    num_buckets=255, symlog_range=20.0, batch_size=16, train_seq_len=64, model_size="1m",
    deter_size=512, num_units=64, num_layers=3, cnn_depth=4, stoch_size=32, stoch_classes=4,
    train_ratio=1024.0, symlog_obs=True, reward_head="twohot", critic_head="twohot",
)


def agent(version: str = "v3-2024", discrete: bool = False, shapes=SHAPES, **overrides) -> DreamerCore:
    torch.manual_seed(0)
    return DreamerCore(tiny_config(version, **overrides), shapes, ACTIONS, discrete=discrete)


def batch_of(core: DreamerCore, discrete: bool = False, seed: int = 0, shapes=SHAPES):
    return core._batch_to_tensors(random_batch(shapes, ACTIONS, discrete, batch=3, steps=6, seed=seed))


# -- the preset ------------------------------------------------------------------------------------

def test_v3_2024_resolves_to_the_head_defaults_and_v3_keeps_its_own():
    cfg = dreamer_v3_2024_config().resolved()
    wrong = {k: (getattr(cfg, k), v) for k, v in HEAD.items()
             if (getattr(cfg, k) != pytest.approx(v) if isinstance(v, float) else getattr(cfg, k) != v)}
    assert not wrong
    v3 = DreamerConfig(version="v3").resolved()
    assert (v3.norm, v3.deter_blocks, v3.prior_layers, v3.head_layers) == ("layer", 0, 1, v3.num_layers)
    assert (v3.twohot_bins, v3.cont_discount, v3.repval_loss_scale, v3.update_mode) == ("symlog", False, 0.0, "sequential")
    assert (v3.optimizer, v3.agc, v3.warmup_steps, v3.ac_epsilon) == ("adam", 0.0, 0, 1e-5)
    assert (v3.actor_outscale, v3.actor_unimix, v3.return_norm_init) == (1.0, 0.01, "first")
    assert (v3.kl_dyn_scale, v3.actor_grad, v3.imagine_cont, v3.weight_init) == (0.5, "auto", "mode", "trunc_normal")
    # every version lists the same fields; an explicit value wins (one --set away)
    assert len({frozenset(d) for d in VERSION_DEFAULTS.values()}) == 1
    ablation = DreamerConfig(version="v3-2024").set_dotted("deter_blocks=0").resolved()
    assert ablation.deter_blocks == 0 and ablation.norm == "rms"
    with pytest.raises(ValueError, match="divisible by deter_blocks"):
        DreamerConfig(version="v3-2024", deter_size=100).resolved()
    with pytest.raises(ValueError, match="update_mode"):
        DreamerConfig(version="v3-2024", update_mode="both")


# -- 1. the replayed-value loss ----------------------------------------------------------------------

def test_replay_lambda_returns_by_hand():
    r = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    boot = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    zeros = torch.zeros_like(r)
    ret = replay_lambda_returns(r, zeros, zeros, boot, 0.5, 0.5)
    # R3 = 40; R2 = 3 + .5 (.5 40 + .5 40) = 23; R1 = 2 + .5 (.5 30 + .5 23); R0 = 1 + .5 (.5 20 + .5 R1)
    torch.testing.assert_close(ret, torch.tensor([[9.8125, 15.25, 23.0]]))
    last = torch.tensor([[0.0, 0.0, 1.0, 0.0]])  # step 2 ends an episode: step 1 bootstraps from boot
    torch.testing.assert_close(replay_lambda_returns(r, zeros, last, boot, 0.5, 0.5),
                               torch.tensor([[10.25, 17.0, 23.0]]))
    term = torch.tensor([[0.0, 0.0, 0.0, 1.0]])  # arriving at a terminal state: no future
    assert float(replay_lambda_returns(r, term, term, boot, 0.5, 0.5)[0, 2]) == 3.0
    data = {"is_terminal": torch.tensor([[False, False, False, True]]),
            "is_first": torch.tensor([[True, False, True, False]])}
    assert replay_last(data).tolist() == [[False, True, False, True]]  # before a new episode too


def test_replayed_value_loss_trains_the_critic_on_the_replayed_returns():
    core = agent()
    with torch.no_grad():  # a trained critic (its zero output layer would pass no gradient back)
        torch.nn.init.normal_(core.behavior.critic.mlp[-1].weight, std=0.1)
    data = batch_of(core)
    _, post, _ = core.model_loss(data)
    imag = core.imagine(post, data["is_terminal"])
    loss, metrics = replayed_value_loss(core.behavior, core.world_model, post, data, imag.returns, grad=True)
    # the same loss by hand: the data's rewards and terminations, the imagined returns as boot
    cfg, critic = core.args, core.behavior.critic
    feat = core.world_model.rssm.get_feat(post)
    boot = imag.returns[0].detach().reshape(3, 6)
    last = replay_last(data).float()
    ret = torch.zeros(3, 5)
    nxt = boot[:, -1]
    for t in range(4, -1, -1):
        live = cfg.discount * (1 - data["is_terminal"][:, t + 1].float())
        cont = cfg.td_lambda * (1 - last[:, t + 1])
        nxt = data["reward"][:, t + 1] + live * ((1 - cont) * boot[:, t + 1] + cont * nxt)
        ret[:, t] = nxt
    dist = critic(feat[:, :-1])
    slow = core.behavior.slow_critic(feat[:, :-1]).mode()
    expected = ((1 - last[:, :-1]) * (-dist.log_prob(ret) - dist.log_prob(slow))).mean()
    torch.testing.assert_close(loss, expected)
    assert float(metrics["repval_loss"]) == pytest.approx(float(expected.detach()))
    # the gradient reaches the critic, and with repval_grad the world model's representation
    critic_grad = torch.autograd.grad(loss, list(critic.parameters()), retain_graph=True, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in critic_grad)
    encoder = list(core.world_model.encoder.parameters())
    enc_grad = torch.autograd.grad(loss, encoder, retain_graph=True, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in enc_grad)
    detached, _ = replayed_value_loss(core.behavior, core.world_model, post, data, imag.returns, grad=False)
    assert detached.grad_fn is not None
    assert all(g is None for g in torch.autograd.grad(detached, encoder, allow_unused=True))


def test_repval_anchors_the_critic_to_the_replayed_returns():
    """Trained on the replayed-value loss alone, the critic's values on the replayed states move
    to the replayed returns."""
    core = agent(slow_critic_reg=0.0)
    data = batch_of(core)
    data["reward"] = torch.full_like(data["reward"], 3.0)
    with torch.no_grad():
        _, post, _ = core.model_loss(data)
        imag = core.imagine(post, data["is_terminal"])
    post = {k: v.detach() for k, v in post.items()}
    critic = core.behavior.critic
    opt = torch.optim.Adam(critic.parameters(), lr=3e-2)
    losses = []
    for _ in range(60):
        loss, metrics = replayed_value_loss(core.behavior, core.world_model, post, data, imag.returns, grad=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        value = critic(core.world_model.rssm.get_feat(post)[:, :-1]).mode()
    keep = ~replay_last(data)[:, :-1]
    assert losses[-1] < 0.5 * losses[0]
    assert float(value[keep].mean()) == pytest.approx(float(metrics["repval_return"]), rel=0.3)


def test_the_update_reports_the_repval_loss_only_where_it_is_on():
    on = agent().update({"sequences": random_batch(SHAPES, ACTIONS, False)})
    off = agent(repval_loss_scale=0.0).update({"sequences": random_batch(SHAPES, ACTIONS, False)})
    v3 = agent("v3").update({"sequences": random_batch(SHAPES, ACTIONS, False)})
    assert "repval_loss" in on and "repval_loss" not in off and "repval_loss" not in v3


# -- 2. block GRU, RMSNorm -------------------------------------------------------------------------

def test_block_linear_is_block_diagonal():
    torch.manual_seed(0)
    layer = BlockLinear(12, 8, 4)
    x = torch.randn(5, 12)
    dense = layer.dense_weight()
    assert dense.shape == (12, 8)
    torch.testing.assert_close(layer(x), x @ dense + layer.bias)
    mask = torch.block_diag(*[torch.ones(3, 2)] * 4).bool()
    assert float(dense[~mask].abs().max()) == 0.0 and float(dense[mask].abs().min()) > 0
    jac = torch.autograd.functional.jacobian(layer, x[:1])[0, :, 0]  # (out, in)
    assert float(jac.T[~mask].abs().max()) == 0.0
    assert layer.fans() == (12, 8) and layer.weight.numel() == 12 * 8 // 4
    big = BlockLinear(4096, 1024, 8)
    init_weights_(big, "trunc_normal_in")  # initialised like the dense layer of its full size
    assert float(big.weight.std()) == pytest.approx(math.sqrt(1 / 4096), rel=0.05)


def test_block_gru_core_shape_and_per_group_gates():
    torch.manual_seed(0)
    deter, blocks = 16, 4
    core = BlockGRUCore(deter, stoch=6, action=2, hidden=5, blocks=blocks, layers=0)
    h, z, a = torch.randn(3, deter), torch.randn(3, 6), torch.randn(3, 2)
    out = core(h, z, a)
    assert out.shape == (3, deter)
    with torch.no_grad():  # h then enters only through its own group's block
        for p in core.deter_in.parameters():
            p.zero_()
    jac = torch.autograd.functional.jacobian(lambda x: core(x, z[:1], a[:1]), h[:1])[0, :, 0]
    group = torch.arange(deter) // (deter // blocks)
    across = group[:, None] != group[None, :]
    assert float(jac[across].abs().max()) == 0.0 and float(jac[~across].abs().max()) > 0
    # the default core: one block hidden layer with RMSNorm, then the gates
    full = BlockGRUCore(deter, 6, 2, 5, blocks)
    assert isinstance(full.hidden[0], BlockLinear) and isinstance(full.hidden[1], RMSNorm)
    assert full.hidden[0].in_features == blocks * (deter // blocks + 3 * 5)
    assert full.gates.out_features == 3 * deter and full(h, z, a).shape == (3, deter)


def test_v3_2024_world_model_uses_the_block_gru_and_rmsnorm_everywhere():
    for case in ("vector", "image"):
        core = agent(shapes=OBS_CASES[case])
        rssm = core.world_model.rssm
        assert isinstance(rssm.cell, BlockGRUCore) and rssm.img_in is None and rssm.cell.blocks == 8
        modules = [*core.world_model.modules(), *core.behavior.modules()]
        assert not [m for m in modules if isinstance(m, torch.nn.LayerNorm)]
        assert any(isinstance(m, RMSNorm) for m in modules)
        # RMSNorm has no shift: the layers before it keep their bias
        assert core.world_model.reward.mlp[0].bias is not None
        assert len([m for m in core.world_model.reward.mlp if isinstance(m, torch.nn.Linear)]) == 2
        assert len([m for m in rssm.img_out if isinstance(m, torch.nn.Linear)]) == 3  # 2 hidden
    v3 = agent("v3")
    assert not isinstance(v3.world_model.rssm.cell, BlockGRUCore)
    assert not [m for m in v3.world_model.modules() if isinstance(m, RMSNorm)]


def test_rmsnorm_by_hand():
    norm = RMSNorm(3)
    x = torch.tensor([[3.0, 0.0, -4.0]])
    rms = math.sqrt((9 + 16) / 3 + 1e-4)
    torch.testing.assert_close(norm(x), x / rms)


# -- 3. symexp two-hot bins --------------------------------------------------------------------------

def test_symexp_bins_are_symmetric_and_spaced_as_the_current_code():
    bins = symexp_bins(255, 20.0)
    assert bins.shape == (255,) and float(bins[127]) == 0.0
    torch.testing.assert_close(bins, -bins.flip(0))
    torch.testing.assert_close(bins[:128], symexp(torch.linspace(-20.0, 0.0, 128)))
    assert float(bins[0]) == pytest.approx(-math.expm1(20.0), rel=1e-6)
    assert bool((bins[1:] > bins[:-1]).all())
    even = symexp_bins(6, 2.0)  # the even layout: 0 twice, as there
    torch.testing.assert_close(even, torch.cat([symexp(torch.linspace(-2.0, 0.0, 3)),
                                                -symexp(torch.linspace(-2.0, 0.0, 3)).flip(0)]))


def test_symexp_two_hot_encodes_and_decodes_in_real_space():
    enc = TwoHotEncoder(255, 20.0, spacing="symexp")
    bins = enc.buckets
    lo, hi = float(bins[130]), float(bins[131])
    target = torch.tensor([lo + 0.25 * (hi - lo)])
    code = enc.encode_values(target)
    assert code[0, 130] == pytest.approx(0.75) and code[0, 131] == pytest.approx(0.25)
    assert float(code.sum()) == pytest.approx(1.0)
    assert float((code * bins).sum()) == pytest.approx(float(target), rel=1e-6)
    # uniform logits (a zero-initialised head) decode to exactly 0: the symmetric sum
    assert float(enc.decode(torch.zeros(4, 255)).abs().max()) == 0.0
    # beyond the range: all weight on the end bin
    assert float(enc.encode_values(torch.tensor([1e12]))[0, -1]) == 1.0
    logits = torch.randn(2, 255)
    values = torch.tensor([0.7, -120.0])
    manual = -(enc.encode_values(values) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(enc.loss(logits, values), manual)
    # a peaked distribution decodes to its bin's real value
    peak = torch.full((1, 255), -1e4)
    peak[0, 200] = 0.0
    assert float(enc.decode(peak)) == pytest.approx(float(bins[200]), rel=1e-5)
    core = agent()
    assert core.behavior.critic.twohot.spacing == "symexp" and core.world_model.reward.twohot.spacing == "symexp"
    assert agent("v3").behavior.critic.twohot.spacing == "symlog"


# -- 4. LaProp with AGC and warmup ---------------------------------------------------------------------

def test_laprop_step_matches_a_hand_computation_with_agc_and_warmup():
    p = torch.nn.Parameter(torch.tensor([3.0, -4.0]))  # |p| = 5
    opt = LaProp([p], lr=0.1, betas=(0.9, 0.999), eps=1e-20, agc=0.3, warmup=2)
    # step 1: |g| = 50 > 0.3 * 5, so g is scaled by 1.5 / 50 to (0.9, 1.2); the learning rate
    # is 0 (the warmup counts from 0): the moments start, the parameter stays
    p.grad = torch.tensor([30.0, 40.0])
    opt.step()
    assert p.tolist() == [3.0, -4.0]
    g1 = [0.9, 1.2]
    nu = [0.001 * g * g for g in g1]
    mu = [0.1 * g / math.sqrt(n / 0.001) for g, n in zip(g1, nu)]  # = 0.1 * sign(g)
    # step 2: |g| = 0.5 < 1.5, no clipping; lr = 0.1 * 1/2
    p.grad = torch.tensor([0.0, 0.5])
    opt.step()
    g2 = [0.0, 0.5]
    nu = [0.999 * n + 0.001 * g * g for n, g in zip(nu, g2)]
    mu = [0.9 * m + 0.1 * g / (math.sqrt(n / (1 - 0.999 ** 2)) + 1e-20) for m, g, n in zip(mu, g2, nu)]
    expected = [x - 0.05 * m / (1 - 0.9 ** 2) for x, m in zip([3.0, -4.0], mu)]
    assert p.tolist() == pytest.approx(expected, rel=1e-6)
    assert opt.state[p]["momentum"].tolist() == pytest.approx(mu, rel=1e-6)
    # after the warmup: the full learning rate
    assert [warmup_factor(k, 2) for k in (1, 2, 3, 10)] == [0.0, 0.5, 1.0, 1.0]
    assert warmup_factor(1, 0) == 1.0


def test_agc_bound_floors_the_parameter_norm_and_laprop_state_round_trips():
    p = torch.nn.Parameter(torch.zeros(4))  # |p| = 0: the bound is agc * 1e-3
    opt = LaProp([p], lr=1.0, agc=0.3, warmup=0)
    p.grad = torch.ones(4)
    opt.step()  # clipped gradient 3e-4 / 2 each; LaProp's first step is -lr * sign(g)
    torch.testing.assert_close(p.detach(), -torch.ones(4))
    fresh = LaProp([torch.nn.Parameter(torch.zeros(4))], lr=1.0, agc=0.3)
    fresh.load_state_dict(opt.state_dict())
    assert int(fresh.state_dict()["state"][0]["step"]) == 1


def test_clipped_adam_warms_up_like_laprop():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = ClippedAdam([p], lr=0.1, warmup=4)
    lrs = []
    for _ in range(6):
        p.grad = torch.tensor([1.0])
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1])


def test_v3_2024_optimisers_are_laprop_with_the_head_settings():
    core = agent()
    for opt in (core.model_optimizer, core.actor_optimizer, core.value_optimizer):
        group = opt.param_groups[0]
        assert isinstance(opt, LaProp)
        assert (group["lr"], group["eps"], group["agc"], group["warmup"]) == (4e-5, 1e-20, 0.3, 1000)
        assert group["betas"] == (0.9, 0.999)
    assert type(agent("v3").model_optimizer) is torch.optim.Adam
    assert isinstance(agent(optimizer="adam").model_optimizer, ClippedAdam)


# -- 5. the behaviour: REINFORCE everywhere, outscale, contdisc, return normaliser ---------------------

def test_reinforce_for_continuous_actions_with_bounded_actions_into_the_dynamics():
    core = agent(discrete=False)
    assert core.behavior.reinforce and not core.behavior.actor.dist == "onehot"
    with torch.no_grad():  # a wide policy: many raw samples exceed 1
        core.behavior.actor.mlp[-1].bias.fill_(3.0)
    seen = []
    hook = core.world_model.rssm.cell.action_in.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    data = batch_of(core)
    _, post, _ = core.model_loss(data)
    seen.clear()
    imag = core.imagine(post, data["is_terminal"])
    hook.remove()
    assert imag.action.abs().max() > 1.5 and seen
    assert max(float(a.abs().max()) for a in seen) <= 1.0 + 1e-6
    loss, _ = core.actor_loss(imag)
    grads = torch.autograd.grad(loss, list(core.behavior.actor.parameters()))
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_policy_output_layer_starts_small_and_the_discrete_policy_has_no_unimix():
    small, plain = agent(), agent(actor_outscale=1.0)
    w_small, w_plain = small.behavior.actor.mlp[-1].weight, plain.behavior.actor.mlp[-1].weight
    torch.testing.assert_close(w_small, 0.01 * w_plain)
    fan_in = w_plain.shape[1]
    assert float(w_plain.std()) == pytest.approx(math.sqrt(1 / fan_in), rel=0.35)  # trunc_normal_in
    assert agent(discrete=True).behavior.actor.unimix == 0.0
    assert agent("v3", discrete=True).behavior.actor.unimix == 0.01


def test_contdisc_targets_and_imagination_discount():
    core = agent()
    data = batch_of(core)
    _, post, metrics = core.model_loss(data)
    # the continue target holds the discount: BCE against (1 - 1/333) * (1 - terminal)
    logits = core.world_model.cont(core.world_model.rssm.get_feat(post)).base_dist.logits
    target = (1 - data["is_terminal"].float()) * (1 - 1 / 333)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert float(metrics["cont_loss"]) == pytest.approx(float(bce), rel=1e-5)
    with torch.no_grad():  # a continue head that predicts probability 0.9 everywhere
        head = core.world_model.cont.mlp[-1]
        head.weight.zero_()
        head.bias.fill_(math.log(0.9 / 0.1))
    imag = core.imagine(post, data["is_terminal"])
    torch.testing.assert_close(imag.cont, torch.full_like(imag.cont, 0.9))  # the start state too
    steps = torch.arange(imag.weight.shape[0], dtype=torch.float32)[:, None]
    torch.testing.assert_close(imag.weight, (0.9 ** (steps + 1)).expand_as(imag.weight))
    # and nothing else discounts: R = r' + 0.9 ((1 - lam) v' + lam R')
    r, v, lam = imag.reward, imag.value, core.args.td_lambda
    ret = v[-1]
    for t in range(r.shape[0] - 1, -1, -1):
        ret = r[t] + 0.9 * ((1 - lam) * v[t + 1] + lam * ret)
    torch.testing.assert_close(imag.returns[0], ret)
    v3 = agent("v3")
    assert not v3.args.cont_discount


def test_return_normaliser_starts_from_zero():
    core = agent()
    norm = core.behavior.return_norm
    returns = torch.linspace(0.0, 100.0, 101)
    norm.update(returns)
    assert float(norm.low) == pytest.approx(0.01 * 5.0) and float(norm.high) == pytest.approx(0.01 * 95.0)
    assert float(norm.scale()) == 1.0  # max(limit, 0.9)
    first = agent("v3").behavior.return_norm
    first.update(returns)
    assert float(first.low) == pytest.approx(5.0)


# -- the joint update ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["vector", "image"])
@pytest.mark.parametrize("discrete", [True, False])
def test_v3_2024_tiny_agent_updates_without_nan(case, discrete):
    core = agent(discrete=discrete, shapes=OBS_CASES[case])
    before = {k: v.clone() for k, v in core.world_model.state_dict().items()}
    for k in range(2):  # the first step has learning rate 0 (warmup); the second moves
        metrics = core.update({"sequences": random_batch(OBS_CASES[case], ACTIONS, discrete, seed=k)})
        assert metrics["skipped"] == 0.0
        assert all(math.isfinite(v) for v in metrics.values())
    assert core.updates == 2
    changed = [k for k, v in core.world_model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    obs = {key: np.asarray(value[:, 0]) for key, value in random_batch(OBS_CASES[case], ACTIONS, discrete).items()
           if key in OBS_CASES[case]}
    obs["is_first"] = np.ones(2, bool)
    action, _ = core.act(obs, None, explore=True)
    assert action.shape == (2, ACTIONS) and np.isfinite(action).all()


def test_joint_update_is_one_backward_and_one_gradient_average(monkeypatch):
    core = agent(warmup_steps=0)
    calls = []
    params = [*core.world_model.parameters(), *core.behavior.actor.parameters(),
              *core.behavior.critic.parameters()]
    snapshot = [p.detach().clone() for p in params]

    def record(ps, extra=()):
        ps = list(ps)
        calls.append({"params": ps, "extra": list(extra),
                      "unchanged": all(torch.equal(p, s) for p, s in zip(ps, snapshot)),
                      "grads": sum(p.grad is not None for p in ps)})

    monkeypatch.setattr(distributed, "reduce_gradients", record)
    core.update({"sequences": random_batch(SHAPES, ACTIONS, False)})
    assert len(calls) == 1
    call = calls[0]
    assert call["params"] == params and call["unchanged"] and call["grads"] > len(params) // 2
    norm = core.behavior.return_norm
    assert call["extra"][0] is norm.low and call["extra"][1] is norm.high
    for module in (core.world_model, core.behavior.actor, core.behavior.critic):
        assert any(not torch.equal(p, s) for p, s in zip(params, snapshot) if any(p is q for q in module.parameters()))
    joined = []
    monkeypatch.setattr(distributed, "join_skipped", lambda ps, extra=(): joined.append(list(ps)))
    bad = random_batch(SHAPES, ACTIONS, False)
    bad["state"][0, 1, 0] = np.nan
    metrics = core.update({"sequences": bad})
    assert metrics["skipped"] == 1.0 and len(joined) == 1 and joined[0] == params


def test_ablations_sequential_update_and_adam_still_train():
    for overrides in (dict(update_mode="sequential"), dict(optimizer="adam", warmup_steps=0),
                      dict(actor_grad="dynamics"), dict(deter_blocks=0), dict(twohot_bins="symlog")):
        core = agent(**overrides)
        for k in range(2):
            metrics = core.update({"sequences": random_batch(SHAPES, ACTIONS, False, seed=k)})
            assert metrics["skipped"] == 0.0, overrides
            assert all(math.isfinite(v) for v in metrics.values()), overrides


# -- checkpoints -----------------------------------------------------------------------------------

def test_v3_checkpoints_from_before_the_new_fields_still_load():
    old = agent("v3")
    state = old.state_dict()
    for key in ("norm", "deter_blocks", "prior_layers", "head_layers", "twohot_bins", "optimizer"):
        state["architecture"].pop(key)  # what a checkpoint written before v3-2024 holds
    fresh = agent("v3")
    fresh.load_state_dict(state)
    for key, value in old.world_model.state_dict().items():
        assert torch.equal(value, fresh.world_model.state_dict()[key])
    new = agent()
    new.update({"sequences": random_batch(SHAPES, ACTIONS, False)})
    again = agent()
    again.load_state_dict(new.state_dict())
    assert again.updates == 1
    assert int(again.model_optimizer.state_dict()["state"][0]["step"]) == 1
    with pytest.raises(ValueError, match="norm: checkpoint 'rms' vs agent 'layer'"):
        agent("v3").load_state_dict(new.state_dict())


# -- data-parallel: two spawned gloo ranks ---------------------------------------------------------

def _rank_worker(rank: int, address: str, outdir: str) -> None:
    torch.set_num_threads(1)
    distributed.init_group(rank, 2, address, timeout_s=30)
    try:
        core = agent(discrete=True, warmup_steps=0)
        imagine = core.imagine
        skipped = []
        for k in range(4):  # 1: NaN input on rank 1; 2: NaN imagined returns on rank 0
            batch = random_batch(SHAPES, ACTIONS, True, batch=2, steps=6, seed=100 * k + rank)
            if k == 1 and rank == 1:
                batch["state"][0, 2, 1] = np.nan
            if k == 2 and rank == 0:
                def bad(post, is_terminal):
                    imag = imagine(post, is_terminal)
                    imag.returns = imag.returns * float("nan")
                    return imag
                core.imagine = bad
            skipped.append(core.update({"sequences": batch})["skipped"])
            core.imagine = imagine
        result = {"skipped": skipped, "updates": core.updates,
                  "world_model": {k: v.clone() for k, v in core.world_model.state_dict().items()},
                  "behavior": {k: v.clone() for k, v in core.behavior.state_dict().items()}}
    except BaseException:  # noqa: BLE001 - reported by the test
        result = {"error": traceback.format_exc()}
    finally:
        distributed.destroy_group()
    torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))


def test_joint_update_keeps_data_parallel_replicas_identical_and_skips_agreed(tmp_path):
    ctx = torch.multiprocessing.get_context("spawn")
    address = "tcp://127.0.0.1:" + distributed.free_address().rsplit(":", 1)[1]  # Ray or not
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        procs = [ctx.Process(target=_rank_worker, args=(r, address, str(tmp_path)), daemon=True)
                 for r in range(2)]
        for proc in procs:
            proc.start()
    finally:
        os.environ.pop("OMP_NUM_THREADS") if old is None else os.environ.__setitem__("OMP_NUM_THREADS", old)
    deadline = time.monotonic() + 120
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, proc in enumerate(procs) if proc.is_alive()]
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    assert not hung, f"ranks {hung} hung"
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r, res in enumerate(results):
        assert "error" not in res, f"rank {r}:\n{res.get('error')}"
    r0, r1 = results
    assert r0["skipped"] == r1["skipped"] == [0.0, 1.0, 1.0, 0.0]
    assert r0["updates"] == r1["updates"] == 2
    for key in ("world_model", "behavior"):
        differ = [k for k in r0[key] if not torch.equal(r0[key][k], r1[key][k])]
        assert not differ, f"replicas differ in {key}: {differ[:5]}"
