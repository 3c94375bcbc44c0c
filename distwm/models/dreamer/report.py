"""Dreamer's ``report(batch)``: open-loop predictions beside the real frames (DreamerV3).

The world model observes the first ``context`` steps of each sequence (posterior: its frames
are reconstructions), then predicts the rest open loop from the prior with the real actions,
seeing no further observation. The report holds

* ``scalars``: ``openloop/image_mse`` (pixels in ``[0, 1]``, open-loop frames),
  ``openloop/image_mse_context`` (the reconstructions), ``openloop/state_mse`` (vector
  observations, open loop), ``openloop/reward_mse`` (open loop, steps that start an episode
  left out);
* ``images``: ``openloop``, an :func:`~distwm.utils.media.open_loop_strip` of ``rows``
  sequences (truth / model / error rows), only for pixel observations;
* ``videos``: ``openloop``, the same as an :func:`~distwm.utils.media.open_loop_video`.

It runs without gradients, with the world model in eval mode (its train / eval modes are
restored afterwards) and, with ``seed`` set, on a forked torch RNG so that a report neither
depends on nor disturbs the training's random stream.

Works on any object with a ``world_model`` attribute (``Dreamer`` / ``DreamerCore``), or on
the :class:`~distwm.models.dreamer.world_model.WorldModel` itself.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from distwm.models.dreamer.world_model import preprocess_obs
from distwm.utils.report_context import eval_mode, seeded, unwrap_sample
from distwm.utils.media import open_loop_outputs

__all__ = ["open_loop_predictions", "open_loop_report"]


def _world_model(agent) -> torch.nn.Module:
    wm = getattr(agent, "world_model", agent)
    for part in ("encoder", "rssm", "decoder", "reward"):
        if not hasattr(wm, part):
            raise TypeError(
                f"open_loop_report needs a Dreamer agent (with .world_model) or its WorldModel; "
                f"{type(agent).__name__} has no world model with .{part}"
            )
    return wm


def _tensor(value, device) -> Tensor:
    if torch.is_tensor(value):
        return value.to(device)
    return torch.as_tensor(np.asarray(value), device=device)


def _to_display(image: Tensor) -> np.ndarray:
    """Model-space images ``[-0.5, 0.5]`` -> float32 numpy ``[0, 1]``."""
    return (image.float() + 0.5).clamp(0.0, 1.0).cpu().numpy()


def _check_batch(batch: Mapping[str, Any], obs_keys, context: int) -> tuple[int, int]:
    needed = (*obs_keys, "action", "is_first")
    missing = [k for k in needed if k not in batch]
    if missing:
        raise ValueError(f"open_loop_report: batch lacks keys {missing}; it has {sorted(batch)}")
    shape = tuple(np.shape(batch["is_first"]))
    if len(shape) != 2:
        raise ValueError(f"open_loop_report: batch 'is_first' must be (B, T), got shape {shape}")
    for key in (*obs_keys, "action", "reward"):
        if key in batch and tuple(np.shape(batch[key])[:2]) != shape:
            raise ValueError(f"open_loop_report: batch {key!r} has shape {tuple(np.shape(batch[key]))}, "
                             f"expected (B, T)={shape} leading axes")
    if not isinstance(context, (int, np.integer)) or context < 1:
        raise ValueError(f"open_loop_report: context must be an int >= 1, got {context!r}")
    if shape[1] <= context:
        raise ValueError(f"open_loop_report: sequences of T={shape[1]} steps leave nothing to "
                         f"predict after context={context}; use T > context")
    return shape


@torch.no_grad()
def open_loop_predictions(agent, batch: Mapping[str, Any], context: int = 5,
                          seed: int | None = 0) -> dict[str, np.ndarray]:
    """The model's view of a ``(B, T, ...)`` batch: observed for ``context`` steps, then open loop.

    Returns numpy arrays: for each observation key ``k`` (``image``, ``state``) ``k`` (truth)
    and ``k + "_pred"`` (the model's; images ``(B, T, C, H, W)`` float in ``[0, 1]``), and
    ``reward`` / ``reward_pred`` ``(B, T)`` when the batch has rewards. Steps ``< context`` are
    decoded from the posterior, the rest from prior states imagined with ``batch["action"]``
    (``action[:, t]`` led to step ``t``; where ``is_first`` is set the state restarts).
    """
    wm = _world_model(agent)
    obs_keys = tuple(wm.decoder.decoders.keys())
    batch = unwrap_sample(batch)
    _check_batch(batch, obs_keys, context)
    device = next(wm.parameters()).device
    rssm = wm.rssm
    obs = {k: _tensor(batch[k], device) for k in obs_keys}
    model_obs = preprocess_obs(obs)
    action = _tensor(batch["action"], device).float()
    is_first = _tensor(batch["is_first"], device).bool()
    steps = action.shape[1]

    with eval_mode(wm), seeded(seed, device):
        embed = wm.encoder({k: v[:, :context] for k, v in model_obs.items()})
        post, _ = rssm.observe(embed, action[:, :context], is_first[:, :context])
        state = {k: v[:, -1] for k, v in post.items()}
        init = rssm.init_state(action.shape[0], device)
        priors = []
        for t in range(context, steps):
            keep = 1.0 - is_first[:, t].float()
            state = rssm.mask_state(state, keep, init)
            state = rssm.imagine_step(state, action[:, t] * keep.unsqueeze(-1))
            priors.append(state)
        prior = {k: torch.stack([p[k] for p in priors], 1) for k in priors[0]}
        feat = torch.cat([rssm.get_feat(post), rssm.get_feat(prior)], 1)
        dists = wm.decoder(feat)
        out: dict[str, np.ndarray] = {}
        for key, dist in dists.items():
            pred = dist.mode()
            if key == "image":
                out["image"] = _to_display(model_obs["image"])
                out["image_pred"] = _to_display(pred)
            else:
                out[key] = model_obs[key].float().cpu().numpy()
                out[key + "_pred"] = pred.float().cpu().numpy()
        if "reward" in batch:
            out["reward"] = _tensor(batch["reward"], device).float().cpu().numpy()
            out["reward_pred"] = wm.reward(feat).mode().float().reshape(out["reward"].shape).cpu().numpy()
    out["is_first"] = is_first.cpu().numpy()
    return out


def open_loop_report(agent, batch: Mapping[str, Any], context: int = 5, rows: int = 4,
                     seed: int | None = 0) -> dict[str, dict[str, Any]]:
    """``{"scalars", "images", "videos"}`` of open-loop predictions (see the module docstring).

    ``rows`` sequences of the batch are drawn; the scalars average over the whole batch.
    """
    pred = open_loop_predictions(agent, batch, context, seed)
    return open_loop_outputs(pred, context, rows)
