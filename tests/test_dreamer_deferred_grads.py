"""Deferred weight gradients of the observe loop, and the padded (aligned) output linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamer_helpers import OBS_CASES, random_batch, tiny_config
from distwm.blocks.deferred_grads import DeferredWeightGrads, active, deferring
from distwm.blocks.layers import AlignedLinear
from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer.core import DreamerCore


def _loop(layer: nn.Linear, cols: nn.Linear, xs: torch.Tensor, defer: DeferredWeightGrads | None):
    """A recurrence that applies ``layer`` (and the first 3 input columns of ``cols``) at every
    step, plainly or through ``defer``."""
    h = torch.zeros(xs.shape[1], layer.out_features)
    for x in xs:
        inp = torch.cat([x, h], -1)
        if defer is None:
            y = layer(inp) + nn.functional.linear(h[:, :3], cols.weight[:, :3])
        else:
            y = defer.linear(inp, layer.weight, layer.bias) + defer.linear(
                h[:, :3], cols.weight, columns=slice(0, 3))
        h = torch.tanh(y)
    return h


def _grads(modules):
    return [None if p.grad is None else p.grad.clone() for m in modules for p in m.parameters()]


def test_deferred_linear_gives_the_plain_gradients_once_per_backward():
    torch.manual_seed(0)
    layer, cols = nn.Linear(4 + 6, 6), nn.Linear(5, 6, bias=False)
    xs = torch.randn(7, 3, 4)
    _loop(layer, cols, xs, None).square().sum().backward()
    want = _grads([layer, cols])
    for module in (layer, cols):
        module.zero_grad(set_to_none=True)
    out = _loop(layer, cols, xs, DeferredWeightGrads())
    assert layer.weight.grad is None
    out.square().sum().backward(retain_graph=True)
    got = _grads([layer, cols])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert float(got[-1][:, 3:].abs().sum()) == 0.0  # columns outside the slice get none
    out.square().sum().backward()  # a second backward accumulates, as autograd does
    for g, w in zip(_grads([layer, cols]), want):
        torch.testing.assert_close(g, 2 * w, rtol=1e-5, atol=1e-6)


def test_deferred_linear_carries_the_weight_gradient_when_the_inputs_have_no_graph():
    layer = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    layer(x).sum().backward()
    want = _grads([layer])
    layer.zero_grad(set_to_none=True)
    DeferredWeightGrads().linear(x, layer.weight, layer.bias).sum().backward()
    for g, w in zip(_grads([layer]), want):
        torch.testing.assert_close(g, w)


def test_deferring_is_off_by_default_and_scoped():
    assert not active()
    with deferring():
        assert active()
        with torch.no_grad():
            assert not active()
        with deferring(False):
            assert not active()
    assert not active()


def _core(**fields) -> DreamerCore:
    torch.manual_seed(0)
    return DreamerCore(tiny_config("v3", **fields), OBS_CASES["vector"], 3, discrete=True)


def test_observe_with_deferred_weight_grads_matches_the_plain_gradients():
    core = _core()
    batch = random_batch(OBS_CASES["vector"], 3, True, batch=3, steps=8)
    batch["is_first"][1, 4] = True  # a reset inside the sequence
    data = core._batch_to_tensors(batch)
    grads = []
    for defer in (False, True):
        core.world_model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with deferring(defer):
            loss, _, _ = core.model_loss(data)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in core.world_model.named_parameters()
                      if p.grad is not None})
    plain, deferred = grads
    assert plain.keys() == deferred.keys()
    assert "rssm.cell.linear.weight" in plain and "rssm.obs_stats.bias" in plain
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("version", ["v3", "v3-2024"])
def test_an_update_with_deferred_weight_grads_is_the_plain_update(version):
    batch = random_batch(OBS_CASES["vector"], 3, True, batch=2, steps=6)
    params = []
    for defer in (True, False):
        torch.manual_seed(0)
        core = DreamerCore(tiny_config(version, defer_weight_grads=defer), OBS_CASES["vector"], 3,
                           discrete=True)
        torch.manual_seed(2)
        metrics = core.update({"sequences": batch})
        assert metrics["skipped"] == 0.0
        params.append([p.detach().clone() for p in core.world_model.parameters()])
    for got, want in zip(*params):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_defer_weight_grads_must_be_a_bool():
    with pytest.raises(ValueError, match="defer_weight_grads must be True or False, got 'yes'"):
        DreamerConfig(defer_weight_grads="yes")


def test_aligned_linear_is_nn_linear_with_a_padded_matmul():
    torch.manual_seed(0)
    plain = nn.Linear(8, 255)
    aligned = AlignedLinear(8, 255)
    aligned.load_state_dict(plain.state_dict())  # the same parameters and checkpoint keys
    assert list(aligned.state_dict()) == ["weight", "bias"]
    x = torch.randn(5, 3, 8, requires_grad=True)
    got, want = aligned(x), plain(x)
    assert got.shape == (5, 3, 255)
    torch.testing.assert_close(got, want)
    grad = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, [x, aligned.weight, aligned.bias], grad)
    want_grads = torch.autograd.grad(want, [x, plain.weight, plain.bias], grad)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


def test_two_hot_heads_use_the_aligned_output():
    core = _core()
    assert isinstance(core.world_model.reward.mlp[-1], AlignedLinear)
    assert isinstance(core.behavior.critic.mlp[-1], AlignedLinear)
