"""MaskGIT iterative decoding (Chang et al. 2022), as Genie samples each new frame.

Genie (Bruce et al. 2024, section 2.1 / appendix) decodes every frame with MaskGIT: 25 steps at
temperature 2 with random sampling. One step of :meth:`MaskGITSampler.sample`:

1. draw a token for every position from ``softmax(logits / temperature)``;
2. confidence of a still-masked position = the log-probability of its drawn token under that
   same distribution (known positions count as infinitely confident, so they never re-mask).
   With ``choice_temperature > 0`` MaskGIT's annealed Gumbel noise
   ``choice_temperature * (1 - (step + 1) / num_steps) * Gumbel(0, 1)`` is added (MaskGIT uses
   4.5); the default 0 ranks by confidence alone: Genie does not mention the noise;
3. keep the most confident draws and re-mask the rest so that
   ``floor(gamma((step + 1) / num_steps) * N)`` positions stay masked (``N`` = positions per
   row), clamped as MaskGIT does to reveal at least one and keep at least one masked before
   the last step; after the last step nothing is masked.

``gamma`` is MaskGIT's mask schedule: ``cosine`` ``cos(pi r / 2)`` (MaskGIT's and Genie's
choice), ``linear`` ``1 - r``, ``square`` ``1 - r^2``.

The peer (simulusion 1.1.0) keeps ``1 - (1 + cos(pi step / num_steps)) / 2`` of the positions
masked after step ``step`` for its cosine schedule: 0 at step 0, so its first step reveals the
whole frame and later steps have nothing to refine (and its ``DynamicsModel.sample`` does not
call the sampler at all). Here the masked fraction starts near 1 and falls to 0. The seed's
``sample(logits, mask, step)`` signature is kept; ``tokens`` and ``generator`` are additions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MASK_SCHEDULES", "MaskGITSampler", "check_temperature"]

MASK_SCHEDULES = {
    "cosine": lambda r: math.cos(math.pi * r / 2.0),
    "linear": lambda r: 1.0 - r,
    "square": lambda r: 1.0 - r * r,
}


def check_temperature(temperature, what: str = "temperature") -> float:
    """``temperature`` as a float, or a ValueError unless it is finite and > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{what} must be a finite number > 0 (it divides the logits), "
                         f"got {temperature!r}")
    return float(temperature)


class MaskGITSampler:
    """MaskGIT sampling for token-based video generation: ``num_steps`` refinement steps of a
    frame, drawing at ``temperature``, re-masking by ``mask_schedule`` (see the module doc).

    ``choice_temperature``: scale of MaskGIT's annealed Gumbel noise on the confidences
    (0 = none, the default; MaskGIT uses 4.5).
    """

    def __init__(self, num_steps: int = 25, temperature: float = 2.0,
                 mask_schedule: str = "cosine", choice_temperature: float = 0.0):
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
        if mask_schedule not in MASK_SCHEDULES:
            raise ValueError(f"Unknown mask_schedule {mask_schedule!r}; choices: "
                             f"{', '.join(MASK_SCHEDULES)}")
        if isinstance(choice_temperature, bool) or not isinstance(choice_temperature, (int, float)) \
                or not math.isfinite(choice_temperature) or choice_temperature < 0:
            raise ValueError(f"choice_temperature must be a finite number >= 0, "
                             f"got {choice_temperature!r}")
        self.num_steps = num_steps
        self.temperature = check_temperature(temperature)
        self.mask_schedule = mask_schedule
        self.choice_temperature = float(choice_temperature)

    def __repr__(self) -> str:
        return (f"MaskGITSampler(num_steps={self.num_steps}, temperature={self.temperature}, "
                f"mask_schedule={self.mask_schedule!r}, "
                f"choice_temperature={self.choice_temperature})")

    def _check_step(self, step) -> int:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < self.num_steps:
            raise ValueError(f"step must be an int in [0, {self.num_steps}) "
                             f"(num_steps={self.num_steps}), got {step!r}")
        return step

    def get_mask_prob(self, step: int) -> float:
        """Fraction of the positions still masked *after* refinement step ``step``
        (``0 <= step < num_steps``): ``gamma((step + 1) / num_steps)``, 0 at the last step."""
        step = self._check_step(step)
        if step == self.num_steps - 1:
            return 0.0
        return MASK_SCHEDULES[self.mask_schedule]((step + 1) / self.num_steps)

    def num_masked_after(self, step: int, num_positions: int, num_masked: Tensor) -> Tensor:
        """How many positions of each row stay masked after ``step``, for rows with
        ``num_masked`` (a long tensor) masked now out of ``num_positions``."""
        target = math.floor(self.get_mask_prob(step) * num_positions)
        if step == self.num_steps - 1:
            return torch.zeros_like(num_masked)
        # MaskGIT: reveal at least one, keep at least one masked (never more than are masked)
        keep = torch.clamp(num_masked - 1, max=target).clamp(min=1)
        return torch.minimum(keep, num_masked)

    def sample(self, logits: Tensor, mask: Tensor, step: int, tokens: Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One refinement step.

        Args:
            logits: ``(B, T, vocab_size)`` over the ``T`` positions (a frame's tokens).
            mask: ``(B, T)``, 1 / True for positions still to predict, 0 for fixed ones.
            step: the refinement step, ``0 <= step < num_steps``.
            tokens: optional ``(B, T)`` current tokens; the fixed positions of the result
                are copied from it (without it they hold a draw that must be ignored).
            generator: the random source of the draws and the Gumbel noise (on logits' device).

        Returns:
            ``(sampled_tokens (B, T), new_mask (B, T))``: a drawn token at every position that
            was masked (fixed ones from ``tokens``); ``new_mask`` (``mask``'s dtype) marks the
            positions re-masked for the next step, a subset of ``mask``; after the last step
            it is all zero.
        """
        step = self._check_step(step)
        if logits.dim() != 3 or mask.shape != logits.shape[:2]:
            raise ValueError(f"MaskGITSampler.sample expects logits (B, T, V) and mask (B, T), "
                             f"got {tuple(logits.shape)} and {tuple(mask.shape)}")
        if tokens is not None and tokens.shape != mask.shape:
            raise ValueError(f"tokens must have mask's shape {tuple(mask.shape)}, "
                             f"got {tuple(tokens.shape)}")
        B, T, V = logits.shape
        masked = mask.bool()
        log_probs = F.log_softmax(logits.float() / self.temperature, dim=-1)
        drawn = torch.multinomial(log_probs.exp().reshape(B * T, V), 1,
                                  generator=generator).reshape(B, T)
        confidence = log_probs.gather(-1, drawn.unsqueeze(-1)).squeeze(-1)
        noise_scale = self.choice_temperature * (1.0 - (step + 1) / self.num_steps)
        if noise_scale > 0:
            uniform = torch.rand(confidence.shape, generator=generator, device=logits.device)
            confidence = confidence - noise_scale * torch.log(-torch.log(uniform.clamp_min(1e-20)))
        confidence = confidence.masked_fill(~masked, math.inf)
        keep = self.num_masked_after(step, T, masked.sum(-1))
        # rank 0 = least confident; the `keep` least confident masked positions re-mask
        ranks = torch.empty_like(drawn)
        order = confidence.argsort(dim=-1, stable=True)
        ranks.scatter_(-1, order, torch.arange(T, device=logits.device).expand(B, T))
        new_mask = (ranks < keep.unsqueeze(-1)) & masked
        if tokens is not None:
            drawn = torch.where(masked, drawn, tokens)
        return drawn, new_mask.to(mask.dtype)
