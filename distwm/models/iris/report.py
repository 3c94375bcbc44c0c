"""IRIS's ``report(batch)``: what its world model makes of real sequences.

* ``openloop``: the world model sees the first frame of each sequence (as tokens), then predicts
  every following frame from the real actions alone, sampling token by token with its
  key/value cache; strips and a video of real / predicted / error frames
  (:func:`distwm.utils.media.open_loop_outputs`), the first frame being the tokenizer's
  reconstruction, and the error of the predicted reward signs;
* ``reconstruction``: real frames beside their reconstructions (``tokenizer/l1``);
* ``imagination``: a video of rollouts under the current policy from the same first frames.

Runs without gradients in eval mode on a forked RNG (seed 0), so it neither depends on nor
disturbs training's random stream.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from distwm.models.step_batches import frame_steps
from distwm.utils.media import open_loop_outputs, open_loop_strip
from distwm.utils.report_context import eval_mode, seeded

__all__ = ["iris_report"]


def _pixels(frames: torch.Tensor) -> np.ndarray:
    """float32 ``[0, 1]`` numpy frames (what the open-loop errors are measured in)."""
    return frames.clamp(0, 1).float().cpu().numpy()


def iris_report(core, batch: Mapping[str, Any], rows: int = 4, seed: int | None = 0) -> dict[str, Any]:
    """The report of an :class:`~distwm.models.iris.core.IRISCore` on a world-model batch
    (``(B, T, ...)``, ``T >= 2``; module docstring)."""
    agent = core.agent
    steps = frame_steps(batch, agent.device)
    frames = steps["frames"][:rows].float() / 255.0
    actions = steps["actions"][:rows].long()
    horizon = frames.shape[1] - 1
    with torch.no_grad(), eval_mode(agent), seeded(seed, agent.device):
        tokens = agent.world_model.tokenize(frames[:, :1])[:, 0]
        clock = iter(range(horizon))
        predicted = agent.world_model.imagine(tokens, lambda _: actions[:, next(clock)], horizon)
        recon = agent.reconstruct(frames)
        rollout = agent.imagine_rollout(frames[:, 0], max(2, horizon + 1))
    truth = _pixels(frames)
    first = np.zeros((truth.shape[0], 1))
    valid = steps["valid"][:rows].cpu().numpy()
    pred = {"image": truth, "image_pred": _pixels(predicted["frames"]),
            # frame j is reached by step j - 1: its reward, left out where the step crossed episodes
            "reward": np.concatenate([first, np.sign(steps["rewards"][:rows, :-1].cpu().numpy())], 1),
            "reward_pred": np.concatenate([first, predicted["rewards"].cpu().numpy()], 1),
            "is_first": np.concatenate([np.ones_like(first, bool), ~valid[:, :-1]], 1)}
    out = open_loop_outputs(pred, context=1, rows=rows)
    out["scalars"]["openloop/valid_fraction"] = float(valid.mean())
    out["scalars"]["tokenizer/l1"] = float((recon - frames).abs().mean())
    out["images"]["reconstruction"] = open_loop_strip(truth, _pixels(recon), context=truth.shape[1])
    video = (_pixels(rollout["frames"]) * 255).round().astype(np.uint8)  # (B, T, C, H, W) -> (T, B * H, W, 3)
    out["videos"]["imagination"] = np.ascontiguousarray(
        video.transpose(1, 0, 3, 4, 2).reshape(video.shape[1], -1, video.shape[4], video.shape[2]))
    return out
