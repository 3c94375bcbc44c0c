"""Normalisation layers shared by several families: :class:`RMSNorm` and
:class:`AdaLNNormalization` (the seed's ``torchwm.RMSNorm`` / ``torchwm.AdaLNNormalization``).

``RMSNorm(dim, eps=1e-6)``: ``x / sqrt(mean(x^2) + eps) * weight`` over the last axis, computed
in float32 and cast back (the current dreamerv3 code's norm; Dreamer builds it with eps 1e-4, as
that code does).

``AdaLNNormalization(d_model, t_dim)``: adaptive normalisation conditioned on an embedding
``t_emb`` ``(B, t_dim)`` (e.g. a diffusion timestep embedding): RMS normalisation without a
learned gain, then ``x * (1 + scale) + shift`` with ``scale, shift`` predicted by
``Linear(SiLU(t_emb))``. The projection starts at zero, so at initialisation the layer is a
plain RMS normalisation (DiT's adaLN-Zero idea, Peebles & Xie 2023).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AdaLNNormalization", "RMSNorm", "rms_normalize"]


def rms_normalize(x: Tensor, eps: float) -> Tensor:
    """``x / sqrt(mean(x^2, -1) + eps)`` computed in float32, returned in float32."""
    x32 = x.float()
    return x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    """Root-mean-square layer normalisation with a learned gain ``weight`` (ones at start)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"RMSNorm: dim must be > 0, got {dim!r}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (rms_normalize(x, self.eps) * self.weight).to(x.dtype)


class AdaLNNormalization(nn.Module):
    """RMS-normalise ``x`` ``(..., d_model)`` and modulate it by ``t_emb`` ``(B, t_dim)``.

    ``x`` is ``(B, d_model)`` or ``(B, L, d_model)``; the per-channel scale and shift are
    broadcast over the token axis.
    """

    def __init__(self, d_model: int, t_dim: int, eps: float = 1e-6):
        super().__init__()
        if d_model <= 0 or t_dim <= 0:
            raise ValueError(f"AdaLNNormalization: d_model and t_dim must be > 0, got "
                             f"{d_model!r}, {t_dim!r}")
        self.eps = eps
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(t_dim, 2 * d_model))
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        if t_emb.shape[0] != x.shape[0]:
            raise ValueError(f"AdaLNNormalization: x has batch {x.shape[0]} but t_emb has "
                             f"{t_emb.shape[0]}")
        scale, shift = self.modulation(t_emb).chunk(2, dim=-1)
        if x.dim() == 3:
            scale, shift = scale.unsqueeze(1), shift.unsqueeze(1)
        return (rms_normalize(x, self.eps) * (1 + scale) + shift).to(x.dtype)
