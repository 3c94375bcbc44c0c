"""DreamerV3 as the reference code does it: bounded actions into the dynamics (gradient of the
scale stopped), the 2023 backprop objective with its value baseline, the weight initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from distwm.blocks import deferred_grads
from distwm.blocks.dreamer_blocks import init_weights_
from distwm.models.dreamer import DreamerCore
from dreamer_helpers import random_batch, tiny_config

SHAPES = {"state": (5,)}
ACTIONS = 3


def agent(**overrides) -> DreamerCore:
    torch.manual_seed(0)
    return DreamerCore(tiny_config("v3", **overrides), SHAPES, ACTIONS)


def dynamics_inputs(core: DreamerCore) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The action columns entering the dynamics during one imagination, and the actions."""
    seen = []
    hook = core.world_model.rssm.img_in.register_forward_pre_hook(
        lambda module, args: seen.append(args[0][..., -ACTIONS:].detach().clone()))
    try:
        data = core._batch_to_tensors(random_batch(SHAPES, ACTIONS, False, batch=8, steps=6))
        _, post, _ = core.model_loss(data)
        seen.clear()  # keep only the imagination's steps
        imag = core.imagine(post, data["is_terminal"])
    finally:
        hook.remove()
    return seen, imag.action


def test_imagined_actions_enter_the_dynamics_bounded():
    core = agent()
    with torch.no_grad():  # a wide policy: many raw samples of Normal(tanh(mu), sigma) exceed 1
        core.behavior.actor.mlp[-1].bias.fill_(3.0)
    seen, actions = dynamics_inputs(core)
    assert actions.abs().max() > 1.5  # the actor's own samples are unbounded ...
    assert seen and max(float(a.abs().max()) for a in seen) <= 1.0 + 1e-6  # ... the dynamics' not
    off = agent(action_clip=0.0)
    with torch.no_grad():
        off.behavior.actor.mlp[-1].bias.fill_(3.0)
    seen_off, _ = dynamics_inputs(off)
    assert max(float(a.abs().max()) for a in seen_off) > 1.5


@pytest.mark.parametrize("defer", [False, True])
def test_observed_actions_enter_the_dynamics_bounded(defer):
    """The observe loop (plain and with deferred weight gradients) sees the replayed actions
    scaled as imagination does: actions beyond 1 act as their clipped values."""
    rssm = agent().world_model.rssm
    embed = torch.randn(2, 4, rssm.obs_hidden[0].weight.shape[1] - rssm.deter_size)
    first = torch.zeros(2, 4, dtype=torch.bool)
    first[:, 0] = True
    raw = torch.randn(2, 4, ACTIONS) * 3.0
    assert raw.abs().max() > 1.5

    def deter(actions, rssm=rssm):
        torch.manual_seed(1)
        with deferred_grads.deferring(defer):  # the deferral needs grad mode, as in an update
            return rssm.observe(embed, actions, first)[0]["deter"].detach()

    clipped = raw / raw.abs().clamp(min=1.0)
    torch.testing.assert_close(deter(raw), deter(clipped))
    off = agent(action_clip=0.0).world_model.rssm
    assert not torch.allclose(deter(raw, off), deter(clipped, off))


def test_the_action_scale_carries_no_gradient():
    rssm = agent().world_model.rssm
    captured = []
    hook = rssm.img_in.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    action = torch.tensor([[2.0, 0.5, -4.0]], requires_grad=True)
    state = {k: v[:1] for k, v in rssm.init_state(1, "cpu").items()}
    rssm.imagine_step(state, action)
    hook.remove()
    scaled = captured[0][..., -ACTIONS:]
    torch.testing.assert_close(scaled.detach(), torch.tensor([[1.0, 0.5, -1.0]]))
    (grad,) = torch.autograd.grad(scaled.sum(), action)
    # d(a * sg(1 / max(1, |a|))) / da = sg(...): 1/2, 1, 1/4 (not 0 for the clipped entries)
    torch.testing.assert_close(grad, torch.tensor([[0.5, 1.0, 0.25]]))


def test_backprop_actor_objective_has_the_value_baseline_with_its_gradient():
    core = agent(actor_grad="dynamics", return_norm=False)
    data = core._batch_to_tensors(random_batch(SHAPES, ACTIONS, False, batch=4, steps=6))
    _, post, _ = core.model_loss(data)
    imag = core.imagine(post, data["is_terminal"])
    grads, losses = {}, {}
    for baseline in (True, False):
        core.behavior.cfg.actor_baseline = baseline
        loss, _ = core.actor_loss(imag)
        losses[baseline] = loss
        (grads[baseline],) = torch.autograd.grad(loss, imag.value, retain_graph=True)
    weight = imag.weight[:-1]
    # -(R - V): the loss rises by mean(w V), and dL/dV(s_t) by w_t / N, against -R alone
    torch.testing.assert_close(losses[True] - losses[False], (weight * imag.value[:-1]).mean())
    torch.testing.assert_close(grads[True][:-1] - grads[False][:-1], weight / weight.numel())
    assert float(grads[True][0].abs().sum()) > 0  # V of the start state too (no gradient before)
    assert float(grads[False][0].abs().sum()) == 0


def test_reference_weight_initialisation():
    core = agent()
    big = torch.nn.Linear(400, 200)
    init_weights_(big, "trunc_normal")
    std = math.sqrt(1.0 / 300.0)
    assert abs(float(big.weight.std()) / std - 1.0) < 0.05
    assert float(big.weight.abs().max()) <= 2 * std / 0.87962566103423978 + 1e-6
    assert float(big.bias.abs().max()) == 0.0
    for name, module in core.world_model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.bias is not None:
            assert float(module.bias.abs().max()) == 0.0, name
    # DreamerV3's zero-initialised outputs stay zero: the reward and critic heads
    assert float(core.world_model.reward.mlp[-1].weight.abs().max()) == 0.0
    assert float(core.behavior.critic.mlp[-1].weight.abs().max()) == 0.0
    torch.testing.assert_close(core.behavior.slow_critic.mlp[0].weight, core.behavior.critic.mlp[0].weight)
    default = agent(weight_init="torch")
    assert float(default.world_model.rssm.obs_stats.bias.abs().max()) > 0  # PyTorch's random biases
