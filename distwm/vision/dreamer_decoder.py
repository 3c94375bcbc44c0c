"""Heads of the Dreamer agent (the seed's ``vision.dreamer_decoder``).

* :class:`ConvDecoder`: latent features -> image distribution (transposed convs);
* :class:`DenseDecoder`: latent features -> reward / value / continue / vector observation
  (``dist``: ``normal``, ``mse``, ``symlog_mse``, ``binary``, ``twohot`` or ``none``);
* :class:`ActionDecoder`: the actor (``tanh_normal`` as in V1, ``normal`` as in V3, or
  ``onehot`` for discrete actions);
* :class:`MultiDecoder`: one decoder per observation key.

Each ``forward`` takes features ``(…, stoch + deter)``; the distribution classes live in
:mod:`distwm.blocks.dreamer_distributions` (``TanhBijector`` and ``SampleDist`` are
re-exported here, where the seed has them).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from distwm.blocks.dreamer_blocks import MLP, use_rms_norm_
from distwm.blocks.dreamer_distributions import (
    BernoulliDist,
    GaussianDist,
    MSEDist,
    OneHotDist,
    SampleDist,
    SymlogDist,
    TanhBijector,
    TwoHotDist,
    bounded_normal,
    tanh_normal,
)
from distwm.blocks.returns import TwoHotEncoder
from distwm.vision.conv import DeconvStack, apply_to_images
from distwm.vision.dreamer_encoder import conv_stages

__all__ = [
    "ConvDecoder",
    "DenseDecoder",
    "ActionDecoder",
    "MultiDecoder",
    "TanhBijector",
    "SampleDist",
    "DENSE_DISTS",
    "ACTION_DISTS",
]

DENSE_DISTS = ("normal", "mse", "symlog_mse", "binary", "twohot", "none")
ACTION_DISTS = ("tanh_normal", "normal", "onehot")


class ConvDecoder(nn.Module):
    """Transposed convolutions from features to an image distribution, mirroring ConvEncoder
    (a :class:`~distwm.vision.conv.DeconvStack` from 4 x 4).

    ``dist="normal"``: ``Independent(Normal(mean, 1), 3)`` (V1/V2); ``"mse"``: squared error
    summed over pixels (V3). Images are in the encoder's ``[-0.5, 0.5]`` space.
    """

    def __init__(self, stoch_size: int, deter_size: int, output_shape: Sequence[int],
                 activation: str = "relu", depth: int = 32, layer_norm: bool = False,
                 dist: str = "normal", norm: str = "layer"):
        super().__init__()
        if dist not in ("normal", "mse"):
            raise ValueError(f"ConvDecoder dist {dist!r} is not one of 'normal', 'mse'")
        self.output_shape = tuple(int(s) for s in output_shape)
        self.dist = dist
        stages = conv_stages(self.output_shape)
        self.top_channels = depth * 2 ** (stages - 1)
        self.linear = nn.Linear(stoch_size + deter_size, self.top_channels * 16)
        self.deconvs = DeconvStack(self.top_channels, self.output_shape[0], depth, (4,) * stages,
                                   activation, padding=1, layer_norm=layer_norm)
        if layer_norm and norm == "rms":
            use_rms_norm_(self.deconvs)

    def _mean(self, features: Tensor) -> Tensor:
        return self.deconvs(self.linear(features).reshape(-1, self.top_channels, 4, 4))

    def forward(self, features: Tensor):
        mean = apply_to_images(self._mean, features, 1, self.output_shape)
        if self.dist == "mse":
            return MSEDist(mean, 3)
        return GaussianDist(mean, 1.0, 3)


class DenseDecoder(nn.Module):
    """MLP from features to a distribution over ``output_shape`` (``()`` or ``(1,)`` for scalars).

    ``twohot_bins``: the spacing of the ``twohot`` bins (``symlog`` or ``symexp``, see
    :class:`~distwm.blocks.returns.TwoHotEncoder`); ``norm``: ``layer`` or ``rms``.
    """

    def __init__(self, stoch_size: int, deter_size: int, output_shape: Sequence[int],
                 n_layers: int, units: int, activation: str, dist: str,
                 num_buckets: int = 255, symlog_range: float = 10.0,
                 layer_norm: bool = False, zero_init_output: bool = False,
                 norm: str = "layer", twohot_bins: str = "symlog"):
        super().__init__()
        if dist not in DENSE_DISTS:
            raise ValueError(f"DenseDecoder dist {dist!r} is not one of {DENSE_DISTS}")
        self.output_shape = tuple(int(s) for s in output_shape)
        self.dist = dist
        size = 1
        for s in self.output_shape:
            size *= s
        self.twohot = (TwoHotEncoder(num_buckets, symlog_range, twohot_bins) if dist == "twohot"
                       else None)
        out_dim = size * num_buckets if dist == "twohot" else size
        self.mlp = MLP(stoch_size + deter_size, units, n_layers, activation, layer_norm,
                       out_dim=out_dim, zero_out=zero_init_output, norm=norm)

    def forward(self, features: Tensor):
        return self.dist_from_raw(self.mlp(features))

    def dist_from_raw(self, out: Tensor):
        """The distribution of the MLP output ``out`` (lets callers slice the raw output)."""
        lead = out.shape[:-1]
        events = len(self.output_shape)
        if self.dist == "twohot":
            logits = out.reshape(lead + self.output_shape + (self.twohot.num_buckets,))
            return TwoHotDist(logits, self.twohot, events)
        out = out.reshape(lead + self.output_shape)
        if self.dist == "none":
            return out
        if self.dist == "normal":
            return GaussianDist(out, 1.0, events)
        if self.dist == "mse":
            return MSEDist(out, events)
        if self.dist == "symlog_mse":
            return SymlogDist(out, events)
        return BernoulliDist(out, events)


class ActionDecoder(nn.Module):
    """The actor: features -> action distribution; ``forward`` returns an action.

    ``dist="tanh_normal"`` (DreamerV1: tanh-squashed Gaussian with ``min_std``, ``init_std``,
    ``mean_scale``), ``"normal"`` (DreamerV3: ``Normal(tanh(mean), std in [0.1, 1])``) or
    ``"onehot"`` (discrete actions, categorical with ``unimix``).
    """

    def __init__(self, action_size: int, stoch_size: int, deter_size: int, n_layers: int,
                 units: int, activation: str, min_std: float = 1e-4, init_std: float = 5,
                 mean_scale: float = 5, dist: str = "tanh_normal", layer_norm: bool = False,
                 unimix: float = 0.0, norm: str = "layer"):
        super().__init__()
        if dist not in ACTION_DISTS:
            raise ValueError(f"ActionDecoder dist {dist!r} is not one of {ACTION_DISTS}")
        self.action_size = action_size
        self.dist = dist
        self.min_std, self.init_std, self.mean_scale = min_std, init_std, mean_scale
        self.unimix = unimix
        out_dim = action_size if dist == "onehot" else 2 * action_size
        self.mlp = MLP(stoch_size + deter_size, units, n_layers, activation, layer_norm,
                       out_dim=out_dim, norm=norm)

    def get_dist(self, features: Tensor):
        return self.dist_from_raw(self.mlp(features))

    def dist_from_raw(self, raw: Tensor):
        """The action distribution of the MLP output ``raw``."""
        if self.dist == "onehot":
            return OneHotDist(raw, self.unimix)
        if self.dist == "normal":
            return bounded_normal(raw)
        return tanh_normal(raw, self.min_std, self.init_std, self.mean_scale)

    def forward(self, features: Tensor, deter: bool = False) -> Tensor:
        dist = self.get_dist(features)
        if deter:
            return dist.mode()
        return dist.sample() if self.dist == "onehot" else dist.rsample()

    def add_exploration(self, action: Tensor, action_noise: float = 0.3) -> Tensor:
        """Gaussian noise (clipped to [-1, 1]) or, for one-hot actions, epsilon-random actions."""
        if action_noise <= 0:
            return action
        if self.dist == "onehot":
            random = torch.randint(0, self.action_size, action.shape[:-1], device=action.device)
            random = torch.nn.functional.one_hot(random, self.action_size).to(action.dtype)
            pick = torch.rand(action.shape[:-1] + (1,), device=action.device) < action_noise
            return torch.where(pick, random, action)
        return (action + action_noise * torch.randn_like(action)).clamp(-1.0, 1.0)


class MultiDecoder(nn.Module):
    """One decoder per observation key: images by :class:`ConvDecoder`, vectors by an MLP.

    ``forward`` returns ``{key: distribution}``; :meth:`loss` sums ``-log_prob`` over keys.
    """

    def __init__(self, obs_shapes: Mapping[str, Sequence[int]], stoch_size: int,
                 deter_size: int, units: int, layers: int, depth: int, activation: str,
                 layer_norm: bool, image_dist: str, state_dist: str, norm: str = "layer"):
        super().__init__()
        self.decoders = nn.ModuleDict()
        if "image" in obs_shapes:
            self.decoders["image"] = ConvDecoder(stoch_size, deter_size, obs_shapes["image"],
                                                 activation, depth, layer_norm, image_dist, norm)
        if "state" in obs_shapes:
            self.decoders["state"] = DenseDecoder(stoch_size, deter_size, obs_shapes["state"],
                                                  max(layers, 1), units, activation, state_dist,
                                                  layer_norm=layer_norm, norm=norm)

    def forward(self, features: Tensor) -> dict:
        return {key: decoder(features) for key, decoder in self.decoders.items()}

    def loss(self, features: Tensor, targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-key negative log-likelihood, shaped like ``features.shape[:-1]``."""
        return {key: -dist.log_prob(targets[key]) for key, dist in self(features).items()}
