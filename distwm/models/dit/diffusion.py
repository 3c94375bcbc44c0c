"""DDPM as DiT trains and samples it: the seed's ``world_models.models.diffusion.DDPM.DDPM``
(``q_sample``, ``p_sample``, ``sample``) with what the paper takes from improved-diffusion
(Nichol & Dhariwal 2021; DiT's ``diffusion/gaussian_diffusion.py`` is that code):

* the linear beta schedule (``beta_start`` .. ``beta_end`` over ``timesteps``, computed in
  float64, stored as float32 on ``device``), the forward process ``q(x_t | x_0)`` and the
  posterior ``q(x_{t-1} | x_t, x_0)`` (mean coefficients and the log variance clipped at t=0);
* ``p(x_{t-1} | x_t)`` from the network's output (:meth:`DDPM.p_mean_variance`): the mean
  from the predicted noise through the predicted x_0 (clipped to [-1, 1] with
  ``clip_denoised``); with C output channels the fixed posterior variance (the seed's
  ``p_sample``), with 2C channels (learned sigma) ``log Sigma = frac log beta_t + (1 - frac)
  log beta~_t``, ``frac = (v + 1) / 2``;
* the VLB term :meth:`DDPM.vb_terms_bpd` in bits per dimension: ``KL(q(x_{t-1}|x_t, x_0) ||
  p(x_{t-1}|x_t))`` for t > 0, the discretized Gaussian decoder NLL at t = 0;
* the hybrid loss :meth:`DDPM.training_losses`: ``mse(eps, eps_hat) + vlb_weight * T * vb``
  with the VLB term on a stop-gradient of the mean (it trains the variance only). With
  ``vlb_weight`` 0.001 and T = 1000 this is DiT's ``mse + vb`` exactly (``T * vb`` is the
  whole bound L_vlb, so the weight is the paper's lambda for any T: improved-diffusion's
  rescaled form).

Sampling (ancestral DDPM on all or on respaced steps, DDIM, classifier-free guidance) is in
:mod:`distwm.models.dit.sampling`. A respaced process is a :class:`DDPM` built from the
kept steps' betas (:meth:`DDPM.from_betas`) with ``timestep_map``: the network is always
called with the original timesteps.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor

__all__ = ["DDPM", "approx_standard_normal_cdf", "discretized_gaussian_log_likelihood",
           "mean_flat", "normal_kl"]


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every axis but the first."""
    return x.mean(dim=tuple(range(1, x.dim())))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise ``KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)))`` in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """The standard normal CDF by the tanh approximation of improved-diffusion."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """Elementwise log-likelihood (nats) of images ``x`` in [-1, 1], discretized to 256 bins
    of width 2/255, under ``N(means, exp(log_scales) ** 2)``; the edge bins take the tails."""
    if x.shape != means.shape or x.shape != log_scales.shape:
        raise ValueError(f"discretized_gaussian_log_likelihood: shapes differ: x {tuple(x.shape)}, "
                         f"means {tuple(means.shape)}, log_scales {tuple(log_scales.shape)}")
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


class DDPM:
    """Forward and reverse DDPM diffusion with a linear beta schedule (see the module
    docstring). Timestep tensors ``t`` are ``(B,)`` int64 indices into this schedule."""

    def __init__(self, timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 device: Any = "cpu"):
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(f"DDPM: timesteps must be an int >= 1, got {timesteps!r}")
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"DDPM: need 0 < beta_start <= beta_end < 1, got {beta_start!r}, "
                             f"{beta_end!r}")
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        self._set_schedule(torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64),
                           device, None)

    @classmethod
    def from_betas(cls, betas, device: Any = "cpu", timestep_map=None) -> "DDPM":
        """A process with these betas; ``timestep_map[i]`` is the timestep the network sees at
        step ``i`` (a respaced process; default: ``i``)."""
        betas = torch.as_tensor(betas, dtype=torch.float64).reshape(-1).cpu()
        if len(betas) == 0 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("DDPM.from_betas: betas must be a non-empty sequence in (0, 1]")
        ddpm = cls.__new__(cls)
        ddpm.beta_start, ddpm.beta_end = float(betas[0]), float(betas[-1])
        ddpm._set_schedule(betas, device, timestep_map)
        return ddpm

    def _set_schedule(self, betas: Tensor, device: Any, timestep_map) -> None:
        self.device = torch.device(device)
        self.timesteps = len(betas)
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        # log of the posterior variance, clipped: it is 0 at t = 0
        clipped = torch.cat([post_var[1:2], post_var[1:]]) if len(betas) > 1 else betas
        terms = {
            "betas": betas, "alphas": alphas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": ac.sqrt(), "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1.0).sqrt(),
            "log_betas": betas.log(),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": clipped.log(),
            "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
        }
        self._float64 = terms
        for name, value in terms.items():
            setattr(self, name, value.to(device=self.device, dtype=torch.float32))
        steps = torch.arange(self.timesteps) if timestep_map is None else \
            torch.as_tensor(timestep_map, dtype=torch.long).reshape(-1)
        if len(steps) != self.timesteps:
            raise ValueError(f"DDPM: timestep_map has {len(steps)} entries for {self.timesteps} steps")
        self.timestep_map = steps.to(self.device)

    def to(self, device: Any) -> "DDPM":
        """This process on ``device`` (a new object)."""
        return DDPM.from_betas(self._float64["betas"], device, self.timestep_map.cpu())

    def __repr__(self) -> str:
        return (f"DDPM(timesteps={self.timesteps}, betas {self.beta_start:g}..{self.beta_end:g}, "
                f"device={self.device})")

    # -- helpers --------------------------------------------------------------------------------
    def _at(self, values: Tensor, t: Tensor, x: Tensor) -> Tensor:
        """``values[t]`` shaped to broadcast against ``x`` ``(B, ...)``."""
        out = values[t.to(values.device)].to(device=x.device, dtype=x.dtype)
        return out.reshape(-1, *([1] * (x.dim() - 1)))

    def check_timesteps(self, t: Tensor, batch: int) -> Tensor:
        t = torch.as_tensor(t).reshape(-1)
        if t.shape[0] != batch or t.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"DDPM: t must be ({batch},) integer timesteps, got "
                             f"{tuple(t.shape)} {t.dtype}")
        return t.long()

    # -- forward process and posterior ----------------------------------------------------------
    def q_sample(self, x_start: Tensor, t: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` (noise ~ N(0, I) by default)."""
        t = self.check_timesteps(t, x_start.shape[0])
        noise = torch.randn_like(x_start) if noise is None else noise
        return (self._at(self.sqrt_alphas_cumprod, t, x_start) * x_start
                + self._at(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)

    def q_posterior_mean_variance(self, x_start: Tensor, x_t: Tensor, t: Tensor
                                  ) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = (self._at(self.posterior_mean_coef1, t, x_t) * x_start
                + self._at(self.posterior_mean_coef2, t, x_t) * x_t)
        return (mean, self._at(self.posterior_variance, t, x_t),
                self._at(self.posterior_log_variance_clipped, t, x_t))

    def predict_xstart_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return (self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, x_start: Tensor) -> Tensor:
        return ((self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x_start)
                / self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    # -- the reverse process --------------------------------------------------------------------
    def p_mean_variance(self, model_output: Tensor, x_t: Tensor, t: Tensor,
                        clip_denoised: bool = True) -> dict[str, Tensor]:
        """``p(x_{t-1} | x_t)`` from the network's output at ``(x_t, t)``: ``mean``,
        ``variance``, ``log_variance``, ``pred_xstart`` and ``eps``."""
        c = x_t.shape[1]
        if model_output.shape[1] == 2 * c:
            eps, v = model_output[:, :c], model_output[:, c:]
            min_log = self._at(self.posterior_log_variance_clipped, t, x_t)
            max_log = self._at(self.log_betas, t, x_t)
            frac = (v + 1.0) / 2.0
            log_variance = frac * max_log + (1.0 - frac) * min_log
            variance = torch.exp(log_variance)
        elif model_output.shape[1] == c:
            eps = model_output
            variance = self._at(self.posterior_variance, t, x_t).expand_as(x_t)
            log_variance = self._at(self.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
        else:
            raise ValueError(f"DDPM: the model returned {model_output.shape[1]} channels for "
                             f"{c}-channel images: expected {c} (noise) or {2 * c} (noise and "
                             "learned variance)")
        pred_xstart = self.predict_xstart_from_eps(x_t, t, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x_t, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance,
                "pred_xstart": pred_xstart, "eps": eps}

    def model_output(self, model: Callable, x: Tensor, t: Tensor, y: Optional[Tensor] = None,
                     guidance_scale: float = 1.0) -> Tensor:
        """The network at ``(x, t)`` (called with the original timesteps ``timestep_map[t]``),
        with classifier-free guidance ``guidance_scale`` when it is not 1 and labels ``y`` are
        given (``model.forward_with_cfg``)."""
        model_t = self.timestep_map[t.to(self.timestep_map.device)].to(x.device)
        if y is None:
            return model(x, model_t)
        if guidance_scale != 1.0:
            if not hasattr(model, "forward_with_cfg"):
                raise ValueError(f"guidance_scale {guidance_scale} needs a model with "
                                 f"forward_with_cfg (a class-conditional DiT); got "
                                 f"{type(model).__name__}")
            return model.forward_with_cfg(x, model_t, y, guidance_scale)
        return model(x, model_t, y)

    def p_sample(self, model: Callable, x_t: Tensor, t: Tensor, *, y: Optional[Tensor] = None,
                 guidance_scale: float = 1.0, clip_denoised: bool = True,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """One ancestral step: ``x_{t-1} ~ p(x_{t-1} | x_t)`` (no noise where t = 0)."""
        t = self.check_timesteps(t, x_t.shape[0]).to(x_t.device)
        out = self.p_mean_variance(self.model_output(model, x_t, t, y, guidance_scale), x_t, t,
                                   clip_denoised)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise

    @torch.no_grad()
    def sample(self, model: Callable, n: int, img_size: int, channels: int, *,
               y: Optional[Tensor] = None, guidance_scale: float = 1.0,
               sample_steps: Optional[int] = None, sampler: str = "ddpm", eta: float = 0.0,
               clip_denoised: bool = True, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` images ``(n, channels, img_size, img_size)`` in [-1, 1]: ancestral sampling
        over all steps (the seed's behaviour) or ``sample_steps`` respaced ones (``sampler``
        ``ddpm`` or ``ddim``); see :func:`distwm.models.dit.sampling.sample_images`."""
        from distwm.models.dit.sampling import sample_images

        return sample_images(self, model, n, img_size, channels, y=y,
                             guidance_scale=guidance_scale, sample_steps=sample_steps,
                             sampler=sampler, eta=eta, clip_denoised=clip_denoised,
                             generator=generator)

    # -- the variational bound and the training loss --------------------------------------------
    def vb_terms_bpd(self, model_output: Tensor, x_start: Tensor, x_t: Tensor, t: Tensor,
                     clip_denoised: bool = False) -> Tensor:
        """The VLB term of each sample ``(B,)`` in bits per dimension: the KL of the posterior
        to the model's step for t > 0, the decoder NLL at t = 0."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model_output, x_t, t, clip_denoised)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"]))
        nll = -mean_flat(discretized_gaussian_log_likelihood(
            x_start, out["mean"], 0.5 * out["log_variance"]))
        return torch.where(t.to(x_t.device) == 0, nll, kl) / math.log(2.0)

    def training_losses(self, model: Callable, x_start: Tensor, t: Tensor,
                        y: Optional[Tensor] = None, noise: Optional[Tensor] = None,
                        vlb_weight: float = 0.001) -> dict[str, Tensor]:
        """Per-sample ``(B,)`` losses at timesteps ``t``: ``mse`` (L_simple), ``vb`` (the VLB
        term, learned sigma only, on the stop-gradient of the predicted noise) and ``loss =
        mse + vlb_weight * T * vb``."""
        t = self.check_timesteps(t, x_start.shape[0]).to(x_start.device)
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise)
        output = self.model_output(model, x_t, t, y)
        c = x_start.shape[1]
        mse = mean_flat((noise - output[:, :c]) ** 2)
        terms = {"mse": mse}
        if output.shape[1] == 2 * c:
            frozen = torch.cat([output[:, :c].detach(), output[:, c:]], dim=1)
            terms["vb"] = self.vb_terms_bpd(frozen, x_start, x_t, t, clip_denoised=False)
            terms["loss"] = mse + vlb_weight * self.timesteps * terms["vb"]
        else:
            terms["loss"] = mse
        return terms
