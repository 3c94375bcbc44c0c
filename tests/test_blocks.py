"""Shared blocks against references computed here: distwm.blocks.returns, distwm.blocks.mhsa."""

import math

import numpy as np
import pytest
import torch

from distwm.blocks.returns import (
    TwoHotEncoder,
    compute_lambda_return,
    compute_return,
    symexp,
    symlog,
)


def _reference_lambda_returns(rewards, values, discounts, lam):
    """Batch-major lambda returns by an explicit backward loop over Python floats."""
    rewards, values, discounts = (np.asarray(a, dtype=np.float64)
                                  for a in (rewards, values, discounts))
    batch, horizon = rewards.shape
    out = np.zeros((batch, horizon))
    for b in range(batch):
        nxt = values[b, horizon]
        for t in reversed(range(horizon)):
            nxt = rewards[b, t] + discounts[b, t] * ((1 - lam) * values[b, t + 1] + lam * nxt)
            out[b, t] = nxt
    return out


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_lambda_returns_match_backward_loop(lam):
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    values = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    discounts = 0.99 * (torch.rand(3, 7, generator=gen, dtype=torch.float64) > 0.2)
    expected = _reference_lambda_returns(rewards, values, discounts, lam)
    np.testing.assert_allclose(compute_lambda_return(rewards, values, discounts, lam).numpy(),
                               expected, rtol=1e-12, atol=1e-12)
    time_major = compute_return(rewards.T, values[:, :-1].T, discounts.T, lam, values[:, -1])
    np.testing.assert_allclose(time_major.T.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_symlog_matches_formula_and_symexp_inverts_it():
    x = torch.linspace(-1e4, 1e4, 1001, dtype=torch.float64)
    expected = [math.copysign(math.log(1 + abs(v)), v) for v in x.tolist()]
    np.testing.assert_allclose(symlog(x).numpy(), expected, rtol=1e-12)
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-10, atol=1e-10)
    y = torch.linspace(-8, 8, 101, dtype=torch.float64)
    torch.testing.assert_close(symlog(symexp(y)), y)


def test_two_hot_round_trip_and_reference_weights():
    enc = TwoHotEncoder(num_buckets=41, symlog_range=4.0)
    centres = np.linspace(-4.0, 4.0, 41)
    targets = torch.tensor([-5.0, -4.0, -1.23, 0.0, 0.05, 2.5, 3.99, 7.0], dtype=torch.float64)
    code = enc.encode(targets).numpy()
    for row, t in zip(code, targets.tolist()):
        t = min(max(t, -4.0), 4.0)
        ref = np.zeros(41)
        k = min(int(np.searchsorted(centres, t, side="right")) - 1, 39)
        w = (t - centres[k]) / (centres[k + 1] - centres[k])
        ref[k], ref[k + 1] = 1 - w, w
        np.testing.assert_allclose(row, ref, atol=1e-12)
    values = torch.tensor([-20.0, -1.0, 0.0, 0.3, 12.0], dtype=torch.float64)
    logits = torch.log(enc.encode(symlog(values)).clamp_min(1e-300))
    # bucket centres are float32, so decoding is exact to float32 precision
    torch.testing.assert_close(enc.decode(logits), values, rtol=1e-6, atol=1e-6)
