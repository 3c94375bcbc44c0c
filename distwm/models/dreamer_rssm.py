"""The recurrent state-space model of Dreamer V1, V2 and V3.

The state is ``{"deter": h, "stoch": z, ...}`` with either Gaussian latents (V1: ``mean``,
``std``; ``stoch_classes=0``) or ``stoch_size`` categoricals of ``stoch_classes`` classes
(V2/V3: ``logits``, flattened one-hot ``stoch`` with straight-through gradients and
``unimix`` uniform mixing). The deterministic path is a GRU, with LayerNorm in V2/V3, or
(``blocks > 0``, the current dreamerv3 code) the block-diagonal GRU core of
:class:`~distwm.blocks.block_gru.BlockGRUCore` with its own input layers for ``h``, ``z`` and
``a`` (then there is no ``img_in``).

Speed: :meth:`RSSM.observe` runs the recurrence over a whole ``(B, T)`` sequence but keeps
only what must be sequential inside the Python loop (GRU step, posterior); the embedding
part of the posterior layer and every prior are computed for all steps at once.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from distwm.blocks.gaussian_rssm import gaussian_sample
from distwm.blocks.layers import gaussian_params
from distwm.blocks.block_gru import BlockGRUCore
from distwm.blocks import deferred_grads
from distwm.blocks.deferred_grads import DeferredWeightGrads
from distwm.blocks.dreamer_blocks import MLP, OneHotFeatures, norm_layer, run_layers
from distwm.blocks.dreamer_distributions import OneHotDist, mixed_probs, sample_index

__all__ = ["RSSM", "NormGRUCell"]

State = dict[str, Tensor]


class NormGRUCell(nn.Module):
    """DreamerV2/V3's GRU: one linear over ``[x, h]``, LayerNorm (or ``norm="rms"``: RMSNorm) of
    the gates, update gate biased to -1."""

    def __init__(self, input_size: int, hidden_size: int, norm: str = "layer"):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size + hidden_size, 3 * hidden_size, bias=False)
        self.norm = norm_layer(norm, 3 * hidden_size)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return self.gates(self.linear(torch.cat([x, h], -1)), h)

    def gates(self, linear_out: Tensor, h: Tensor) -> Tensor:
        """The new state from ``linear(cat([x, h]))`` (what :meth:`forward` computes after
        its linear)."""
        parts = self.norm(linear_out)
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * h


class RSSM(nn.Module):
    """Recurrent state-space model (see the module docstring).

    Args:
        action_size: width of the action vectors.
        stoch_size: Gaussian latent dims, or number of categoricals.
        deter_size: GRU width.
        hidden_size: width of the hidden layers around the GRU.
        obs_embed_size: width of the encoder output.
        activation: activation name.
        stoch_classes: classes per categorical; ``0`` selects Gaussian latents.
        layer_norm: LayerNorm hidden layers and GRU (V2/V3).
        unimix: uniform mixture of the categoricals (V3: 0.01).
        learned_initial_state: learn the initial ``deter`` (V3) instead of zeros.
        min_std: floor of the Gaussian std.
        action_clip: actions entering the dynamics are scaled by
            ``1 / max(1, |a| / action_clip)``, the scale's gradient stopped (V3; 0: off).
        norm: ``"layer"`` or ``"rms"`` (with ``layer_norm``).
        blocks: ``> 0``: the block-diagonal GRU core with that many groups (current dreamerv3
            code: 8); ``0``: the dense GRU.
        prior_layers: hidden layers of the prior (transition) head (V3 paper code: 1, current
            code: 2).
    """

    def __init__(self, action_size: int, stoch_size: int, deter_size: int, hidden_size: int,
                 obs_embed_size: int, activation: str = "elu", *, stoch_classes: int = 0,
                 layer_norm: bool = False, unimix: float = 0.0,
                 learned_initial_state: bool = False, min_std: float = 0.1,
                 action_clip: float = 0.0, norm: str = "layer", blocks: int = 0,
                 prior_layers: int = 1):
        super().__init__()
        if stoch_classes == 1 or stoch_classes < 0:
            raise ValueError(f"stoch_classes must be 0 (Gaussian) or >= 2, got {stoch_classes}")
        self.action_size = action_size
        self.stoch_size = stoch_size
        self.stoch_classes = stoch_classes
        self.deter_size = deter_size
        self.discrete = stoch_classes > 0
        self.stoch_dim = stoch_size * stoch_classes if self.discrete else stoch_size
        self.feat_size = self.stoch_dim + deter_size
        self.unimix = unimix
        self.min_std = min_std
        self.action_clip = float(action_clip)
        self.blocks = int(blocks)
        stats = self.stoch_dim if self.discrete else 2 * stoch_size
        mlp = dict(activation=activation, layer_norm=layer_norm, norm=norm)

        if self.blocks:
            self.img_in = None
            self.cell = BlockGRUCore(deter_size, self.stoch_dim, action_size, hidden_size,
                                     self.blocks, activation, norm if layer_norm else "rms")
        else:
            self.img_in = MLP(self.stoch_dim + action_size, hidden_size, 1, **mlp)
            self.cell = (NormGRUCell(hidden_size, deter_size, norm) if layer_norm
                         else nn.GRUCell(hidden_size, deter_size))
        self.img_out = MLP(deter_size, hidden_size, prior_layers, **mlp, out_dim=stats)
        self.obs_hidden = MLP(deter_size + obs_embed_size, hidden_size, 1, **mlp)
        self.obs_stats = nn.Linear(hidden_size, stats)
        self.initial_deter = nn.Parameter(torch.zeros(deter_size)) if learned_initial_state else None

    # -- distributions -------------------------------------------------------------------------
    def get_dist(self, mean: Tensor, std: Tensor) -> Independent:
        """Independent Normal over the last axis (Gaussian latents)."""
        return Independent(Normal(mean, std), 1)

    def state_dist(self, state: Mapping[str, Tensor]):
        """The latent distribution of ``state`` (Normal or :class:`OneHotDist`)."""
        if self.discrete:
            return OneHotDist(state["logits"], 0.0, event_dims=1)
        return self.get_dist(state["mean"], state["std"])

    def _stats_to_state(self, stats: Tensor, deter: Tensor, sample: bool = True) -> State:
        stats, deter = stats.float(), deter.float()  # float32 states under bf16 autocast too
        if self.discrete:
            logits = stats.reshape(*stats.shape[:-1], self.stoch_size, self.stoch_classes)
            dist = OneHotDist(logits, self.unimix, event_dims=1)
            stoch = (dist.sample() if sample else dist.mode()).flatten(-2)
            return {"logits": dist.logits, "stoch": stoch, "deter": deter}
        mean, std = gaussian_params(stats, self.min_std)
        stoch = gaussian_sample(mean, std) if sample else mean
        return {"mean": mean, "std": std, "stoch": stoch, "deter": deter}

    # -- state helpers -------------------------------------------------------------------------
    def init_state(self, batch_size: int, device=None) -> State:
        """The initial state for ``batch_size`` sequences (zeros, or V3's learned one)."""
        device = device if device is not None else next(self.parameters()).device
        if self.initial_deter is None:
            deter = torch.zeros(batch_size, self.deter_size, device=device)
            if self.discrete:
                logits = torch.full((batch_size, self.stoch_size, self.stoch_classes),
                                    -float(torch.log(torch.tensor(float(self.stoch_classes)))),
                                    device=device)
                return {"logits": logits, "stoch": torch.zeros(batch_size, self.stoch_dim, device=device),
                        "deter": deter}
            zeros = torch.zeros(batch_size, self.stoch_size, device=device)
            return {"mean": zeros, "std": zeros.clone(), "stoch": zeros.clone(), "deter": deter}
        deter = torch.tanh(self.initial_deter).unsqueeze(0).expand(batch_size, -1).to(device)
        return self._stats_to_state(self.img_out(deter), deter, sample=False)

    def get_feat(self, state: Mapping[str, Tensor]) -> Tensor:
        """``[stoch, deter]``: the input of every head."""
        return torch.cat([state["stoch"], state["deter"]], -1)

    def detach_state(self, state: Mapping[str, Tensor]) -> State:
        return {k: v.detach() for k, v in state.items()}

    def seq_to_batch(self, state_dict: Mapping[str, Tensor]) -> State:
        """Merge the first two (time and batch) axes of every tensor."""
        return {k: v.reshape(v.shape[0] * v.shape[1], *v.shape[2:]) for k, v in state_dict.items()}

    @staticmethod
    def mask_state(state: Mapping[str, Tensor], keep: Tensor, reset: Mapping[str, Tensor]) -> State:
        """``state`` where ``keep`` (``(B,)``, 1.0 or 0.0) is set, ``reset`` elsewhere."""
        out = {}
        for key, value in state.items():
            k = keep.reshape(keep.shape[0], *([1] * (value.dim() - 1)))
            out[key] = value * k + reset[key] * (1.0 - k)
        return out

    # -- single steps --------------------------------------------------------------------------
    def _clip_action(self, action: Tensor) -> Tensor:
        if self.action_clip > 0:  # |a| <= action_clip everywhere the dynamics see an action
            clip = self.action_clip
            action = action * (clip / torch.clamp(action.abs(), min=clip)).detach()
        return action

    def _deter_step(self, prev_state: Mapping[str, Tensor], prev_action: Tensor) -> Tensor:
        """The next ``deter`` from the state and the action (scaled by :meth:`_clip_action`
        already: :meth:`imagine_step` per step, :meth:`observe` once per sequence)."""
        if self.blocks:
            return self.cell(prev_state["deter"], prev_state["stoch"], prev_action)
        x = self.img_in(torch.cat([prev_state["stoch"], prev_action], -1))
        return self.cell(x, prev_state["deter"])

    def imagine_step(self, prev_state: Mapping[str, Tensor], prev_action: Tensor,
                     nonterm=1.0) -> State:
        """Prior step: advance the GRU and sample the latent from the transition model."""
        if isinstance(nonterm, Tensor) or nonterm != 1.0:
            prev_state = {k: v * _broadcast(nonterm, v) for k, v in prev_state.items()}
        deter = self._deter_step(prev_state, self._clip_action(prev_action))
        return self._stats_to_state(self.img_out(deter), deter)

    get_prior = imagine_step

    def _posterior(self, deter: Tensor, obs_embed: Tensor) -> State:
        hidden = self.obs_hidden(torch.cat([deter, obs_embed], -1))
        return self._stats_to_state(self.obs_stats(hidden), deter)

    def observe_step(self, prev_state: Mapping[str, Tensor], prev_action: Tensor,
                     obs_embed: Tensor, nonterm=1.0) -> tuple[State, State]:
        """One step with an observation: ``(posterior, prior)`` sharing the new ``deter``."""
        prior = self.imagine_step(prev_state, prev_action, nonterm)
        return self._posterior(prior["deter"], obs_embed), prior

    def get_posterior(self, prev_state: Mapping[str, Tensor], prev_action: Tensor,
                      obs_embed: Tensor, nonterm=1.0) -> State:
        return self.observe_step(prev_state, prev_action, obs_embed, nonterm)[0]

    # -- sequences -----------------------------------------------------------------------------
    def observe(self, embed: Tensor, actions: Tensor, is_first: Tensor,
                state: Mapping[str, Tensor] | None = None) -> tuple[State, State]:
        """Posterior and prior states of batch-major sequences ``(B, T, …)``.

        ``actions[:, t]`` is the action that led to observation ``t``; where ``is_first``
        is set the state resets to :meth:`init_state` and the action to zero. Returns
        ``(posterior, prior)`` dicts of ``(B, T, …)`` tensors.
        """
        batch, steps = embed.shape[:2]
        init = self.init_state(batch, embed.device)
        state = init if state is None else dict(state)
        keep = 1.0 - is_first.to(embed.dtype)
        actions = self._clip_action(actions * keep.unsqueeze(-1))  # once, not at every step
        # The embedding half of the posterior's first layer, for every step at once.
        first = self.obs_hidden[0]
        w_deter, w_embed = first.weight[:, : self.deter_size], first.weight[:, self.deter_size:]
        embed_part = F.linear(embed, w_embed, first.bias)
        device = embed.device.type
        if torch.is_autocast_enabled(device):  # cast the weight slice once, not at every step
            w_deter = w_deter.to(torch.get_autocast_dtype(device))
        body = self._compiled.get("observe", self._observe_body)
        if self._defers_weight_grads():
            body = functools.partial(body, defer=DeferredWeightGrads())
        # the steps where some sequence starts afresh (one host sync; the others skip the reset)
        resets = is_first.any(0).tolist()
        posts = []
        for t in range(steps):
            reset = keep[:, t] if resets[t] else None
            state = body(state, reset, init, actions[:, t], embed_part[:, t], w_deter)
            posts.append(state)
        posterior = {k: torch.stack([p[k] for p in posts], 1) for k in posts[0]}
        prior = self._stats_to_state(self.img_out(posterior["deter"]), posterior["deter"])
        return posterior, prior

    def _observe_body(self, state: Mapping[str, Tensor], keep: Tensor | None,
                      init: Mapping[str, Tensor], action: Tensor, embed_part: Tensor,
                      w_deter: Tensor, defer: DeferredWeightGrads | None = None) -> State:
        """One step of :meth:`observe` (what ``compile`` compiles): reset to ``init`` where
        ``keep`` is 0 (``None``: nowhere), advance the GRU, the posterior from the precomputed
        embedding part of its first layer (``action`` clipped already). With ``defer`` (one per
        sequence) the weight gradients of the step's four linears wait for the end of the backward
        (:mod:`distwm.blocks.deferred_grads`; the same values)."""
        if keep is not None:
            state = self.mask_state(state, keep, init)
        if defer is None:
            deter = self._deter_step(state, action)
            hidden = F.linear(deter, w_deter) + embed_part
            hidden = run_layers(list(self.obs_hidden)[1:], hidden)
            return self._stats_to_state(self.obs_stats(hidden), deter)
        first = self.img_in[0]
        x = defer.linear(torch.cat([state["stoch"], action], -1),
                         first.weight, first.bias)
        x = run_layers(list(self.img_in)[1:], x)
        gates = defer.linear(torch.cat([x, state["deter"]], -1), self.cell.linear.weight)
        deter = self.cell.gates(gates, state["deter"])
        obs_first = self.obs_hidden[0]
        hidden = defer.linear(deter, obs_first.weight, columns=slice(0, self.deter_size)) + embed_part
        hidden = run_layers(list(self.obs_hidden)[1:], hidden)
        stats = defer.linear(hidden, self.obs_stats.weight, self.obs_stats.bias)
        return self._stats_to_state(stats, deter)

    def _defers_weight_grads(self) -> bool:
        """Whether :meth:`observe` defers its weight gradients: on for this update
        (``deferred_grads.deferring``), eager float32, the dense GRU with LayerNorm."""
        return (deferred_grads.active() and "observe" not in self._compiled
                and not torch.is_autocast_enabled(next(self.parameters()).device.type)
                and not self.blocks and isinstance(self.cell, NormGRUCell))

    def observe_rollout(self, obs_embed: Tensor, actions: Tensor, nonterms: Tensor,
                        init_state: Mapping[str, Tensor], seq_len: int) -> tuple[State, State]:
        """Time-major rollout of the seed: ``obs_embed (T+1, B)``, ``actions``/``nonterms (T, B)``.

        Step ``t`` consumes ``actions[t]`` and ``obs_embed[t + 1]``; the previous state is
        multiplied by ``nonterms[t]`` (zero after a terminal). Returns ``(prior, posterior)``
        stacked along the time axis, as the seed does.
        """
        priors, posteriors = [], []
        state = dict(init_state)
        for t in range(seq_len):
            posterior, prior = self.observe_step(state, actions[t], obs_embed[t + 1], nonterms[t])
            priors.append(prior)
            posteriors.append(posterior)
            state = posterior
        stack = lambda seq: {k: torch.stack([s[k] for s in seq], 0) for k in seq[0]}  # noqa: E731
        return stack(priors), stack(posteriors)

    def imagine_rollout(self, policy: Callable[[Tensor], Tensor], init_state: Mapping[str, Tensor],
                        horizon: int, keys: tuple[str, ...] | None = None) -> tuple[State, Tensor]:
        """Imagine ``horizon`` steps with ``policy(features) -> action``.

        Returns ``(states, actions)``: states stacked time-major with ``horizon + 1`` entries
        (the start state first; only ``keys`` when given, e.g. ``("stoch", "deter")``) and
        the ``horizon + 1`` actions the policy chose in them.
        """
        state = dict(init_state)
        keys = tuple(state) if keys is None else keys
        states, actions = [{k: state[k] for k in keys}], []
        step = self._compiled.get("imagine_step", self.imagine_step)
        for _ in range(horizon):
            action = policy(self.get_feat(state))
            actions.append(action)
            state = step(state, action)
            states.append({k: state[k] for k in keys})
        actions.append(policy(self.get_feat(state)))
        return {k: torch.stack([s[k] for s in states], 0) for k in keys}, torch.stack(actions, 0)

    def imagine_onehot(self, policy: Callable, init_state: Mapping[str, Tensor],
                       horizon: int) -> tuple[OneHotFeatures, Tensor]:
        """:meth:`imagine_rollout` for categorical latents without gradients, fast.

        The latents stay class indices (:class:`OneHotFeatures`), so the first layers of the
        RSSM, the policy and the heads skip the zero entries of the one-hot vectors. Call
        under ``torch.no_grad()``; ``policy`` receives :class:`OneHotFeatures`. Returns the
        ``horizon + 1`` features (time-major) and actions, like :meth:`imagine_rollout`.
        """
        if not self.discrete:
            raise ValueError("imagine_onehot needs categorical latents (stoch_classes > 0)")
        stoch, deter = init_state["stoch"], init_state["deter"]
        offsets = torch.arange(self.stoch_size, device=stoch.device) * self.stoch_classes
        index = stoch.reshape(*stoch.shape[:-1], self.stoch_size, self.stoch_classes).argmax(-1) + offsets
        width = self.stoch_dim
        indices, deters, actions = [index], [deter], []
        body = self._compiled.get("imagine_onehot", self._imagine_onehot_body)
        for _ in range(horizon):
            action = policy(OneHotFeatures(index, deter, width))
            actions.append(action)
            probs, deter = body(index, deter, action)
            # drawn outside the compiled body: from the thread's sampling_generator() if any
            index = sample_index(probs) + offsets
            indices.append(index)
            deters.append(deter)
        actions.append(policy(OneHotFeatures(index, deter, width)))
        feat = OneHotFeatures(torch.stack(indices, 0), torch.stack(deters, 0), width)
        return feat, torch.stack(actions, 0)

    def _imagine_onehot_body(self, index: Tensor, deter: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """One prior step of :meth:`imagine_onehot` (what ``compile`` compiles): the next
        latent's class probabilities ``(..., stoch_size, stoch_classes)`` and ``deter``, from
        the class indices, ``deter`` and the action taken."""
        width = self.stoch_dim
        seen = self._clip_action(action)
        if self.blocks:
            deter = self.cell(deter, OneHotFeatures(index, seen[..., :0], width), seen)
        else:
            deter = self.cell(self.img_in(OneHotFeatures(index, seen, width)), deter)
        logits = self.img_out(deter).float().reshape(*deter.shape[:-1], self.stoch_size,
                                                     self.stoch_classes)
        return mixed_probs(logits, self.unimix), deter.float()

    @property
    def _compiled(self) -> dict:
        """Compiled versions of the step functions (``distwm.models.dreamer.acceleration``
        fills it at the first update when ``compile`` is on; empty: the plain methods)."""
        return self.__dict__.get("_distwm_compiled") or {}

    def forward(self, x: Tensor, u: Tensor):
        """Posterior rollout of embedded observations ``x (B, T+1, E)`` and actions ``u (B, T, A)``.

        Returns ``(states, priors, posteriors)``: the list of posterior states and the
        per-step distribution parameters, as in the seed.
        """
        batch, steps = u.shape[:2]
        state = self.init_state(batch, x.device)
        state = self._posterior(state["deter"], x[:, 0])
        states, priors, posteriors = [state], [], []
        for t in range(steps):
            posterior, prior = self.observe_step(state, u[:, t], x[:, t + 1])
            key = "logits" if self.discrete else "mean"
            priors.append(prior[key] if self.discrete else (prior["mean"], prior["std"]))
            posteriors.append(posterior[key] if self.discrete else (posterior["mean"], posterior["std"]))
            states.append(posterior)
            state = posterior
        return states, priors, posteriors


def _broadcast(mask, like: Tensor):
    """``mask`` of shape ``(B,)`` or ``(B, 1)`` (or a number) reshaped to multiply ``like``."""
    if not isinstance(mask, Tensor):
        return mask
    mask = mask.reshape(mask.shape[0]) if mask.dim() > 1 else mask
    return mask.reshape(mask.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)
