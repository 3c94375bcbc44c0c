"""Sampling a :class:`~distwm.models.dit.diffusion.DDPM`: all steps or a respaced subset,
ancestral (DDPM) or DDIM, with classifier-free guidance.

* :func:`space_timesteps` is improved-diffusion's (``respace.py``): ``section_counts`` a list
  of step counts, one per equal section of ``[0, T)`` (``[k]``: k evenly strided steps, DiT's
  ``create_diffusion(str(k))``), or ``"ddimK"`` (the integer stride that gives exactly K).
* :func:`respace`: the process on those steps, betas ``1 - abar_i / abar_prev`` of the kept
  steps, its ``timestep_map`` giving the network the original timesteps; with learned sigma
  the variance is interpolated between the *respaced* beta and posterior variance, as in DiT's
  ``sample.py``.
* :func:`sample_images`: start from N(0, I) and run ``p_sample`` (or :func:`ddim_step`, with
  ``eta``; 0 is deterministic) from the last step to 0, the network called once a step (with
  guidance its batch is doubled: conditional and null labels in one pass).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor

from distwm.models.dit.diffusion import DDPM

__all__ = ["SAMPLERS", "ddim_step", "respace", "sample_images", "space_timesteps"]

SAMPLERS = ("ddpm", "ddim")


def space_timesteps(num_timesteps: int, section_counts: Union[str, Sequence[int], int]) -> set[int]:
    """The timesteps of ``[0, num_timesteps)`` to keep (see the module docstring)."""
    if isinstance(section_counts, int):
        section_counts = [section_counts]
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            if desired == num_timesteps:
                return set(range(num_timesteps))
            raise ValueError(f"cannot create exactly {desired} steps of {num_timesteps} with an "
                             "integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, kept = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = (size - 1) / (count - 1) if count > 1 else 1
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return set(kept)


def respace(ddpm: DDPM, use_timesteps: Iterable[int]) -> DDPM:
    """``ddpm`` restricted to ``use_timesteps`` (indices of its steps)."""
    keep = sorted(set(int(s) for s in use_timesteps))
    if not keep or keep[0] < 0 or keep[-1] >= ddpm.timesteps:
        raise ValueError(f"respace: timesteps must be a non-empty subset of 0..{ddpm.timesteps - 1}")
    ac = ddpm._float64["alphas_cumprod"]
    betas, last = [], 1.0
    for i in keep:
        betas.append(1.0 - float(ac[i]) / last)
        last = float(ac[i])
    return DDPM.from_betas(betas, ddpm.device, ddpm.timestep_map.cpu()[keep])


def ddim_step(ddpm: DDPM, model: Callable, x: Tensor, t: Tensor, *, y: Optional[Tensor] = None,
              guidance_scale: float = 1.0, eta: float = 0.0, clip_denoised: bool = True,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """One DDIM step from ``x_t`` to ``x_{t-1}`` (Song et al. 2021, eq. 12; ``eta`` 1 is
    ancestral sampling's variance)."""
    out = ddpm.p_mean_variance(ddpm.model_output(model, x, t, y, guidance_scale), x, t,
                               clip_denoised)
    eps = ddpm.predict_eps_from_xstart(x, t, out["pred_xstart"])
    abar = ddpm._at(ddpm.alphas_cumprod, t, x)
    abar_prev = ddpm._at(ddpm.alphas_cumprod_prev, t, x)
    sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
    mean = out["pred_xstart"] * abar_prev.sqrt() + (1 - abar_prev - sigma ** 2).clamp_min(0).sqrt() * eps
    if eta == 0:
        return mean
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return mean + nonzero * sigma * noise


def _labels(y, n: int, device) -> Optional[Tensor]:
    if y is None:
        return None
    y = torch.as_tensor(y, dtype=torch.long, device=device).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"sample: {n} images need {n} labels, got {y.shape[0]}")
    return y


@torch.no_grad()
def sample_images(ddpm: DDPM, model: Callable, n: int, img_size: int, channels: int, *,
                  y=None, guidance_scale: float = 1.0, sample_steps: Optional[int] = None,
                  sampler: str = "ddpm", eta: float = 0.0, clip_denoised: bool = True,
                  generator: Optional[torch.Generator] = None,
                  device: Optional[torch.device] = None) -> Tensor:
    """``n`` images ``(n, channels, img_size, img_size)`` in [-1, 1] from ``model`` (labels
    ``y`` ``(n,)`` for a class-conditional one; None: unconditional). ``sample_steps``: respaced
    steps (None: all). ``device``: default the model's parameters' (else ``ddpm.device``)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"sample: n must be an int >= 1, got {n!r}")
    if sample_steps is not None and not 1 <= sample_steps <= ddpm.timesteps:
        raise ValueError(f"sample_steps must be in 1..{ddpm.timesteps} or None, got {sample_steps}")
    if device is None:
        param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        device = param.device if param is not None else ddpm.device
    process = ddpm if ddpm.device == torch.device(device) else ddpm.to(device)
    if sample_steps is not None and sample_steps != ddpm.timesteps:
        process = respace(process, space_timesteps(ddpm.timesteps, [sample_steps]))
    y = _labels(y, n, device)
    x = torch.randn((n, channels, img_size, img_size), generator=generator, device=device)
    for i in reversed(range(process.timesteps)):
        t = torch.full((n,), i, dtype=torch.long, device=device)
        if sampler == "ddim":
            x = ddim_step(process, model, x, t, y=y, guidance_scale=guidance_scale, eta=eta,
                          clip_denoised=clip_denoised, generator=generator)
        else:
            x = process.p_sample(model, x, t, y=y, guidance_scale=guidance_scale,
                                 clip_denoised=clip_denoised, generator=generator)
    return x.clamp(-1.0, 1.0)
