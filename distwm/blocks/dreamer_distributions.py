"""Output distributions of the Dreamer heads.

Every class offers ``mode()``, ``log_prob(x)`` and (where needed) ``sample()`` /
``entropy()`` over the trailing event dimensions, so that the losses treat all heads alike:

* :class:`OneHotDist`: categorical with uniform mixing and straight-through samples
  (DreamerV2/V3 latents and discrete actions);
* :class:`TwoHotDist`: symlog two-hot regression (DreamerV3 reward and critic);
* :class:`MSEDist` / :class:`SymlogDist`: squared error in raw or symlog space (decoders);
* :class:`TanhBijector` and :class:`SampleDist`: DreamerV1's tanh-squashed Gaussian actor;
* :func:`bounded_normal`: DreamerV3's continuous actor.
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Independent, Normal, TransformedDistribution, constraints
from torch.distributions.transforms import Transform

from distwm.blocks.returns import TwoHotEncoder, nearest_bins, symexp, symlog

__all__ = [
    "OneHotDist",
    "mixed_probs",
    "sample_index",
    "sampling_generator",
    "two_hot_parts",
    "TwoHotDist",
    "MSEDist",
    "SymlogDist",
    "BernoulliDist",
    "GaussianDist",
    "TanhBijector",
    "SampleDist",
    "bounded_normal",
    "tanh_normal",
]


def mixed_probs(logits: Tensor, unimix: float = 0.0) -> Tensor:
    """The probabilities of :class:`OneHotDist` (``softmax``, mixed with ``unimix`` uniform),
    without the log-probabilities the class also computes."""
    if unimix <= 0.0:
        return torch.log_softmax(logits, -1).exp()
    probs = torch.softmax(logits, -1)
    if not (torch.is_grad_enabled() and logits.requires_grad):  # in place: no graph to keep
        return probs.mul_(1.0 - unimix).add_(unimix / logits.shape[-1])
    return (1.0 - unimix) * probs + unimix / logits.shape[-1]


_THREAD = threading.local()  # .generator: the sampling_generator() of this thread


@contextlib.contextmanager
def sampling_generator(generator: torch.Generator | None):
    """Within this scope :func:`sample_index` (so :meth:`OneHotDist.sample` too) draws from
    ``generator`` in the calling thread (threads that sample at once stay reproducible);
    ``None`` or outside it: PyTorch's default generator."""
    outer = getattr(_THREAD, "generator", None)
    _THREAD.generator = generator
    try:
        yield
    finally:
        _THREAD.generator = outer


def sample_index(probs: Tensor) -> Tensor:
    """Class indices sampled from ``probs`` ``(..., K)`` by inverse CDF: one uniform number per
    categorical, the index is the number of CDF entries below it (a binary search of the sorted
    CDF: the same indices as counting, without a ``(..., K)`` comparison)."""
    generator = getattr(_THREAD, "generator", None)
    uniform = torch.rand(*probs.shape[:-1], 1, device=probs.device, dtype=probs.dtype,
                         generator=generator)
    index = torch.searchsorted(probs.cumsum(-1), uniform).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)


class OneHotDist:
    """Categorical over the last axis with ``unimix`` uniform mixing.

    ``sample()`` returns one-hot vectors whose gradient flows into the probabilities
    (straight-through); ``log_prob`` takes one-hot vectors. ``event_dims`` trailing axes
    (besides the class axis) are summed over, e.g. 1 for 32 categoricals of 32 classes.
    """

    def __init__(self, logits: Tensor, unimix: float = 0.0, event_dims: int = 0):
        if unimix > 0.0:
            self.probs = mixed_probs(logits, unimix)
            self.logits = torch.log(self.probs)
        else:
            self.logits = torch.log_softmax(logits, -1)
            self.probs = self.logits.exp()
        self.event_dims = event_dims

    def _reduce(self, x: Tensor) -> Tensor:
        return x.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else x

    def _straight_through(self, index: Tensor) -> Tensor:
        probs = self.probs
        # scatter into zeros: F.one_hot's int64 result needs a cast, and it checks the range
        hard = torch.zeros_like(probs).scatter_(-1, index.unsqueeze(-1), 1.0)
        return hard + probs - probs.detach() if probs.requires_grad else hard

    def mode(self) -> Tensor:
        return self._straight_through(self.probs.argmax(-1))

    def sample_index(self) -> Tensor:
        """Sampled class indices (inverse CDF: one uniform number per categorical)."""
        return sample_index(self.probs.detach())

    def sample(self) -> Tensor:
        """A one-hot sample with straight-through gradients."""
        return self._straight_through(self.sample_index())

    def log_prob(self, onehot: Tensor) -> Tensor:
        return self._reduce((onehot * self.logits).sum(-1))

    def entropy(self) -> Tensor:
        return self._reduce(-(self.probs * self.logits).sum(-1))

    def kl(self, other: "OneHotDist") -> Tensor:
        """KL(self || other), summed over the event axes."""
        return self._reduce((self.probs * (self.logits - other.logits)).sum(-1))


def two_hot_parts(encoder: TwoHotEncoder, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(low, high, weight_low, weight_high)``: the two buckets of ``encoder``'s two-hot code of
    the real-valued ``target`` and their weights, so that ``encoder.encode_values(target)`` is
    ``weight_low`` at ``low`` plus ``weight_high`` at ``high`` (the same arithmetic, without
    the dense ``(..., num_buckets)`` code)."""
    last = encoder.num_buckets - 1
    if encoder.spacing == "symlog":
        x = symlog(target).clamp(-encoder.symlog_range, encoder.symlog_range)
        position = (x + encoder.symlog_range) / encoder.bucket_width
        below = position.floor().clamp(0, last - 1)
        weight_above = (position - below).clamp(0.0, 1.0)
        low = below.long()
        return low, low + 1, 1.0 - weight_above, weight_above
    return nearest_bins(encoder.buckets.to(device=target.device, dtype=target.dtype), target)


class TwoHotDist:
    """Regression by classification over ``num_buckets`` symlog-spaced buckets (DreamerV3).

    ``log_prob`` is the encoder's two-hot cross-entropy computed from the two buckets of each
    target (a gather of the log-softmax, not a product with the dense two-hot code); the
    log-softmax is computed once per distribution (a critic scored against two targets
    reuses it).
    """

    def __init__(self, logits: Tensor, encoder: TwoHotEncoder, event_dims: int = 0):
        self.logits = logits
        self.encoder = encoder
        self.event_dims = event_dims
        self._log_probs: Tensor | None = None

    def mode(self) -> Tensor:
        return self.encoder.decode(self.logits)

    mean = mode

    def log_probs(self) -> Tensor:
        """``log_softmax`` of the logits (float32 for half-precision logits), cached."""
        if self._log_probs is None:
            logits = self.logits
            self.encoder._check_logits(logits)
            compute = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            self._log_probs = torch.log_softmax(compute, dim=-1)
        return self._log_probs

    def log_prob(self, target: Tensor) -> Tensor:
        if tuple(target.shape) != tuple(self.logits.shape[:-1]):
            raise ValueError(
                f"target shape {tuple(target.shape)} must equal logits shape without its last "
                f"dimension, {tuple(self.logits.shape[:-1])}"
            )
        log_probs = self.log_probs()
        target = target.to(log_probs.dtype).detach()
        low, high, w_low, w_high = two_hot_parts(self.encoder, target)
        pick = lambda index: log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # noqa: E731
        loglik = w_low * pick(low) + w_high * pick(high)
        return loglik.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else loglik


class MSEDist:
    """A point prediction scored by negative squared error summed over ``event_dims`` axes."""

    def __init__(self, mean: Tensor, event_dims: int = 1):
        self._mean = mean
        self.event_dims = event_dims

    def _reduce(self, x: Tensor) -> Tensor:
        return x.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else x

    def mode(self) -> Tensor:
        return self._mean

    mean = mode

    def log_prob(self, target: Tensor) -> Tensor:
        return -self._reduce((self._mean - target) ** 2)


class SymlogDist(MSEDist):
    """Squared error in symlog space (DreamerV3 vector decoder); ``mode`` maps back."""

    def mode(self) -> Tensor:
        return symexp(self._mean)

    mean = mode

    def log_prob(self, target: Tensor) -> Tensor:
        return -self._reduce((self._mean - symlog(target)) ** 2)


class BernoulliDist(Independent):
    """Bernoulli over ``event_dims`` trailing axes with a thresholded ``mode``."""

    def __init__(self, logits: Tensor, event_dims: int = 0):
        super().__init__(torch.distributions.Bernoulli(logits=logits), event_dims,
                         validate_args=False)

    def mode(self) -> Tensor:
        return (self.base_dist.logits > 0).to(self.base_dist.logits.dtype)


class GaussianDist(Independent):
    """``Independent(Normal(mean, std), event_dims)`` with a ``mode()`` method like the others."""

    def __init__(self, mean: Tensor, std=1.0, event_dims: int = 0):
        super().__init__(Normal(mean, std, validate_args=False), event_dims, validate_args=False)

    def mode(self) -> Tensor:
        return self.base_dist.mean


class TanhBijector(Transform):
    """``y = tanh(x)`` with a numerically stable log-det Jacobian (DreamerV1 actor)."""

    domain = constraints.real
    codomain = constraints.interval(-1.0, 1.0)
    bijective = True

    def __init__(self):
        super().__init__(cache_size=1)

    @property
    def sign(self) -> int:
        return 1

    def __eq__(self, other) -> bool:
        return isinstance(other, TanhBijector)

    def _call(self, x: Tensor) -> Tensor:
        return torch.tanh(x)

    def atanh(self, x: Tensor) -> Tensor:
        return 0.5 * torch.log((1 + x) / (1 - x))

    def _inverse(self, y: Tensor) -> Tensor:
        y = y.clamp(-0.99999997, 0.99999997)
        return self.atanh(y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))


class SampleDist:
    """Monte-Carlo ``mean``, ``mode`` and ``entropy`` of a distribution without closed forms."""

    def __init__(self, dist, samples: int = 100):
        self._dist = dist
        self._samples = samples

    @property
    def name(self) -> str:
        return "SampleDist"

    def __getattr__(self, name):
        return getattr(self._dist, name)

    def mean(self) -> Tensor:
        return self._dist.rsample((self._samples,)).mean(0)

    def mode(self) -> Tensor:
        sample = self._dist.rsample((self._samples,))
        logprob = self._dist.log_prob(sample)
        index = logprob.argmax(0)
        gather = index.reshape(1, *index.shape, *([1] * (sample.dim() - logprob.dim())))
        gather = gather.expand(1, *sample.shape[1:])
        return sample.gather(0, gather).squeeze(0)

    def entropy(self) -> Tensor:
        sample = self._dist.rsample((self._samples,))
        return -self._dist.log_prob(sample).mean(0)

    def sample(self) -> Tensor:
        return self._dist.rsample()

    def rsample(self) -> Tensor:
        return self._dist.rsample()

    def log_prob(self, x: Tensor) -> Tensor:
        return self._dist.log_prob(x)


def tanh_normal(raw: Tensor, min_std: float = 1e-4, init_std: float = 5.0,
                mean_scale: float = 5.0) -> SampleDist:
    """DreamerV1's actor distribution: ``tanh(Normal(mean, std))``, from raw ``(…, 2A)``."""
    mean, std = raw.chunk(2, -1)
    raw_init_std = math.log(math.exp(init_std) - 1.0)
    mean = mean_scale * torch.tanh(mean / mean_scale)
    std = F.softplus(std + raw_init_std) + min_std
    dist = TransformedDistribution(Normal(mean, std), TanhBijector())
    return SampleDist(Independent(dist, 1))


def bounded_normal(raw: Tensor, min_std: float = 0.1, max_std: float = 1.0) -> Independent:
    """DreamerV3's actor distribution: ``Normal(tanh(mean), std)`` with bounded std."""
    mean, std = raw.chunk(2, -1)
    std = (max_std - min_std) * torch.sigmoid(std + 2.0) + min_std
    return GaussianDist(torch.tanh(mean), std, 1)
