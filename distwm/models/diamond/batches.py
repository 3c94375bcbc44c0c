"""Replay batches (distwm's stream format, :mod:`distwm.models.step_batches`) -> DIAMOND's three
samples. Frames come out as ``[-1, 1]`` floats.

The reference samples segments that may begin before an episode's first frame and pads them
with zeros on the left (``mask_padding``). A replay sequence that crosses an episode start
holds the previous episode's frames there instead: :func:`pad_before_episode_start` replaces
them (and the actions taken in them) with the same zero padding.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from distwm.models.diamond.model import as_model_frames
from distwm.models.step_batches import frame_steps

__all__ = ["actor_critic_start", "denoiser_windows", "pad_before_episode_start", "reward_end_steps"]


def pad_before_episode_start(frames: torch.Tensor, actions: torch.Tensor,
                             is_first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero the frames ``(B, T, ...)`` and the actions ``(B, T')`` (``actions[:, j]`` taken in
    frame ``j``) before the last episode start in ``is_first[:, 1:]``; also returns which frames
    are real ``(B, T)``."""
    t = frames.shape[1]
    steps = torch.arange(t, device=frames.device).expand(frames.shape[0], t)
    starts = torch.where(is_first.bool() & (steps > 0), steps, torch.zeros_like(steps)).amax(1, keepdim=True)
    real = steps >= starts
    frames = frames * real.view(*real.shape, *([1] * (frames.dim() - 2))).to(frames.dtype)
    actions = actions * real[:, : actions.shape[1]].to(actions.dtype)
    return frames, actions, real


def _sample(batch: Mapping[str, Any], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    image = np.asarray(batch["image"])
    if image.ndim != 5:
        raise ValueError(f"DIAMOND batches need 'image' (B, T, C, H, W), got shape {image.shape}")
    frames = as_model_frames(image, device)
    taken = torch.as_tensor(np.asarray(batch["action"])[:, 1:].argmax(-1), device=device)  # action taken in frame j
    is_first = torch.as_tensor(np.asarray(batch["is_first"]), device=device)
    return frames, taken, is_first


def denoiser_windows(batch: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    """``frames`` ``(B, L + 1, ...)`` (``L`` conditioning frames, then the target) and the
    ``actions`` taken in the first ``L`` ``(B, L)`` of an ``L + 1``-step replay batch."""
    frames, taken, is_first = _sample(batch, device)
    frames, taken, _ = pad_before_episode_start(frames, taken, is_first)
    return {"frames": frames, "actions": taken}


def reward_end_steps(batch: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    """Transitions ``(B, T - 1)`` of a ``T``-step replay batch: ``frames``, ``actions``,
    ``next_frames``, ``rewards``, ``ends`` and ``valid`` (steps in the first episode)."""
    steps = frame_steps(batch, device)
    frames = as_model_frames(np.asarray(batch["image"]), device)
    return {"frames": frames[:, :-1], "actions": steps["actions"], "next_frames": frames[:, 1:],
            "rewards": steps["rewards"], "ends": steps["ends"], "valid": steps["valid"]}


def actor_critic_start(batch: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    """The ``L`` real frames ``(B, L, ...)`` imagination starts from, the actions taken in the
    first ``L - 1`` and ``first`` ``(B, L)`` (episode starts: the burn-in resets there)."""
    frames, taken, is_first = _sample(batch, device)
    frames, taken, real = pad_before_episode_start(frames, taken, is_first)
    first = is_first.bool() | (real & ~torch.cat([torch.ones_like(real[:, :1]), real[:, :-1]], 1))
    return {"frames": frames, "actions": taken, "first": first}
