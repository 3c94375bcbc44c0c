"""Return maths shared by the model families: symlog / symexp, two-hot encoding and decoding,
and TD(lambda) returns (time-major :func:`compute_return`, batch-major
:func:`compute_lambda_return`).

``distwm.utils.dreamer_utils`` and ``distwm.utils`` re-export every name (the seed's paths).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "symlog",
    "symexp",
    "TwoHotEncoder",
    "TWOHOT_BINS",
    "symexp_bins",
    "compute_return",
    "compute_lambda_return",
]


# -- symlog ----------------------------------------------------------------------------------
def symlog(x: Tensor) -> Tensor:
    """Symmetric log: ``sign(x) * log(1 + |x|)`` (DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """Inverse of :func:`symlog`: ``sign(x) * (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


# -- two-hot ---------------------------------------------------------------------------------
#: how the two-hot bins are spaced: ``symlog`` (DreamerV3 paper code: uniform in symlog space,
#: interpolated there) or ``symexp`` (the current dreamerv3 code: the bins are the symexp of
#: uniform points, and targets and predictions live in real space)
TWOHOT_BINS = ("symlog", "symexp")


def symexp_bins(num_buckets: int, limit: float = 20.0) -> Tensor:
    """The current dreamerv3 code's bins (real values): ``symexp`` of ``linspace(-limit, 0)``
    mirrored to the positive side, so that they are symmetric around 0 (with an odd
    ``num_buckets`` the middle bin is 0; with an even one 0 appears twice, as there)."""
    if num_buckets % 2:
        half = symexp(torch.linspace(-limit, 0.0, (num_buckets - 1) // 2 + 1))
        return torch.cat([half, -half[:-1].flip(0)])
    half = symexp(torch.linspace(-limit, 0.0, num_buckets // 2))
    return torch.cat([half, -half.flip(0)])


class TwoHotEncoder:
    """Two-hot encoding for the reward and value heads (DreamerV2/V3).

    ``spacing="symlog"`` (default; the DreamerV3 paper code): ``num_buckets`` equally spaced
    bucket centres on ``[-symlog_range, symlog_range]`` in symlog space; a target's symlog is
    split between its two nearest centres so that the expected centre equals it, and
    :meth:`decode` maps the expected centre back with :func:`symexp`.

    ``spacing="symexp"`` (the current dreamerv3 code): the centres are :func:`symexp_bins`
    (real values up to ``symexp(symlog_range)``); a real target is split linearly between its
    two neighbouring centres and :meth:`decode` is the expected centre (summed symmetrically, so
    uniform probabilities decode to exactly 0).

    Targets outside the range are clipped to it. :meth:`encode` takes targets in symlog space
    (for either spacing), :meth:`encode_values` real ones; :meth:`decode` returns real values;
    :meth:`loss` takes real-valued targets. All methods are vectorised over any leading shape
    and follow the input's device and dtype.
    """

    def __init__(self, num_buckets: int = 255, symlog_range: float = 10.0, spacing: str = "symlog"):
        if not isinstance(num_buckets, (int, np.integer)) or num_buckets < 2:
            raise ValueError(f"num_buckets must be an integer >= 2, got {num_buckets!r}")
        if not (isinstance(symlog_range, (int, float)) and math.isfinite(symlog_range)
                and symlog_range > 0):
            raise ValueError(f"symlog_range must be a finite number > 0, got {symlog_range!r}")
        if spacing not in TWOHOT_BINS:
            raise ValueError(f"two-hot spacing must be one of {TWOHOT_BINS}, got {spacing!r}")
        self.num_buckets = int(num_buckets)
        self.symlog_range = float(symlog_range)
        self.spacing = spacing
        self.buckets: Tensor
        self.register_buffers()

    @property
    def bucket_width(self) -> float:
        """Spacing of the centres in symlog space (``symlog`` spacing)."""
        return 2.0 * self.symlog_range / (self.num_buckets - 1)

    def register_buffers(self) -> None:
        """Allocate the bucket-centre buffer (float32, CPU). Use :meth:`to` to move it."""
        if self.spacing == "symexp":
            self.buckets = symexp_bins(self.num_buckets, self.symlog_range)
        else:
            self.buckets = torch.linspace(-self.symlog_range, self.symlog_range, self.num_buckets)

    def to(self, device) -> "TwoHotEncoder":
        """Move the bucket centres to ``device`` (in place); returns ``self``."""
        self.buckets = self.buckets.to(device)
        return self

    def _buckets_like(self, x: Tensor) -> Tensor:
        return self.buckets.to(device=x.device, dtype=x.dtype)

    def encode(self, target: Tensor) -> Tensor:
        """Two-hot distribution ``target.shape + (num_buckets,)`` for symlog-space targets."""
        target = torch.as_tensor(target)
        if self.spacing == "symexp":
            return self.encode_values(symexp(target.float() if not target.is_floating_point() else target))
        out_dtype = target.dtype if target.is_floating_point() else torch.float32
        x = target.to(torch.float64 if out_dtype == torch.float64 else torch.float32)
        x = x.clamp(-self.symlog_range, self.symlog_range)
        position = (x + self.symlog_range) / self.bucket_width
        below = position.floor().clamp(0, self.num_buckets - 2)
        weight_above = (position - below).clamp(0.0, 1.0)
        below_idx = below.long().unsqueeze(-1)
        encoded = torch.zeros(*x.shape, self.num_buckets, dtype=x.dtype, device=x.device)
        encoded.scatter_(-1, below_idx, (1.0 - weight_above).unsqueeze(-1))
        encoded.scatter_add_(-1, below_idx + 1, weight_above.unsqueeze(-1))
        return encoded.to(out_dtype)

    def _check_logits(self, logits: Tensor) -> None:
        if logits.shape[-1] != self.num_buckets:
            raise ValueError(
                f"logits must have a last dimension of num_buckets={self.num_buckets}, "
                f"got shape {tuple(logits.shape)}"
            )

    def encode_values(self, target: Tensor) -> Tensor:
        """Two-hot distribution ``target.shape + (num_buckets,)`` of real-valued targets: with
        ``symexp`` spacing interpolated between the neighbouring real centres, with ``symlog``
        spacing :meth:`encode` of their symlog."""
        target = torch.as_tensor(target)
        if self.spacing == "symlog":
            return self.encode(symlog(target.float() if not target.is_floating_point() else target))
        out_dtype = target.dtype if target.is_floating_point() else torch.float32
        x = target.to(torch.float64 if out_dtype == torch.float64 else torch.float32)
        below, above, weight_below, weight_above = nearest_bins(self._buckets_like(x), x)
        encoded = torch.zeros(*x.shape, self.num_buckets, dtype=x.dtype, device=x.device)
        encoded.scatter_add_(-1, below.unsqueeze(-1), weight_below.unsqueeze(-1))
        encoded.scatter_add_(-1, above.unsqueeze(-1), weight_above.unsqueeze(-1))
        return encoded.to(out_dtype)

    def decode(self, logits: Tensor) -> Tensor:
        """Expected bucket centre under ``softmax(logits)``, mapped back with :func:`symexp`
        (``symlog`` spacing) or summed symmetrically around the middle (``symexp`` spacing)."""
        self._check_logits(logits)
        compute = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        probs = torch.softmax(compute, dim=-1)
        if self.spacing == "symlog":  # one matrix-vector product: no (..., K) temporary
            return symexp(probs @ self._buckets_like(compute)).to(logits.dtype)
        weighted = probs * self._buckets_like(compute)
        # pair each negative centre with its positive mirror first: no left-to-right rounding
        half = self.num_buckets // 2
        low, high = weighted[..., :half].flip(-1), weighted[..., self.num_buckets - half:]
        expected = (low + high).sum(dim=-1)
        if self.num_buckets % 2:
            expected = expected + weighted[..., half]
        return expected.to(logits.dtype)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy of ``logits`` against the two-hot code of ``symlog(target)``.

        ``target`` holds real values (the same space :meth:`decode` returns), shaped like
        ``logits.shape[:-1]``. Returns the per-element loss (no reduction).
        """
        self._check_logits(logits)
        if tuple(target.shape) != tuple(logits.shape[:-1]):
            raise ValueError(
                f"target shape {tuple(target.shape)} must equal logits shape without its last "
                f"dimension, {tuple(logits.shape[:-1])}"
            )
        compute = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        code = self.encode_values(target.to(compute.dtype).detach())
        return -(code * torch.log_softmax(compute, dim=-1)).sum(dim=-1)


# -- lambda returns ------------------------------------------------------------------------
def nearest_bins(bins: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(below, above, weight_below, weight_above)``: the two sorted ``bins`` around each ``x``
    and their linear-interpolation weights (outside the range: all weight on the end bin)."""
    last = bins.shape[0] - 1
    above = torch.searchsorted(bins, x.contiguous(), right=True)  # centres <= x
    below = (above - 1).clamp(0, last)
    above = above.clamp(0, last)
    equal = below == above
    to_below = torch.where(equal, 1.0, (bins[below] - x).abs())
    to_above = torch.where(equal, 1.0, (bins[above] - x).abs())
    total = to_below + to_above
    return below, above, to_above / total, to_below / total


def _broadcast_discounts(discounts, rewards: Tensor) -> Tensor:
    """A scalar or broadcastable discount as a tensor shaped like ``rewards``."""
    discounts = torch.as_tensor(discounts, dtype=rewards.dtype, device=rewards.device)
    try:
        return discounts.expand_as(rewards)
    except RuntimeError:
        raise ValueError(
            f"discounts of shape {tuple(discounts.shape)} do not broadcast to rewards "
            f"{tuple(rewards.shape)}"
        ) from None


def _lambda_returns(rewards: Tensor, next_values: Tensor, discounts: Tensor, lam: float,
                    bootstrap: Tensor) -> Tensor:
    """The TD(lambda) recursion, time along axis 0 (the one implementation).

    ``R_t = r_t + d_t * ((1 - lam) * v_{t+1} + lam * R_{t+1})`` with ``R_T = bootstrap``,
    where ``next_values[t] = v_{t+1}`` (so ``next_values[-1]`` is ``bootstrap``).
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam!r}")
    if rewards.shape != discounts.shape or rewards.shape != next_values.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)}, discounts {tuple(discounts.shape)} and values "
            f"must share one shape (values may have one extra time step)"
        )
    if tuple(bootstrap.shape) != tuple(rewards.shape[1:]):
        raise ValueError(
            f"bootstrap value shape {tuple(bootstrap.shape)} must be {tuple(rewards.shape[1:])}"
        )
    inputs = rewards + discounts * next_values * (1.0 - lam)
    returns = []
    last = bootstrap
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = inputs[t] + discounts[t] * lam * last
        returns.append(last)
    returns.reverse()
    return torch.stack(returns, dim=0) if returns else torch.zeros_like(rewards)


def compute_return(rewards: Tensor, values: Tensor, discounts: Tensor, td_lam: float,
                   last_value: Tensor) -> Tensor:
    """TD(lambda) returns over imagined trajectories, time-major (DreamerV1 actor/value targets).

    Args:
        rewards: ``(T, ...)`` reward after step ``t``.
        values: ``(T, ...)`` value of the state at step ``t`` (``values[0]`` is not used: the
            target at ``t`` bootstraps from ``values[t + 1]``).
        discounts: ``(T, ...)`` discount (``gamma * (1 - terminal)``) applied after step ``t``
            (a scalar or any shape that broadcasts to ``rewards`` works too).
        td_lam: lambda in ``[0, 1]``.
        last_value: ``(...)`` value of the state after the last step.

    Returns:
        ``(T, ...)`` returns with ``R_t = r_t + d_t((1 - lam) v_{t+1} + lam R_{t+1})`` and
        ``R_T = last_value``.
    """
    if values.shape != rewards.shape:
        raise ValueError(
            f"values shape {tuple(values.shape)} must equal rewards shape {tuple(rewards.shape)}"
        )
    next_values = torch.cat([values[1:], last_value.unsqueeze(0)], dim=0)
    discounts = _broadcast_discounts(discounts, rewards)
    return _lambda_returns(rewards, next_values, discounts, td_lam, last_value)


def compute_lambda_return(rewards: Tensor, values: Tensor, discounts: Tensor,
                          lambda_coef: float = 0.95) -> Tensor:
    """lambda-return targets for value training, batch-major.

    Args:
        rewards: ``(B, T)`` (or ``(B, T, ...)``).
        values: ``(B, T + 1)`` value estimates of states ``0..T``; ``values[:, T]`` bootstraps.
        discounts: ``(B, T)`` discount after each step (``gamma * (1 - terminal)``), or a
            scalar / shape that broadcasts to ``rewards``.
        lambda_coef: lambda in ``[0, 1]``.

    Returns:
        ``(B, T)`` with ``R_t = r_t + d_t((1 - lam) V_{t+1} + lam R_{t+1})``, ``R_T = V_T``.
    """
    if rewards.dim() < 2:
        raise ValueError(f"rewards must be (B, T), got shape {tuple(rewards.shape)}")
    horizon = rewards.shape[1]
    expected = (rewards.shape[0], horizon + 1, *rewards.shape[2:])
    if tuple(values.shape) != expected:
        raise ValueError(
            f"values must be (B, T + 1) = {expected} for rewards {tuple(rewards.shape)}, "
            f"got {tuple(values.shape)}"
        )
    discounts = _broadcast_discounts(discounts, rewards)
    returns = _lambda_returns(
        rewards.transpose(0, 1), values[:, 1:].transpose(0, 1), discounts.transpose(0, 1),
        lambda_coef, values[:, -1],
    )
    return returns.transpose(0, 1)
