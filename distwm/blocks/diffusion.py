"""EDM diffusion maths (Karras et al. 2022) as DIAMOND uses it: preconditioning, Karras
sigma schedule, deterministic Euler sampler. Model-agnostic: everything takes a network or
a ``denoise(x, sigma)`` callable.

Follows eloialonso/diamond ``src/models/diffusion/denoiser.py`` (``compute_conditioners``,
``apply_noise``, ``sample_sigma_training``, the loss target) and ``diffusion_sampler.py``
(``build_sigmas``, Euler with ``s_churn = 0``). The network is called as
``model(c_in * x, c_noise, **kwargs)`` and returns the raw output ``F``; the denoised
estimate is ``D = c_skip * x + c_out * F``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EDMPreconditioner", "EulerSampler", "euler_sample", "karras_sigmas"]

DenoiseFn = Callable[[Tensor, Tensor], Tensor]


def _positive(name: str, value: float, owner: str, *, allow_zero: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")
    return value


def _num_steps(value, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: num_steps must be an integer >= 1, got {value!r}")
    return value


def _per_sample(sigma, x: Tensor) -> Tensor:
    """``sigma`` (float, 0-d or ``(B,)``) as a ``(B,)`` tensor on ``x``'s device / dtype."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma


def _like(c: Tensor, x: Tensor) -> Tensor:
    """``(B,)`` coefficient reshaped to broadcast against ``x`` ``(B, ...)``."""
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def karras_sigmas(num_steps: int, sigma_min: float = 2e-3, sigma_max: float = 80.0, rho: float = 7.0,
                  device: Optional[torch.device] = None) -> Tensor:
    """Karras et al. (2022) eq. 5: ``num_steps`` sigmas from ``sigma_max`` down to ``sigma_min``
    (spaced uniformly in ``sigma ** (1 / rho)``) plus a final 0, shape ``(num_steps + 1,)``,
    as the reference ``build_sigmas``. ``num_steps == 1`` gives ``[sigma_max, 0]``."""
    owner = "karras_sigmas"
    num_steps = _num_steps(num_steps, owner)
    sigma_min = _positive("sigma_min", sigma_min, owner)
    sigma_max = _positive("sigma_max", sigma_max, owner)
    rho = _positive("rho", rho, owner)
    if sigma_min >= sigma_max:
        raise ValueError(f"{owner}: need sigma_min < sigma_max, got sigma_min={sigma_min!r}, "
                         f"sigma_max={sigma_max!r}")
    ramp = torch.linspace(0, 1, num_steps, device=device, dtype=torch.float64)
    max_inv, min_inv = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat((sigmas, sigmas.new_zeros(1))).float()


class EDMPreconditioner:
    """EDM preconditioning and training-noise distribution (Karras et al. 2022, table 1).

    ``c_skip = sd² / (s² + sd²)``, ``c_out = s·sd / sqrt(s² + sd²)``, ``c_in = 1 / sqrt(s² + sd²)``,
    ``c_noise = ln(s) / 4``, with ``sd = sigma_data`` and ``s = sqrt(sigma² + sigma_offset_noise²)``.
    Training sigmas are ``exp(p_mean + p_std·N(0, 1))`` clipped to
    ``[train_sigma_min, train_sigma_max]`` (the reference's ``SigmaDistributionConfig``:
    -0.4, 1.2, 2e-3, 20).

    ``sigma_offset_noise`` is DIAMOND's offset noise: training noise gets an extra
    ``sigma_offset_noise · N(0, 1)`` shared by all pixels of a channel, and the coefficients
    use the combined level ``s``. The default 0 is plain EDM (the seed's class); DIAMOND's
    Atari config uses 0.3 (:class:`distwm.models.diamond.denoiser.DiamondDenoiser` does).
    """

    def __init__(self, sigma_data: float = 0.5, p_mean: float = -0.4, p_std: float = 1.2, *,
                 sigma_offset_noise: float = 0.0, train_sigma_min: float = 2e-3,
                 train_sigma_max: float = 20.0):
        owner = "EDMPreconditioner"
        self.sigma_data = _positive("sigma_data", sigma_data, owner)
        self.p_mean = float(p_mean)
        if not math.isfinite(self.p_mean):
            raise ValueError(f"{owner}: p_mean must be finite, got {p_mean!r}")
        self.p_std = _positive("p_std", p_std, owner)
        self.sigma_offset_noise = _positive("sigma_offset_noise", sigma_offset_noise, owner, allow_zero=True)
        self.train_sigma_min = _positive("train_sigma_min", train_sigma_min, owner)
        self.train_sigma_max = _positive("train_sigma_max", train_sigma_max, owner)
        if self.train_sigma_min >= self.train_sigma_max:
            raise ValueError(f"{owner}: need train_sigma_min < train_sigma_max, got "
                             f"{self.train_sigma_min!r} and {self.train_sigma_max!r}")

    def __repr__(self) -> str:
        return (f"EDMPreconditioner(sigma_data={self.sigma_data}, p_mean={self.p_mean}, p_std={self.p_std}, "
                f"sigma_offset_noise={self.sigma_offset_noise})")

    def get_preconditioners(self, sigma: Tensor) -> dict:
        """``{"c_skip", "c_out", "c_in", "c_noise"}``, each shaped like ``sigma``."""
        sigma = torch.as_tensor(sigma)
        if not torch.is_floating_point(sigma):
            sigma = sigma.float()
        sigma = (sigma ** 2 + self.sigma_offset_noise ** 2).sqrt()
        total = sigma ** 2 + self.sigma_data ** 2
        c_skip = self.sigma_data ** 2 / total
        return {"c_skip": c_skip, "c_out": sigma * self.sigma_data / total.sqrt(),
                "c_in": 1 / total.sqrt(), "c_noise": sigma.log() / 4}

    def sample_noise_level(self, batch_size: int, device: torch.device,
                           generator: Optional[torch.Generator] = None) -> Tensor:
        """``(batch_size,)`` training sigmas from the clipped log-normal."""
        normal = torch.randn(batch_size, device=device, generator=generator)
        return (normal * self.p_std + self.p_mean).exp().clamp(self.train_sigma_min, self.train_sigma_max)

    def add_noise(self, x: Tensor, sigma, *, offset_noise: Optional[float] = None,
                  generator: Optional[torch.Generator] = None) -> Tensor:
        """``x + offset·N(0,1)[B, C, 1, 1] + sigma·N(0,1)`` (reference ``apply_noise``); ``x`` is
        ``(B, C, H, W)``; ``offset_noise`` defaults to ``sigma_offset_noise``."""
        offset = self.sigma_offset_noise if offset_noise is None else float(offset_noise)
        sigma = _per_sample(sigma, x)
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        noisy = x + _like(sigma, x) * noise
        if offset > 0:
            shared = torch.randn(x.shape[:2], device=x.device, dtype=x.dtype, generator=generator)
            noisy = noisy + offset * _like(shared, x)
        return noisy

    def model_output(self, model: Callable, x: Tensor, sigma, **kwargs) -> Tensor:
        """The raw network output ``F = model(c_in · x, c_noise, **kwargs)``."""
        cs = self.get_preconditioners(_per_sample(sigma, x))
        return model(_like(cs["c_in"], x) * x, cs["c_noise"], **kwargs)

    def denoise(self, model: Callable, x: Tensor, sigma, **kwargs) -> Tensor:
        """Denoised estimate ``D = c_skip · x + c_out · F`` (same shape as ``x``)."""
        sigma = _per_sample(sigma, x)
        cs = self.get_preconditioners(sigma)
        out = self.model_output(model, x, sigma, **kwargs)
        return _like(cs["c_skip"], x) * x + _like(cs["c_out"], x) * out

    def training_target(self, clean: Tensor, noisy: Tensor, sigma) -> Tensor:
        """``(clean - c_skip · noisy) / c_out``: what ``F`` should output (reference loss target)."""
        cs = self.get_preconditioners(_per_sample(sigma, noisy))
        return (clean - _like(cs["c_skip"], noisy) * noisy) / _like(cs["c_out"], noisy)

    def training_loss(self, model: Callable, clean: Tensor, *, sigma: Optional[Tensor] = None,
                      mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                      **kwargs) -> Tensor:
        """MSE between ``F`` and :meth:`training_target` on freshly noised ``clean`` (the EDM loss,
        weight ``1 / c_out²`` on ``|D - clean|²``); ``mask`` ``(B,)`` selects the samples that count."""
        if sigma is None:
            sigma = self.sample_noise_level(clean.shape[0], clean.device, generator)
        noisy = self.add_noise(clean, sigma, generator=generator)
        out = self.model_output(model, noisy, sigma, **kwargs)
        target = self.training_target(clean, noisy, sigma)
        if mask is not None:
            out, target = out[mask], target[mask]
        return F.mse_loss(out, target)


def euler_sample(denoise: DenoiseFn, x: Tensor, sigmas: Tensor,
                 clip_denoised: Optional[Sequence[float]] = None) -> Tensor:
    """Deterministic Euler integration of the probability-flow ODE (Karras alg. 1/2 with
    ``s_churn = 0``, order 1): ``x += (x - D(x, sigma)) / sigma · (next_sigma - sigma)`` for each
    consecutive pair of ``sigmas``. With a trailing 0 the result is the last ``D``.
    ``clip_denoised=(lo, hi)`` clamps every ``D``."""
    batch = x.shape[0]
    for sigma, next_sigma in zip(sigmas[:-1], sigmas[1:]):
        denoised = denoise(x, sigma.to(x.dtype).expand(batch))
        if clip_denoised is not None:
            denoised = denoised.clamp(*clip_denoised)
        x = x + (x - denoised) / sigma * (next_sigma - sigma)
    return x


class EulerSampler:
    """Euler sampler over a Karras schedule (reference ``DiffusionSampler`` with ``order=1``,
    ``s_churn=0``).

    The seed's default ``sigma_max=80`` is EDM's; DIAMOND samples with ``sigma_max=5`` and 3 steps.
    ``initial_noise_scale`` is the std of the starting noise: ``None`` means ``sigma_max``
    (EDM); the reference DIAMOND sampler starts from ``N(0, 1)`` (``1.0``). Denoised
    estimates and the output are clamped to ``clip_range`` (frames in ``[-1, 1]``; ``None`` off).
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: int = 7, num_steps: int = 3,
                 edm_precond: Optional[EDMPreconditioner] = None, *,
                 initial_noise_scale: Optional[float] = None,
                 clip_range: Optional[Sequence[float]] = (-1.0, 1.0)):
        karras_sigmas(num_steps, sigma_min, sigma_max, rho)  # validates the schedule arguments
        self.sigma_min, self.sigma_max, self.rho, self.num_steps = float(sigma_min), float(sigma_max), rho, num_steps
        if edm_precond is not None and not isinstance(edm_precond, EDMPreconditioner):
            raise ValueError(f"EulerSampler: edm_precond must be an EDMPreconditioner or None, "
                             f"got {type(edm_precond).__name__}")
        self.edm_precond = edm_precond if edm_precond is not None else EDMPreconditioner()
        if initial_noise_scale is not None:
            initial_noise_scale = _positive("initial_noise_scale", initial_noise_scale, "EulerSampler")
        self.initial_noise_scale = initial_noise_scale
        if clip_range is not None:
            lo, hi = (float(v) for v in clip_range)
            if not lo < hi:
                raise ValueError(f"EulerSampler: clip_range must be (low, high) with low < high or None, "
                                 f"got {tuple(clip_range)!r}")
            clip_range = (lo, hi)
        self.clip_range = clip_range

    def sigmas(self, num_steps: Optional[int] = None, device: Optional[torch.device] = None) -> Tensor:
        """The ``(num_steps + 1,)`` schedule, ending in 0."""
        steps = self.num_steps if num_steps is None else num_steps
        return karras_sigmas(steps, self.sigma_min, self.sigma_max, self.rho, device=device)

    def initial_noise(self, shape: Sequence[int], device: torch.device,
                      generator: Optional[torch.Generator] = None) -> Tensor:
        scale = self.sigma_max if self.initial_noise_scale is None else self.initial_noise_scale
        return torch.randn(tuple(shape), device=device, generator=generator) * scale

    @torch.no_grad()
    def sample_with_denoiser(self, denoise: DenoiseFn, noise: Tensor, num_steps: Optional[int] = None) -> Tensor:
        """Integrate from ``noise`` (already scaled) with any ``denoise(x, sigma[B])`` callable."""
        x = euler_sample(denoise, noise, self.sigmas(num_steps, noise.device), self.clip_range)
        return x if self.clip_range is None else x.clamp(*self.clip_range)

    @torch.no_grad()
    def sample(self, model: Callable, shape: Sequence[int], device: torch.device,
               obs_history: Optional[Tensor] = None, actions: Optional[Tensor] = None, *,
               num_steps: Optional[int] = None, generator: Optional[torch.Generator] = None,
               **model_kwargs) -> Tensor:
        """Samples of ``shape`` ``(B, C, H, W)``; ``model`` is the raw network, wrapped by
        ``edm_precond.denoise``; ``obs_history`` / ``actions`` (and ``model_kwargs``) are passed on."""
        if obs_history is not None:
            model_kwargs["obs_history"] = obs_history
        if actions is not None:
            model_kwargs["actions"] = actions

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            return self.edm_precond.denoise(model, x, sigma, **model_kwargs)

        return self.sample_with_denoiser(denoise, self.initial_noise(shape, device, generator), num_steps)
