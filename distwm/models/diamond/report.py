"""DIAMOND's ``report(batch)``: what its world model makes of real sequences.

* ``openloop``: from the first ``num_conditioning_frames`` real frames of each sequence, the
  denoiser predicts every following frame from the real actions alone (each prediction
  conditions on the previous predictions, 3 Euler steps each) and the reward/end model
  predicts the reward signs; strips and a video of real / predicted / error frames
  (:func:`distwm.utils.media.open_loop_outputs`) and the error of the reward signs;
* ``imagination``: a video of rollouts under the current policy from the same starts.

Runs without gradients in eval mode on a forked RNG (seed 0), so it neither depends on nor
disturbs training's random stream.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from distwm.models.diamond.batches import actor_critic_start, reward_end_steps
from distwm.utils.media import open_loop_outputs
from distwm.utils.report_context import eval_mode, seeded

__all__ = ["diamond_report", "open_loop"]


def _pixels(frames: torch.Tensor) -> np.ndarray:
    """``[-1, 1]`` frames -> float32 ``[0, 1]`` numpy (what the open-loop errors are measured in)."""
    return ((frames.float() + 1.0) / 2.0).clamp(0, 1).cpu().numpy()


@torch.no_grad()
def open_loop(model, frames: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Frames ``(B, T, ...)`` in ``[-1, 1]`` with the ``(B, T - 1)`` actions taken in them ->
    ``frames`` ``(B, T, ...)`` (the first ``L`` real, the rest predicted from the real actions)
    and ``rewards`` ``(B, T - L)`` (the predicted sign of each predicted step's reward)."""
    length = model.config.num_conditioning_frames
    obs, out, rewards = frames[:, :length], [frames[:, i] for i in range(length)], []
    state = model.reward_end.burn_in(obs[:, :-1], actions[:, : length - 1], obs[:, 1:])
    for t in range(length - 1, frames.shape[1] - 1):
        act = actions[:, t - length + 1: t + 1]
        next_frame = model.denoiser.sample(obs, act)
        reward, _, state = model.reward_end.predict(obs[:, -1], actions[:, t], state, next_frame, sample=False)
        out.append(next_frame)
        rewards.append(reward)
        obs = torch.cat([obs[:, 1:], next_frame.unsqueeze(1)], 1)
    return {"frames": torch.stack(out, 1), "rewards": torch.stack(rewards, 1)}


def diamond_report(core, batch: Mapping[str, Any], rows: int = 4, seed: int | None = 0) -> dict[str, Any]:
    """The report of a :class:`~distwm.models.diamond.core.DiamondCore` on a reward-sample batch
    (``(B, T, ...)``, ``T > num_conditioning_frames``; module docstring)."""
    model = core.agent
    length = model.config.num_conditioning_frames
    rows_batch = {k: np.asarray(v)[:rows] for k, v in batch.items()}
    steps = reward_end_steps(rows_batch, model.device)
    frames = torch.cat([steps["frames"], steps["next_frames"][:, -1:]], 1)
    start = actor_critic_start({k: v[:, :length] for k, v in rows_batch.items()}, model.device)
    with torch.no_grad(), eval_mode(model), seeded(seed, model.device):
        predicted = open_loop(model, frames, steps["actions"])
        rollout = model.imagine(start["frames"], start["actions"], first=start["first"])
    truth = _pixels(frames)
    valid = steps["valid"].cpu().numpy()
    context = np.zeros((truth.shape[0], length))
    pred = {"image": truth, "image_pred": _pixels(predicted["frames"]),
            # frame j is reached by step j - 1: its reward, left out where the step crossed episodes
            "reward": np.concatenate([context, np.sign(steps["rewards"][:, length - 1:].cpu().numpy())], 1),
            "reward_pred": np.concatenate([context, predicted["rewards"].cpu().numpy()], 1),
            "is_first": np.concatenate([np.ones((truth.shape[0], 1), bool), ~valid], 1)}
    out = open_loop_outputs(pred, context=length, rows=rows)
    out["scalars"]["openloop/valid_fraction"] = float(valid.mean())
    video = (_pixels(rollout["frames"]) * 255).round().astype(np.uint8)  # (B, T, C, H, W) -> (T, B * H, W, 3)
    out["videos"]["imagination"] = np.ascontiguousarray(
        video.transpose(1, 0, 3, 4, 2).reshape(video.shape[1], -1, video.shape[4], video.shape[2]))
    return out
