"""Replay batches (distwm's stream format) -> the step format of IRIS and DIAMOND. Owned by
no family.

In a replay batch the action at index ``t`` led to observation ``t`` and ``reward`` /
``is_terminal`` belong to arriving there (DreamerV3's format). IRIS and DIAMOND store
``(frame t, action taken in it, reward and end that followed)``, so step ``t`` of a
``T``-step batch is frame ``t`` with ``action[t + 1]``, ``reward[t + 1]`` and
``is_terminal[t + 1]``: ``T - 1`` steps. A step is valid while the sequence is still in the
episode it started in (no ``is_first`` in ``1..t + 1``); IRIS pads episode ends the same way.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["actor_critic_batch", "frame_steps"]


def _frames(batch: Mapping[str, Any], device) -> torch.Tensor:
    image = np.asarray(batch["image"])
    if image.ndim != 5:
        raise ValueError(f"batches need 'image' (B, T, C, H, W), got shape {image.shape}")
    return torch.as_tensor(image, device=device)


def frame_steps(batch: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    """``frames`` ``(B, T - 1, C, H, W)`` (uint8), ``actions`` (indices), ``rewards``, ``ends``
    and ``valid`` ``(B, T - 1)`` of a ``T``-step replay batch."""
    frames = _frames(batch, device)
    if frames.shape[1] < 2:
        raise ValueError(f"step batches need at least 2 steps, got {frames.shape[1]}")
    action = np.asarray(batch["action"])
    is_first = torch.as_tensor(np.asarray(batch["is_first"]), device=device).bool()
    valid = torch.cumsum(is_first[:, 1:].long(), 1) == 0
    return {"frames": frames[:, :-1],
            "actions": torch.as_tensor(action[:, 1:].argmax(-1), device=device),
            "rewards": torch.as_tensor(np.asarray(batch["reward"])[:, 1:], device=device).float(),
            "ends": torch.as_tensor(np.asarray(batch["is_terminal"])[:, 1:], device=device).long(),
            "valid": valid}


def actor_critic_batch(batch: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
    """The burn-in frames ``(B, T - 1, ...)`` with their ``is_first`` and the start frame ``(B, ...)``
    of imagination (the batch's last frame) with its ``is_first``."""
    frames = _frames(batch, device)
    is_first = torch.as_tensor(np.asarray(batch["is_first"]), device=device).bool()
    return {"burn_in": frames[:, :-1], "burn_in_first": is_first[:, :-1], "start": frames[:, -1],
            "start_first": is_first[:, -1]}
