"""symlog/symexp, two-hot, lambda returns, parameter freezing (distwm.utils.dreamer_utils)."""

import pytest
import torch

from distwm.utils import (
    FreezeParameters,
    TwoHotEncoder,
    compute_lambda_return,
    compute_return,
    get_parameters,
    symexp,
    symlog,
)


def test_symlog_values_and_inverse():
    x = torch.tensor([-1000.0, -3.0, -0.5, 0.0, 0.5, 3.0, 1000.0], dtype=torch.float64)
    expected = torch.sign(x) * torch.log(1 + x.abs())
    torch.testing.assert_close(symlog(x), expected)
    torch.testing.assert_close(symexp(symlog(x)), x)
    torch.testing.assert_close(symlog(symexp(torch.tensor([-5.0, 0.0, 2.0]))),
                               torch.tensor([-5.0, 0.0, 2.0]))


def test_two_hot_encode_is_distribution_on_two_nearest_buckets():
    enc = TwoHotEncoder(num_buckets=5, symlog_range=2.0)  # centres -2, -1, 0, 1, 2
    code = enc.encode(torch.tensor([0.25, -1.5, 1.0, 7.0, -9.0]))
    assert code.shape == (5, 5)
    torch.testing.assert_close(code.sum(-1), torch.ones(5))
    assert (code >= 0).all()
    torch.testing.assert_close(code[0], torch.tensor([0.0, 0.0, 0.75, 0.25, 0.0]))
    torch.testing.assert_close(code[1], torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(code[2], torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(code[3], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))  # clipped
    torch.testing.assert_close(code[4], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))


def test_two_hot_random_targets_mass_on_neighbours_and_expectation():
    enc = TwoHotEncoder()
    targets = torch.empty(4, 7).uniform_(-9.9, 9.9, generator=torch.Generator().manual_seed(0))
    code = enc.encode(targets)
    assert code.shape == (4, 7, 255)
    assert ((code > 1e-6).sum(-1) <= 2).all()
    nonzero = code > 1e-6
    idx = torch.arange(255).expand_as(code)
    span = idx.masked_fill(~nonzero, -1).amax(-1) - idx.masked_fill(~nonzero, 999).amin(-1)
    assert (span <= 1).all()
    torch.testing.assert_close((code * enc.buckets).sum(-1), targets, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_hot_round_trip(dtype):
    enc = TwoHotEncoder(num_buckets=255, symlog_range=10.0)
    values = torch.tensor([[-500.0, -1.0, 0.0], [0.3, 42.0, 12345.0]], dtype=dtype)
    logits = torch.log(enc.encode(symlog(values)))
    decoded = enc.decode(logits)
    assert decoded.dtype == dtype and decoded.shape == values.shape
    torch.testing.assert_close(decoded, values, rtol=1e-4, atol=1e-4)


def test_two_hot_loss_is_minimal_at_the_encoding():
    enc = TwoHotEncoder(num_buckets=21, symlog_range=5.0)
    target = torch.tensor([3.0, -20.0])
    good = torch.log(enc.encode(symlog(target)).clamp_min(1e-12))
    bad = torch.zeros(2, 21)
    assert (enc.loss(good, target) < enc.loss(bad, target)).all()
    bad.requires_grad_(True)
    enc.loss(bad, target).sum().backward()
    assert bad.grad is not None and bad.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_buckets=21"):
        enc.decode(torch.zeros(2, 20))


def test_two_hot_rejects_bad_parameters():
    with pytest.raises(ValueError, match="num_buckets"):
        TwoHotEncoder(num_buckets=1)
    with pytest.raises(ValueError, match="symlog_range"):
        TwoHotEncoder(symlog_range=-1.0)


def test_lambda_return_hand_computed():
    # lambda = 0.5, discount 0.9, rewards 1, 2, 3, values V0..V3 = 0, 1, 2, 4.
    # R_3 = V_3 = 4
    # R_2 = 3 + 0.9 * (0.5 * 4 + 0.5 * 4)     = 6.6
    # R_1 = 2 + 0.9 * (0.5 * 2 + 0.5 * 6.6)   = 5.87
    # R_0 = 1 + 0.9 * (0.5 * 1 + 0.5 * 5.87)  = 4.0915
    # Second row: terminal after step 1 (discount 0 there), lambda 0.5, discount 1 elsewhere:
    # rewards 1, 1, 1; values 10, 10, 10, 10
    # R_2 = 1 + 1 * (0.5 * 10 + 0.5 * 10) = 11
    # R_1 = 1 + 0 * (...)                 = 1
    # R_0 = 1 + 1 * (0.5 * 10 + 0.5 * 1)  = 6.5
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    values = torch.tensor([[0.0, 1.0, 2.0, 4.0], [10.0, 10.0, 10.0, 10.0]])
    discounts = torch.tensor([[0.9, 0.9, 0.9], [1.0, 0.0, 1.0]])
    out = compute_lambda_return(rewards, values, discounts, lambda_coef=0.5)
    expected = torch.tensor([[4.0915, 5.87, 6.6], [6.5, 1.0, 11.0]])
    torch.testing.assert_close(out, expected)
    # a scalar discount broadcasts: first row again
    scalar = compute_lambda_return(rewards[:1], values[:1], 0.9, lambda_coef=0.5)
    torch.testing.assert_close(scalar, expected[:1])


def test_lambda_return_limits():
    g = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(3, 6, generator=g), torch.randn(3, 7, generator=g)
    discounts = torch.full((3, 6), 0.99)
    td0 = compute_lambda_return(rewards, values, discounts, lambda_coef=0.0)
    torch.testing.assert_close(td0, rewards + discounts * values[:, 1:])
    mc = compute_lambda_return(rewards, values, discounts, lambda_coef=1.0)
    expected = values[:, -1].clone()
    for t in reversed(range(6)):
        expected = rewards[:, t] + 0.99 * expected
    torch.testing.assert_close(mc[:, 0], expected)


def test_compute_return_matches_compute_lambda_return():
    g = torch.Generator().manual_seed(2)
    rewards = torch.randn(4, 5, generator=g)  # (B, T)
    values = torch.randn(4, 6, generator=g)  # (B, T+1)
    discounts = torch.rand(4, 5, generator=g)
    batch_major = compute_lambda_return(rewards, values, discounts, lambda_coef=0.95)
    time_major = compute_return(rewards.T, values[:, :-1].T, discounts.T, 0.95, values[:, -1])
    assert time_major.shape == (5, 4)
    torch.testing.assert_close(time_major.T, batch_major)
    # values[0] is never used by compute_return
    other = values[:, :-1].T.clone()
    other[0] += 100.0
    torch.testing.assert_close(compute_return(rewards.T, other, discounts.T, 0.95, values[:, -1]),
                               time_major)


def test_lambda_return_shape_errors():
    with pytest.raises(ValueError, match="T \\+ 1"):
        compute_lambda_return(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="lambda"):
        compute_lambda_return(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3), 1.5)
    with pytest.raises(ValueError, match="broadcast"):
        compute_lambda_return(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 5))


def test_freeze_parameters_restores_previous_flags():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    b.bias.requires_grad_(False)
    assert len(get_parameters([a, b])) == 4
    with FreezeParameters([a, b]):
        assert not any(p.requires_grad for p in get_parameters([a, b]))
        y = b(a(torch.ones(1, 2, requires_grad=True))).sum()
        y.backward()
        assert a.weight.grad is None
    assert a.weight.requires_grad and a.bias.requires_grad and b.weight.requires_grad
    assert not b.bias.requires_grad
