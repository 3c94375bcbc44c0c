"""Dreamer's world model: encoder, RSSM, observation decoder, reward and continue heads."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import kl_divergence

from distwm.blocks.dreamer_blocks import init_weights_
from distwm.configs.dreamer_config import DreamerConfig
from distwm.vision.dreamer_decoder import DenseDecoder, MultiDecoder
from distwm.vision.dreamer_encoder import MultiEncoder
from distwm.models.dreamer_rssm import RSSM
from distwm.models.dreamer import acceleration

__all__ = ["WorldModel", "preprocess_obs"]


def preprocess_obs(obs):
    """uint8 images ``[0, 255]`` -> float ``[-0.5, 0.5]``; float inputs pass through.

    Accepts a tensor or a dict of tensors (only ``image`` is rescaled).
    """
    if isinstance(obs, Mapping):
        return {k: preprocess_obs(v) if k == "image" else v.float() for k, v in obs.items()}
    if obs.dtype == torch.uint8:
        return obs.float() / 255.0 - 0.5
    return obs.float()


class WorldModel(nn.Module):
    """Encoder + :class:`RSSM` + decoders, built from a resolved :class:`DreamerConfig`."""

    def __init__(self, cfg: DreamerConfig, obs_shapes: Mapping[str, Sequence[int]], action_size: int):
        super().__init__()
        self.cfg = cfg
        norm = cfg.layer_norm
        self.encoder = MultiEncoder(obs_shapes, cfg.num_units, cfg.num_layers, cfg.cnn_depth,
                                    cfg.activation, norm, cfg.symlog_obs, cfg.obs_embed_size,
                                    norm=cfg.norm)
        self.rssm = RSSM(action_size, cfg.stoch_size, cfg.deter_size, cfg.num_units,
                         self.encoder.embed_size, cfg.activation,
                         stoch_classes=cfg.stoch_classes if cfg.latent == "categorical" else 0,
                         layer_norm=norm, unimix=cfg.unimix,
                         learned_initial_state=cfg.learned_initial_state,
                         action_clip=cfg.action_clip, norm=cfg.norm, blocks=cfg.deter_blocks,
                         prior_layers=cfg.prior_layers)
        stoch, deter = self.rssm.stoch_dim, cfg.deter_size
        v3_style = cfg.reward_head == "twohot"
        self.decoder = MultiDecoder(obs_shapes, stoch, deter, cfg.num_units, cfg.num_layers,
                                    cfg.cnn_depth, cfg.activation, norm,
                                    image_dist="mse" if v3_style else "normal",
                                    state_dist="symlog_mse" if cfg.symlog_obs else "normal",
                                    norm=cfg.norm)
        heads = dict(layer_norm=norm, norm=cfg.norm)
        self.reward = DenseDecoder(stoch, deter, (), cfg.head_layers, cfg.num_units, cfg.activation,
                                   cfg.reward_head, cfg.num_buckets, cfg.symlog_range,
                                   zero_init_output=v3_style, twohot_bins=cfg.twohot_bins, **heads)
        self.cont = (DenseDecoder(stoch, deter, (), cfg.head_layers, cfg.num_units, cfg.activation,
                                  "binary", **heads) if cfg.use_disc_model else None)
        init_weights_(self, cfg.weight_init)

    def kl_loss(self, post: Mapping[str, Tensor], prior: Mapping[str, Tensor]):
        """``(loss, dyn, rep)``: KL balancing with free nats (the three versions' schemes)."""
        cfg = self.cfg
        rssm = self.rssm
        sg = rssm.detach_state
        if rssm.discrete and cfg.kl_dyn_scale > 0 and cfg.kl_rep_scale > 0:
            return self._shared_kl_loss(post, prior)
        if rssm.discrete:
            dyn = rssm.state_dist(sg(post)).kl(rssm.state_dist(prior))
            rep = rssm.state_dist(post).kl(rssm.state_dist(sg(prior)))
        else:
            dyn = kl_divergence(rssm.state_dist(sg(post)), rssm.state_dist(prior))
            rep = kl_divergence(rssm.state_dist(post), rssm.state_dist(sg(prior)))
        free = cfg.free_nats
        if cfg.free_nats_per_step:
            dyn_loss, rep_loss = dyn.clamp(min=free).mean(), rep.clamp(min=free).mean()
        else:
            dyn_loss, rep_loss = dyn.mean().clamp(min=free), rep.mean().clamp(min=free)
        loss = cfg.kl_dyn_scale * dyn_loss + cfg.kl_rep_scale * rep_loss
        return loss, dyn.detach().mean(), rep.detach().mean()

    def _shared_kl_loss(self, post: Mapping[str, Tensor], prior: Mapping[str, Tensor]):
        """:meth:`kl_loss` of categorical latents with one KL instead of two: ``dyn`` =
        KL(sg(post) || prior) and ``rep`` = KL(post || sg(prior)) have the same value and the
        same free-nats clamp, and differ only in where the gradient goes, so ``dyn_scale * dyn +
        rep_scale * rep`` is ``(dyn_scale + rep_scale) * KL(post || prior)`` with the
        gradient into the posterior scaled by ``rep_scale / (dyn_scale + rep_scale)`` and into
        the prior by ``dyn_scale / (dyn_scale + rep_scale)`` (the same loss and gradients)."""
        cfg = self.cfg
        dyn_scale, rep_scale = cfg.kl_dyn_scale, cfg.kl_rep_scale
        total = dyn_scale + rep_scale
        post_logits = _ScaleGrad.apply(post["logits"], rep_scale / total)
        prior_logits = _ScaleGrad.apply(prior["logits"], dyn_scale / total)
        state_dist = self.rssm.state_dist
        kl = state_dist({"logits": post_logits}).kl(state_dist({"logits": prior_logits}))
        free = cfg.free_nats
        clamped = kl.clamp(min=free).mean() if cfg.free_nats_per_step else kl.mean().clamp(min=free)
        value = kl.detach().mean()
        return total * clamped, value, value

    def loss(self, data: Mapping[str, Tensor]):
        """:meth:`_loss` with the speed switches of the config applied (compiled steps,
        autocast; see :mod:`distwm.models.dreamer.acceleration`)."""
        acceleration.prepare_world_model(self)
        acceleration.mark_step(self.cfg, self)
        with acceleration.autocast_context(self.cfg, self):
            return self._loss(data)

    def _loss(self, data: Mapping[str, Tensor]):
        """World-model loss of a batch-major batch (tensors, observations preprocessed).

        Returns ``(loss, posterior, metrics)`` with the posterior states ``(B, T, …)``.
        """
        obs = {key: data[key] for key in self.decoder.decoders}
        embed = self.encoder(obs)
        start = None  # replay context: the latent replay stored before the first step
        if "start_deter" in data:
            start = {"deter": data["start_deter"], "stoch": data["start_stoch"]}
        post, prior = acceleration.observe_on_threads(self.cfg, self, self.rssm.observe, embed,
                                                      data["action"], data["is_first"], start)
        feat = self.rssm.get_feat(post)
        recon = self.decoder.loss(feat, obs)
        reward_loss = -self.reward(feat).log_prob(data["reward"])
        per_step = sum(recon.values()) + reward_loss
        metrics = {f"{key}_loss": value.detach().mean() for key, value in recon.items()}
        metrics["reward_loss"] = reward_loss.detach().mean()
        if self.cont is not None:
            cont_target = 1.0 - data["is_terminal"].float()
            cont_dist = self.cont(feat)
            if self.cfg.cont_discount:  # the head predicts the discount too (contdisc): soft targets
                logits = cont_dist.base_dist.logits
                cont_loss = F.binary_cross_entropy_with_logits(
                    logits, cont_target * self.cfg.discount, reduction="none")
            else:
                cont_loss = -cont_dist.log_prob(cont_target)
            per_step = per_step + self.cfg.disc_loss_coeff * cont_loss
            metrics["cont_loss"] = cont_loss.detach().mean()
        kl, dyn, rep = self.kl_loss(post, prior)
        loss = per_step.mean() + kl
        metrics.update(kl_dyn=dyn, kl_rep=rep, model_loss=loss.detach())
        return loss, post, metrics


class _ScaleGrad(torch.autograd.Function):
    """The identity whose backward scales the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None
