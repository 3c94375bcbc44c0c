"""PlaNet's recurrent state-space model (Hafner et al. 2019, arXiv:1811.04551).

Naming follows the reference: ``state_size`` is the size of the deterministic GRU state
``h_t`` (the "belief"), ``latent_size`` the size of the Gaussian stochastic state ``s_t``.

One step of the model, used identically when training, filtering while acting and planning::

    h_t = GRU(h_{t-1}, act(W [s_{t-1}, a_t]))          deterministic_state_fwd
    prior      p(s_t | h_t)        = N(mu(h_t), sigma(h_t))          state_prior
    posterior  q(s_t | h_t, e_t)   = N(mu(h_t, e_t), sigma(h_t, e_t)) state_posterior

``a_t`` is the action that led to observation ``t`` (zero at the start of an episode, where
``h``, ``s`` and ``a`` are reset to zero), ``e_t = encoder(o_t)``. The reward head predicts
``r_t`` (the reward that came with ``o_t``) from ``(h_t, s_t)``.

Observations are images ``(C, 64, 64)`` in ``[-0.5, 0.5]`` (CNN encoder and decoder) or, with
``obs_shape=(D,)``, vectors (MLP encoder and decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from distwm.blocks.gaussian_rssm import GaussianRSSMLayers, gaussian_sample
from distwm.blocks.layers import activation_module, build_mlp
from distwm.models.planet.heads import RewardModel
from distwm.vision.planet_decoder import CNNDecoder
from distwm.vision.planet_encoder import CNNEncoder

__all__ = ["RecurrentStateSpaceModel", "RSSMSequence", "VectorDecoder"]


class VectorDecoder(nn.Module):
    """MLP decoder for vector observations with the image decoder's ``(latent, state)`` call."""

    def __init__(self, state_size: int, latent_size: int, hidden_size: int, obs_dim: int, activation: str):
        super().__init__()
        self.net = build_mlp(latent_size + state_size, [hidden_size, hidden_size], obs_dim, activation)

    def forward(self, latent: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([latent, state], dim=-1))


@dataclass
class RSSMSequence:
    """Stacked outputs of :meth:`RecurrentStateSpaceModel.observe`, each ``(T, B, ...)``."""

    states: torch.Tensor  # h_t
    latents: torch.Tensor  # s_t sampled from the posterior
    prior_mean: torch.Tensor
    prior_std: torch.Tensor
    posterior_mean: torch.Tensor
    posterior_std: torch.Tensor


class RecurrentStateSpaceModel(GaussianRSSMLayers):
    """A Recurrent State Space Model (RSSM) for modeling latent dynamics in sequential data.

    Args:
        action_size: action vector size.
        state_size: deterministic (GRU) state size.
        latent_size: stochastic state size.
        hidden_size: width of the prior/posterior/reward MLPs.
        embed_size: observation embedding size.
        activation_function: activation name (``relu``, ``elu``, ...).
        obs_shape: ``(C, 64, 64)`` for images (default ``(3, 64, 64)``) or ``(D,)`` for vectors.
        min_std: lower bound of the prior and posterior standard deviations.
    """

    def __init__(
        self,
        action_size: int,
        state_size: int = 200,
        latent_size: int = 30,
        hidden_size: int = 200,
        embed_size: int = 1024,
        activation_function: str = "relu",
        obs_shape: Sequence[int] = (3, 64, 64),
        min_std: float = 0.1,
    ):
        for name, value in (("action_size", action_size), ("state_size", state_size),
                            ("latent_size", latent_size), ("hidden_size", hidden_size),
                            ("embed_size", embed_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"RecurrentStateSpaceModel: {name} must be a positive int, got {value!r}")
        obs_shape = tuple(int(d) for d in obs_shape)
        if len(obs_shape) == 3:
            if obs_shape[1:] != (CNNEncoder.image_size, CNNEncoder.image_size):
                raise ValueError(
                    f"RecurrentStateSpaceModel: image observations must be (C, 64, 64), got {obs_shape}"
                )
        elif len(obs_shape) != 1:
            raise ValueError(
                f"RecurrentStateSpaceModel: obs_shape must be (C, 64, 64) for images or (D,) for "
                f"vectors, got {obs_shape}"
            )
        act = activation_function
        activation_module(act)  # validate the name early
        super().__init__(action_size, latent_size, state_size, hidden_size, embed_size, act, min_std)
        self.action_size = action_size
        self.state_size = state_size
        self.latent_size = latent_size
        self.hidden_size = hidden_size
        self.embed_size = embed_size
        self.obs_shape = obs_shape

        if self.is_image:
            self.encoder = CNNEncoder(embed_size, act, in_channels=obs_shape[0])
            self.decoder = CNNDecoder(state_size, latent_size, embed_size, act, out_channels=obs_shape[0])
        else:
            self.encoder = build_mlp(obs_shape[0], [hidden_size, hidden_size], embed_size, act)
            self.decoder = VectorDecoder(state_size, latent_size, hidden_size, obs_shape[0], act)

        self.rnn = nn.GRUCell(state_size, state_size)
        self.reward_model = RewardModel(state_size, latent_size, hidden_size, act)

    @property
    def is_image(self) -> bool:
        return len(self.obs_shape) == 3

    # -- one step -----------------------------------------------------------------------------
    def _zeros(self, batch: int, size: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch, size, device=like.device, dtype=like.dtype)

    def get_init_state(self, enc, h_t=None, s_t=None, a_t=None, mean=False):
        """Returns the initial posterior given the observation.

        ``(h, s)`` after one transition from ``(h_t, s_t, a_t)`` (zeros when omitted: the
        start of an episode) and the posterior on the embedding ``enc`` (B, embed_size);
        ``s`` is the posterior mean with ``mean=True``, else a sample.
        """
        batch = enc.shape[0]
        h_t = self._zeros(batch, self.state_size, enc) if h_t is None else h_t
        s_t = self._zeros(batch, self.latent_size, enc) if s_t is None else s_t
        a_t = self._zeros(batch, self.action_size, enc) if a_t is None else a_t
        h = self.deterministic_state_fwd(h_t, s_t, a_t)
        post_mean, post_std = self.state_posterior(h, enc)
        s = post_mean if mean else gaussian_sample(post_mean, post_std)
        return h, s

    def deterministic_state_fwd(self, h_t, s_t, a_t):
        """Deterministic transition update that accepts:

        * ``a_t`` shaped ``[B, action_size]``;
        * ``a_t`` shaped ``[action_size]`` (unbatched) or ``[1, action_size]``: expanded to
          ``[B, action_size]``;
        * ``a_t`` shaped ``[B]`` or a scalar (``action_size == 1``): reshaped to ``[B, 1]``.

        Ensures ``a_t`` is 2-D and matches the batch of ``h_t`` before concatenation.
        """
        batch = h_t.shape[0]
        a_t = torch.as_tensor(a_t, dtype=h_t.dtype, device=h_t.device)
        if a_t.dim() == 0:
            a_t = a_t.reshape(1, 1)
        elif a_t.dim() == 1:
            if a_t.shape[0] == self.action_size:
                a_t = a_t.unsqueeze(0)
            elif self.action_size == 1 and a_t.shape[0] == batch:
                a_t = a_t.unsqueeze(-1)
            else:
                raise ValueError(
                    f"action of shape {tuple(a_t.shape)} fits neither action_size={self.action_size} "
                    f"nor batch={batch}"
                )
        if a_t.dim() != 2 or a_t.shape[-1] != self.action_size:
            raise ValueError(f"action must be [B, {self.action_size}], got {tuple(a_t.shape)}")
        if a_t.shape[0] != batch:
            if a_t.shape[0] != 1:
                raise ValueError(f"action batch {a_t.shape[0]} does not match state batch {batch}")
            a_t = a_t.expand(batch, -1)
        return self.rnn(self.cell_input(s_t, a_t), h_t)

    def state_prior(self, h_t, sample=False):
        """Returns the prior distribution over the latent state given the deterministic state:
        ``(mean, std)``, or a sample of it with ``sample=True``."""
        mean, std = self.prior_stats(h_t)
        return gaussian_sample(mean, std) if sample else (mean, std)

    def state_posterior(self, h_t, e_t, sample=False):
        """Returns the state posterior given the deterministic state and the observation
        embedding: ``(mean, std)``, or a sample of it with ``sample=True``."""
        mean, std = self.posterior_stats(h_t, e_t)
        return gaussian_sample(mean, std) if sample else (mean, std)

    def pred_reward(self, h_t, s_t):
        """Predicted reward, shaped like the leading axes of ``h_t``."""
        return self.reward_model(h_t, s_t)

    def decode(self, h_t, s_t):
        """Mean observation decoded from ``(h_t, s_t)``."""
        return self.decoder(s_t, h_t)

    # -- sequences ----------------------------------------------------------------------------
    def rollout_prior(self, act, h_t, s_t):
        """Imagine ``act`` (H, B, action_size) from ``(h_t, s_t)`` with prior samples.

        Returns ``(states, latents)`` stacked ``(H, B, state_size)`` and ``(H, B, latent_size)``.
        """
        states, latents = [], []
        for a_t in act:
            h_t = self.deterministic_state_fwd(h_t, s_t, a_t)
            s_t = self.state_prior(h_t, sample=True)
            states.append(h_t)
            latents.append(s_t)
        return torch.stack(states), torch.stack(latents)

    def observe(self, embeds, actions, is_first=None, h_t=None, s_t=None) -> RSSMSequence:
        """Filter a sequence: ``embeds`` (T, B, E), ``actions`` (T, B, A) where ``actions[t]``
        led to observation ``t``; ``is_first`` (T, B) resets ``h``, ``s`` and the action to
        zero before step ``t``. ``(h_t, s_t)`` is the state before the first step (zeros)."""
        steps, batch = embeds.shape[:2]
        h = self._zeros(batch, self.state_size, embeds) if h_t is None else h_t
        s = self._zeros(batch, self.latent_size, embeds) if s_t is None else s_t
        outs: dict[str, list[torch.Tensor]] = {k: [] for k in RSSMSequence.__dataclass_fields__}
        for t in range(steps):
            a = actions[t]
            if is_first is not None:
                keep = (1.0 - is_first[t].to(embeds.dtype)).unsqueeze(-1)
                h, s, a = h * keep, s * keep, a * keep
            h = self.deterministic_state_fwd(h, s, a)
            prior_mean, prior_std = self.state_prior(h)
            post_mean, post_std = self.state_posterior(h, embeds[t])
            s = post_mean + post_std * torch.randn_like(post_std)
            for key, value in (("states", h), ("latents", s), ("prior_mean", prior_mean),
                               ("prior_std", prior_std), ("posterior_mean", post_mean),
                               ("posterior_std", post_std)):
                outs[key].append(value)
        return RSSMSequence(**{k: torch.stack(v) for k, v in outs.items()})

    def forward(self, x, u):
        """Forward through the RSSM for a batch of sequences.

        Inputs: ``x`` [B, T+1, *obs_shape] (observations including the initial frame, already
        preprocessed), ``u`` [B, T, action_size] (``u[:, t]`` leads from ``x[:, t]`` to
        ``x[:, t+1]``).

        Returns ``(states, priors, posteriors)``: ``states`` a list of T tensors [B, state_size];
        ``priors`` and ``posteriors`` lists of T ``(mean, std)`` tuples, each [B, latent_size].
        """
        if x.shape[1] != u.shape[1] + 1:
            raise ValueError(
                f"forward(x, u) needs T+1 observations for T actions, got x {tuple(x.shape)} "
                f"and u {tuple(u.shape)}"
            )
        embeds = self.encoder(x).transpose(0, 1)
        actions = torch.cat([torch.zeros_like(u[:, :1]), u], dim=1).transpose(0, 1)
        is_first = torch.zeros(actions.shape[:2], device=x.device)
        is_first[0] = 1.0
        seq = self.observe(embeds, actions, is_first)
        states = list(seq.states[1:].unbind(0))
        priors = list(zip(seq.prior_mean[1:].unbind(0), seq.prior_std[1:].unbind(0)))
        posteriors = list(zip(seq.posterior_mean[1:].unbind(0), seq.posterior_std[1:].unbind(0)))
        return states, priors, posteriors
