"""Dreamer's imagination actor-critic: rollouts in the world model, lambda returns,
return normalisation, actor and critic losses, slow critic."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer import acceleration, split_rollout
from distwm.models.dreamer.world_model import WorldModel
from distwm.vision.dreamer_decoder import ActionDecoder, DenseDecoder
from distwm.blocks.dreamer_blocks import OneHotFeatures, init_weights_, reuse_embedding_tables
from distwm.blocks.returns import compute_return
from distwm.utils.dreamer_utils import FreezeParameters

__all__ = ["ActorCritic", "Imagination", "ReturnNormalizer"]


@dataclass
class Imagination:
    """An imagined trajectory, time-major: ``H + 1`` states from the start state on."""

    feat: Any           # (H+1, N, F) latent features (detached), or OneHotFeatures
    action: Tensor      # (H+1, N, A) action chosen in each state
    actor_raw: Tensor   # (H+1, N, *) actor outputs (with gradient to the actor)
    critic_raw: Tensor  # (H, N, *) critic outputs of states 0..H-1 (gradient to the critic)
    reward: Tensor      # (H, N) reward predicted on arriving in states 1..H
    cont: Tensor        # (H+1, N) continue flag (the data's at t=0, predicted after)
    value: Tensor       # (H+1, N) value estimates used for the returns
    returns: Tensor     # (H, N) lambda returns of states 0..H-1 (differentiable w.r.t. the
                        #   actor when actions are trained by dynamics backprop)
    weight: Tensor      # (H+1, N) cumulative discount of reaching each state


class ReturnNormalizer(nn.Module):
    """EMA of the 5th and 95th return percentiles; scale = max(limit, high - low) (DreamerV3).

    ``init="first"`` starts the EMA at the first batch's percentiles; ``"zero"`` starts it at 0
    without debiasing, as the dreamerv3 code does.
    """

    def __init__(self, decay: float = 0.99, limit: float = 1.0,
                 percentiles: tuple[float, float] = (5.0, 95.0), init: str = "first"):
        super().__init__()
        if init not in ("first", "zero"):
            raise ValueError(f"return normaliser init must be 'first' or 'zero', got {init!r}")
        self.decay, self.limit = decay, limit
        self.register_buffer("quantiles", torch.tensor([p / 100.0 for p in percentiles]))
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("initialized", torch.tensor(init == "zero"))

    @torch.no_grad()
    def update(self, returns: Tensor) -> Tensor:
        """Fold ``returns`` into the EMA; return the scale to divide advantages by."""
        low, high = torch.quantile(returns.detach().flatten().float(), self.quantiles)
        if not bool(self.initialized):
            self.low.copy_(low)
            self.high.copy_(high)
            self.initialized.fill_(True)
        else:
            self.low.mul_(self.decay).add_((1 - self.decay) * low)
            self.high.mul_(self.decay).add_((1 - self.decay) * high)
        return self.scale()

    def scale(self) -> Tensor:
        return torch.clamp(self.high - self.low, min=self.limit)


class ActorCritic(nn.Module):
    """Actor, critic, slow critic and return normaliser, trained in imagination."""

    def __init__(self, cfg: DreamerConfig, action_size: int, discrete: bool, stoch_dim: int):
        super().__init__()
        self.cfg = cfg
        self.discrete = discrete
        deter = cfg.deter_size
        self.actor = ActionDecoder(action_size, stoch_dim, deter, cfg.num_layers, cfg.num_units,
                                   cfg.activation, dist="onehot" if discrete else cfg.actor_dist,
                                   layer_norm=cfg.layer_norm, unimix=cfg.actor_unimix, norm=cfg.norm)
        self.critic = DenseDecoder(stoch_dim, deter, (), cfg.num_layers, cfg.num_units,
                                   cfg.activation, cfg.critic_head, cfg.num_buckets,
                                   cfg.symlog_range, layer_norm=cfg.layer_norm,
                                   zero_init_output=cfg.critic_head == "twohot", norm=cfg.norm,
                                   twohot_bins=cfg.twohot_bins)
        init_weights_(self.actor, cfg.weight_init)
        init_weights_(self.critic, cfg.weight_init)
        if cfg.actor_outscale != 1.0:  # the current code's small initial policy outputs
            with torch.no_grad():
                self.actor.mlp[-1].weight.mul_(cfg.actor_outscale)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNormalizer(cfg.return_norm_decay, cfg.return_norm_limit,
                                            tuple(cfg.return_norm_percentiles), cfg.return_norm_init)
        grad = cfg.actor_grad
        self.reinforce = grad == "reinforce" or (grad == "auto" and discrete)

    # -- imagination ---------------------------------------------------------------------------
    def imagine(self, world_model: WorldModel, start: Mapping[str, Tensor], start_cont: Tensor) -> Imagination:
        """:meth:`_imagine` with the speed switches of the config applied (compiled steps,
        autocast; see :mod:`distwm.models.dreamer.acceleration`)."""
        acceleration.prepare_world_model(world_model)
        acceleration.prepare_behavior(self)
        if self.cfg.autocast == "off":
            return self._imagine(world_model, start, start_cont)
        with acceleration.autocast_context(self.cfg, self):
            imag = self._imagine(world_model, start, start_cont)
        imag.actor_raw, imag.critic_raw = imag.actor_raw.float(), imag.critic_raw.float()
        return imag

    def _imagine(self, world_model: WorldModel, start: Mapping[str, Tensor], start_cont: Tensor) -> Imagination:
        """Roll the actor out for ``imagine_horizon`` steps from the (detached) start states.

        With REINFORCE the rollout itself needs no gradient: only the actor's and the critic's
        outputs keep one (to their own parameters), so each network runs once over the
        trajectory. With dynamics backprop the rollout keeps the gradient path from the
        returns through the frozen world model and critic into the actions.
        """
        cfg = self.cfg
        rssm = world_model.rssm
        actor_raw: list[Tensor] = []
        fast = acceleration.compiled(self)

        # REINFORCE: the rollout's actor records no gradient; one pass over the whole
        # trajectory afterwards gives the outputs the loss differentiates (one backward over
        # H + 1 steps at once instead of one per step), reusing the rollout's first-layer
        # outputs, kept per part of a split rollout in the part's order of steps
        firsts: dict[int, list[Tensor]] | None = (
            {} if self.reinforce and not fast and cfg.autocast == "off"
            and self.actor.mlp.replays_first_layer() else None)

        def policy(feat: Tensor) -> Tensor:
            with torch.set_grad_enabled(not self.reinforce):
                if firsts is not None and isinstance(feat, OneHotFeatures):
                    first, raw = self.actor.mlp.first_and_output(feat.detach())
                    firsts.setdefault(split_rollout.current_part(), []).append(first)
                elif not fast:
                    raw = self.actor.mlp(feat.detach())
                elif isinstance(feat, OneHotFeatures):
                    raw = fast["actor_onehot"](feat.index, feat.rest.detach(), feat.width)
                else:
                    raw = fast["actor"](feat.detach())
            if not self.reinforce:
                actor_raw.append(raw)
            dist = self.actor.dist_from_raw(raw)
            if self.reinforce:
                return dist.sample().detach() if self.discrete else dist.sample()
            return dist.sample() if self.discrete else dist.rsample()

        # with REINFORCE the rollout records no gradient at all (the actor re-enables it for
        # itself), so nothing needs freezing; the parameters stay leaves that require gradients,
        # whose bf16 copies autocast then makes once per update, not once per step
        frozen = contextlib.nullcontext() if self.reinforce else FreezeParameters([world_model, self.critic])
        with frozen, torch.set_grad_enabled(not self.reinforce), reuse_embedding_tables():
            if self.reinforce and rssm.discrete:
                feat, actions = split_rollout.imagine_onehot(
                    rssm, policy, start, cfg.imagine_horizon, split_rollout.parts(cfg, self),
                    lambda: acceleration.autocast_context(cfg, self))
            else:
                states, actions = rssm.imagine_rollout(policy, start, cfg.imagine_horizon,
                                                       keys=("stoch", "deter"))
                feat = rssm.get_feat(states)
            head_feat = _autocast_features(feat)
            reward = _head(world_model.reward, head_feat[1:]).mode()
            cont, gamma = self._continuation(world_model, head_feat, start_cont, reward)
            disc = gamma * cont
            weight = (torch.cumprod(disc, 0) / gamma).detach()
            if not self.reinforce:
                value = _head(self.critic, feat).mode()  # differentiable w.r.t. the features only
        critic_raw = self.critic.mlp(head_feat.detach()).float()
        if not self.reinforce:
            actor_out = torch.stack(actor_raw, 0)
        elif firsts:
            first = torch.cat([torch.stack(firsts[part], 0) for part in sorted(firsts)], 1)
            actor_out = self.actor.mlp.from_first(first, feat.detach())
        else:
            actor_out = self.actor.mlp(head_feat.detach())
        if cfg.slow_critic_target:
            with torch.no_grad():
                value = _head(self.slow_critic, head_feat.detach()).mode()
        elif self.reinforce:
            value = self.critic.dist_from_raw(critic_raw.detach()).mode()
        returns = compute_return(reward, value[:-1], disc[1:], cfg.td_lambda, value[-1])
        return Imagination(feat.detach(), actions, actor_out, critic_raw[:-1],
                           reward, cont, value, returns, weight)

    def _continuation(self, world_model: WorldModel, feat, start_cont: Tensor, reward: Tensor):
        """``(cont (H+1, N), gamma)``: imagination discounts by ``gamma * cont``. With
        ``cont_discount`` the continue head's output already holds the discount (``gamma = 1``)
        and is read at the start state too, as the current dreamerv3 code does."""
        cfg = self.cfg
        if cfg.cont_discount:
            if world_model.cont is None:
                return torch.full((reward.shape[0] + 1, *reward.shape[1:]), cfg.discount,
                                  device=reward.device, dtype=reward.dtype), 1.0
            cont_dist = _head(world_model.cont, feat)
            if cfg.imagine_cont == "mode":  # the 0/1 threshold, then the discount it stands for
                return cont_dist.mode() * cfg.discount, 1.0
            return cont_dist.mean, 1.0
        if world_model.cont is not None:
            cont_dist = _head(world_model.cont, feat[1:])
            cont = cont_dist.mode() if cfg.imagine_cont == "mode" else cont_dist.mean
        else:
            cont = torch.ones_like(reward)
        return torch.cat([start_cont.unsqueeze(0), cont], 0), cfg.discount

    # -- losses --------------------------------------------------------------------------------
    def actor_loss(self, imag: Imagination):
        """``(loss, metrics)``: REINFORCE or dynamics backprop on normalised advantages."""
        cfg = self.cfg
        returns, base = imag.returns, imag.value[:-1].detach()
        scale = self.return_norm.update(returns) if cfg.return_norm else torch.ones((), device=returns.device)
        dist = self.actor.dist_from_raw(imag.actor_raw[:-1])
        if self.reinforce:
            advantage = ((returns - base) / scale).detach()
            objective = dist.log_prob(imag.action[:-1].detach()) * advantage
        elif cfg.actor_baseline:  # V3 (2023 code): the gradient flows through V(s) too
            objective = (returns - imag.value[:-1]) / scale
        else:
            objective = returns / scale
        metrics = {"return_scale": scale.detach(), "imag_return": returns.detach().mean()}
        if cfg.actor_entropy > 0:
            entropy = dist.entropy()
            objective = objective + cfg.actor_entropy * entropy
            metrics["actor_entropy"] = entropy.detach().mean()
        loss = -(imag.weight[:-1] * objective).mean()
        metrics["actor_loss"] = loss.detach()
        return loss, metrics

    def value_loss(self, imag: Imagination):
        """``(loss, metrics)``: critic regression on lambda returns (+ slow-critic regulariser)."""
        dist = self.critic.dist_from_raw(imag.critic_raw)
        loss = -dist.log_prob(imag.returns.detach())
        if self.cfg.slow_critic_reg > 0:
            with torch.no_grad(), acceleration.autocast_context(self.cfg, self):
                slow = _head(self.slow_critic, _autocast_features(imag.feat[:-1])).mode()
            loss = loss - self.cfg.slow_critic_reg * dist.log_prob(slow)
        loss = (imag.weight[:-1] * loss).mean()
        return loss, {"value_loss": loss.detach(), "imag_value": imag.value.detach().mean()}

    @torch.no_grad()
    def update_slow_critic(self, updates: int) -> None:
        """Move the slow critic toward the critic every ``slow_critic_interval`` updates."""
        interval = self.cfg.slow_critic_interval
        if interval <= 0 or updates % interval:
            return
        mix = self.cfg.slow_critic_fraction
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
            slow.mul_(1.0 - mix).add_(mix * fast)


def _head(decoder, feat):
    """``decoder(feat)`` with the raw output in float32 (under bf16 autocast the head's matmuls
    run in bf16, its distribution in float32; without autocast this is ``decoder(feat)``)."""
    return decoder.dist_from_raw(decoder.mlp(feat).float())


def _autocast_features(feat):
    """Under autocast, one-hot features with their dense part cast once to the autocast dtype
    (every head would cast it again); otherwise ``feat`` itself."""
    if not isinstance(feat, OneHotFeatures):
        return feat
    device = feat.rest.device.type
    if not torch.is_autocast_enabled(device):
        return feat
    return OneHotFeatures(feat.index, feat.rest.to(torch.get_autocast_dtype(device)), feat.width)
