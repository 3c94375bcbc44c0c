"""What a Genie run reports: the paper's metrics that can be computed here and what to look at.

* ``psnr/reconstruction``: PSNR of the tokenizer's reconstruction of the clips (video fidelity
  of the tokenizer).
* ``psnr/generation_t``: PSNR of frame ``t`` (``delta_psnr_t``, the paper's t = 4) generated
  from the clip's first frame with the latent actions the LAM infers from the clip;
  ``psnr/random_actions_t`` the same with uniformly random latent actions;
  ``psnr/delta_t`` = their difference, the paper's controllability metric
  (Delta_t PSNR, section 3): > 0 means the latent actions steer the generated world the way the
  real one went.
* images ``reconstruction``: real frames (top row) over their reconstructions (bottom row);
* videos ``generated``: the real clip beside the clip generated from its first frame with the
  inferred actions; ``latent_actions``: one panel per latent action, each repeating that action
  from the same prompt frame, so the effect of every action can be seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["delta_psnr", "frames_uint8", "genie_report", "psnr"]


def psnr(x: Tensor, y: Tensor, max_value: float = 1.0) -> Tensor:
    """PSNR in dB per sample over all but the first axis (``x``, ``y`` in ``[0, max_value]``)."""
    if x.shape != y.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(max_value ** 2 / mse)


@torch.no_grad()
def delta_psnr(model, video: Tensor, t: int, generator: torch.Generator | None = None,
               per_clip: bool = False) -> dict[str, Any]:
    """Delta_t PSNR of ``model`` on ``video`` ``(B, C, T, H, W)``: PSNR of frame ``t`` generated
    from frame 0 with the inferred latent actions minus that with random ones (batch means;
    ``per_clip``: ``{"inferred": (B,), "random": (B,)}`` PSNR tensors instead)."""
    T = video.shape[2]
    if not 1 <= t < T:
        raise ValueError(f"delta_psnr needs 1 <= t < the clip's {T} frames, got t={t}")
    clip = video[:, :, : t + 1]
    inferred = model.infer_actions(clip)
    vocab = model.latent_action_model.vocab_size
    random = torch.randint(0, vocab, inferred.shape, generator=generator,
                           device="cpu").to(inferred.device)
    truth = clip[:, :, t]
    with_inferred = model.generate(clip[:, :, 0], num_frames=t + 1, actions=inferred)[:, :, t]
    with_random = model.generate(clip[:, :, 0], num_frames=t + 1, actions=random)[:, :, t]
    if per_clip:
        return {"inferred": psnr(with_inferred, truth), "random": psnr(with_random, truth)}
    a, b = psnr(with_inferred, truth).mean(), psnr(with_random, truth).mean()
    return {"psnr/generation_t": float(a), "psnr/random_actions_t": float(b),
            "psnr/delta_t": float(a - b)}


def frames_uint8(video: Tensor) -> np.ndarray:
    """``(C, T, H, W)`` in [0, 1] -> ``(T, H, W, 3)`` uint8 (grey frames repeated to RGB)."""
    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames[..., :3]


def _side_by_side(*videos: np.ndarray, gap: int = 2) -> np.ndarray:
    T, H = videos[0].shape[:2]
    spacer = np.full((T, H, gap, 3), 255, np.uint8)
    parts = []
    for v in videos:
        parts += [v, spacer]
    return np.concatenate(parts[:-1], axis=2)


@torch.no_grad()
def genie_report(model, video: Tensor, config) -> dict[str, Any]:
    """The report of :class:`~distwm.models.genie.trainable.GenieTrainable` on ``video``."""
    model.eval()
    generator = torch.Generator().manual_seed(config.seed)
    recon = model.video_tokenizer(video)[0]
    scalars = {"psnr/reconstruction": float(psnr(recon, video).mean())}
    t = min(config.delta_psnr_t, video.shape[2] - 1)
    scalars.update(delta_psnr(model, video, t, generator))
    first = video[0]
    grid = np.concatenate([np.concatenate(list(frames_uint8(first)), axis=1),
                           np.concatenate(list(frames_uint8(recon[0])), axis=1)], axis=0)
    actions = model.infer_actions(video[:1])
    generated = model.generate(video[:1, :, 0], num_frames=video.shape[2], actions=actions)
    vocab = model.latent_action_model.vocab_size
    prompts = video[:1, :, 0].expand(vocab, -1, -1, -1)
    per_action = torch.arange(vocab, device=video.device)[:, None].expand(vocab, video.shape[2] - 1)
    panels = model.generate(prompts, num_frames=video.shape[2], actions=per_action)
    model.train()
    return {"scalars": scalars,
            "images": {"reconstruction": grid},
            "videos": {"generated": _side_by_side(frames_uint8(first), frames_uint8(generated[0])),
                       "latent_actions": _side_by_side(*(frames_uint8(p) for p in panels))}}
