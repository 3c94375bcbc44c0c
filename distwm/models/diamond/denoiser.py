"""DIAMOND's next-frame world model: :class:`~distwm.models.diamond.unet.DiffusionUNet` wrapped
in EDM preconditioning, trained with the EDM loss and sampled with 3 Euler steps.

Follows eloialonso/diamond ``src/models/diffusion/denoiser.py`` (``Denoiser``: offset noise,
conditioners on ``sqrt(sigma² + sigma_offset_noise²)``, loss on the scaled target, denoised
frames clamped to ``[-1, 1]`` and quantised to 8 bits) and ``diffusion_sampler.py``
(``DiffusionSampler``: Euler, ``s_churn = 0``, start from ``N(0, 1)``, ``sigma_max = 5``).
Defaults are the reference's Atari config (``config/agent/default.yaml``, ``trainer.yaml``).
The loss is one denoising step (the Atari ``num_autoregressive_steps`` is 1).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from distwm.blocks.diffusion import EDMPreconditioner, EulerSampler
from distwm.models.diamond.unet import DiffusionUNet

__all__ = ["DiamondDenoiser", "quantize_to_uint8_levels"]


def quantize_to_uint8_levels(frames: Tensor) -> Tensor:
    """Clamp to ``[-1, 1]`` and snap down to the 256 levels of an 8-bit image (reference
    ``wrap_model_output``: ``byte()`` truncates)."""
    return frames.clamp(-1, 1).add(1).div(2).mul(255).to(torch.uint8).to(frames.dtype).div(255).mul(2).sub(1)


class DiamondDenoiser(nn.Module):
    """``loss(next_frame, obs_history, act_history)`` and ``sample(obs_history, act_history)``
    for frames in ``[-1, 1]`` ``(B, C, H, W)``, histories ``(B, L, C, H, W)`` and ``(B, L)``.

    Training: ``sigma ~ exp(p_mean + p_std·N(0,1))`` clipped to ``[train_sigma_min,
    train_sigma_max]``, noise plus ``sigma_offset_noise`` offset noise. With
    ``noise_conditioning_frames`` the history frames are noised too, at their own
    ``sigma_cond`` from the same distribution (the reference's ``noise_previous_obs``, on in
    its CS:GO branch, absent from Atari; needs ``DiffusionUNet(embed_history_noise=True)``),
    and sampling noises them at ``sampling_conditioning_sigma`` (the reference's ``s_cond``,
    0.005 for CS:GO; once per sample, where the reference re-noises at every step).
    """

    def __init__(self, unet: DiffusionUNet, *, p_mean: float = -0.4, p_std: float = 1.2,
                 train_sigma_min: float = 2e-3, train_sigma_max: float = 20.0, sigma_offset_noise: float = 0.3,
                 noise_conditioning_frames: bool = False, sampling_sigma_min: float = 2e-3,
                 sampling_sigma_max: float = 5.0, rho: int = 7, num_sampling_steps: int = 3,
                 sampling_conditioning_sigma: float = 0.0, initial_noise_scale: float = 1.0,
                 quantize_denoised: bool = True):
        super().__init__()
        if not isinstance(unet, DiffusionUNet):
            raise ValueError(f"DiamondDenoiser: unet must be a DiffusionUNet, got {type(unet).__name__}")
        wants_history_noise = noise_conditioning_frames or sampling_conditioning_sigma > 0
        if wants_history_noise and unet.history_noise_embedding is None:
            raise ValueError("DiamondDenoiser: noise_conditioning_frames=True or sampling_conditioning_sigma > 0 "
                             "needs DiffusionUNet(embed_history_noise=True)")
        if sampling_conditioning_sigma < 0:
            raise ValueError(f"DiamondDenoiser: sampling_conditioning_sigma must be >= 0, "
                             f"got {sampling_conditioning_sigma!r}")
        self.unet = unet
        self.preconditioner = EDMPreconditioner(unet.sigma_data, p_mean, p_std, sigma_offset_noise=sigma_offset_noise,
                                                train_sigma_min=train_sigma_min, train_sigma_max=train_sigma_max)
        self.sampler = EulerSampler(sampling_sigma_min, sampling_sigma_max, rho, num_sampling_steps,
                                    self.preconditioner, initial_noise_scale=initial_noise_scale)
        self.noise_conditioning_frames = bool(noise_conditioning_frames)
        self.sampling_conditioning_sigma = float(sampling_conditioning_sigma)
        self.quantize_denoised = bool(quantize_denoised)

    def _check(self, obs_history: Tensor, act_history: Tensor) -> None:
        u = self.unet
        if obs_history.ndim != 5 or obs_history.shape[1:3] != (u.num_conditioning_frames, u.obs_channels):
            raise ValueError(f"DiamondDenoiser: obs_history must be (B, {u.num_conditioning_frames}, "
                             f"{u.obs_channels}, H, W), got {tuple(obs_history.shape)}")
        if act_history.shape[:2] != obs_history.shape[:2]:
            raise ValueError(f"DiamondDenoiser: act_history must be (B, {u.num_conditioning_frames}) like "
                             f"obs_history's first two dims {tuple(obs_history.shape[:2])}, "
                             f"got {tuple(act_history.shape)}")

    def _noised_history(self, obs_history: Tensor, sigma_cond: Tensor, offset_noise: Optional[float]) -> Tensor:
        b, length, c, h, w = obs_history.shape
        flat = obs_history.reshape(b, length * c, h, w)
        return self.preconditioner.add_noise(flat, sigma_cond, offset_noise=offset_noise).reshape(obs_history.shape)

    def _history_kwargs(self, sigma_cond: Optional[Tensor]) -> dict:
        if self.unet.history_noise_embedding is None:
            return {}
        return {"history_noise": None if sigma_cond is None else sigma_cond.log() / 4}

    def loss(self, next_frame: Tensor, obs_history: Tensor, act_history: Tensor,
             mask: Optional[Tensor] = None) -> Tensor:
        """EDM denoising loss for ``next_frame`` given the history; ``mask`` ``(B,)`` keeps samples."""
        self._check(obs_history, act_history)
        sigma_cond = None
        if self.noise_conditioning_frames:
            sigma_cond = self.preconditioner.sample_noise_level(next_frame.shape[0], next_frame.device)
            obs_history = self._noised_history(obs_history, sigma_cond, offset_noise=None)
        return self.preconditioner.training_loss(self.unet, next_frame, mask=mask, obs_history=obs_history,
                                                 actions=act_history, **self._history_kwargs(sigma_cond))

    def forward(self, next_frame: Tensor, obs_history: Tensor, act_history: Tensor,
                mask: Optional[Tensor] = None) -> Tensor:
        """Same as :meth:`loss` (the reference ``Denoiser.forward`` returns the loss)."""
        return self.loss(next_frame, obs_history, act_history, mask)

    @torch.no_grad()
    def denoise(self, noisy_next_frame: Tensor, sigma, obs_history: Tensor, act_history: Tensor,
                sigma_cond: Optional[Tensor] = None) -> Tensor:
        """Clean-frame estimate ``c_skip · x + c_out · F`` in ``[-1, 1]`` (8-bit levels if
        ``quantize_denoised``)."""
        denoised = self.preconditioner.denoise(self.unet, noisy_next_frame, sigma, obs_history=obs_history,
                                               actions=act_history, **self._history_kwargs(sigma_cond))
        return quantize_to_uint8_levels(denoised) if self.quantize_denoised else denoised.clamp(-1, 1)

    @torch.no_grad()
    def sample(self, obs_history: Tensor, act_history: Tensor, num_steps: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Next frame ``(B, C, H, W)`` in ``[-1, 1]`` after ``num_steps`` (default
        ``num_sampling_steps``) Euler steps."""
        self._check(obs_history, act_history)
        b, _, c, h, w = obs_history.shape
        sigma_cond = None
        if self.sampling_conditioning_sigma > 0:
            sigma_cond = obs_history.new_full((b,), self.sampling_conditioning_sigma)
            obs_history = self._noised_history(obs_history, sigma_cond, offset_noise=0.0)

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            return self.denoise(x, sigma, obs_history, act_history, sigma_cond)

        noise = self.sampler.initial_noise((b, c, h, w), obs_history.device, generator)
        return self.sampler.sample_with_denoiser(denoise, noise.to(obs_history.dtype), num_steps)
