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

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Independent, Normal, TransformedDistribution, constraints
from torch.distributions.transforms import Transform

from distwm.blocks.returns import TwoHotEncoder, symexp, symlog

__all__ = [
    "OneHotDist",
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


class OneHotDist:
    """Categorical over the last axis with ``unimix`` uniform mixing.

    ``sample()`` returns one-hot vectors whose gradient flows into the probabilities
    (straight-through); ``log_prob`` takes one-hot vectors. ``event_dims`` trailing axes
    (besides the class axis) are summed over, e.g. 1 for 32 categoricals of 32 classes.
    """

    def __init__(self, logits: Tensor, unimix: float = 0.0, event_dims: int = 0):
        if unimix > 0.0:
            probs = torch.softmax(logits, -1)
            self.probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
            self.logits = torch.log(self.probs)
        else:
            self.logits = torch.log_softmax(logits, -1)
            self.probs = self.logits.exp()
        self.event_dims = event_dims

    def _reduce(self, x: Tensor) -> Tensor:
        return x.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else x

    def _straight_through(self, index: Tensor) -> Tensor:
        probs = self.probs
        hard = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
        return hard + probs - probs.detach() if probs.requires_grad else hard

    def mode(self) -> Tensor:
        return self._straight_through(self.probs.argmax(-1))

    def sample_index(self) -> Tensor:
        """Sampled class indices (inverse CDF: one uniform number per categorical)."""
        probs = self.probs.detach()
        uniform = torch.rand(*probs.shape[:-1], 1, device=probs.device, dtype=probs.dtype)
        return (probs.cumsum(-1) < uniform).sum(-1).clamp_(max=probs.shape[-1] - 1)

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


class TwoHotDist:
    """Regression by classification over ``num_buckets`` symlog-spaced buckets (DreamerV3)."""

    def __init__(self, logits: Tensor, encoder: TwoHotEncoder, event_dims: int = 0):
        self.logits = logits
        self.encoder = encoder
        self.event_dims = event_dims

    def mode(self) -> Tensor:
        return self.encoder.decode(self.logits)

    mean = mode

    def log_prob(self, target: Tensor) -> Tensor:
        loss = self.encoder.loss(self.logits, target)
        return -(loss.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else loss)


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
