"""PlaNet's ``report(batch)``: open-loop predictions beside the real frames.

As Dreamer's (:mod:`distwm.models.dreamer.report`): the RSSM filters the first ``context``
steps of each sequence (posterior samples; those frames are reconstructions), then predicts
the rest open loop from the prior with the real actions. Observations go in through
:func:`~distwm.models.planet.losses.prepare_observation` (the agent's ``bit_depth``) and the
decoded frames come back as uint8 through :func:`~distwm.utils.utils.postprocess_img`.

The report holds ``scalars`` (``openloop/image_mse`` in ``[0, 1]`` pixels over the open-loop
frames, ``openloop/image_mse_context`` over the reconstructions, ``openloop/state_mse`` for
vector observations, ``openloop/reward_mse`` over open-loop steps that do not start an
episode), ``images["openloop"]`` (:func:`~distwm.utils.media.open_loop_strip`) and
``videos["openloop"]`` (:func:`~distwm.utils.media.open_loop_video`), the last two only for
pixel observations. It runs without gradients, in eval mode (restored afterwards) and, with
``seed`` set, on a forked torch RNG.

Works on any object with an ``rssm`` (a
:class:`~distwm.models.planet.networks.RecurrentStateSpaceModel`), ``obs_key`` and
``config.bit_depth``: :class:`~distwm.models.planet.core.PlanetCore` (``PlanetAgent``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from distwm.models.planet.losses import prepare_observation
from distwm.utils.report_context import eval_mode, seeded, unwrap_sample
from distwm.utils.media import open_loop_outputs
from distwm.utils.utils import postprocess_img

__all__ = ["open_loop_predictions", "open_loop_report"]


def _parts(agent):
    rssm = getattr(agent, "rssm", None)
    for name in ("encoder", "observe", "deterministic_state_fwd", "state_prior", "decode", "pred_reward"):
        if rssm is None or not hasattr(rssm, name):
            raise TypeError(f"open_loop_report needs a PlaNet agent with an .rssm offering .{name}; "
                            f"got {type(agent).__name__}")
    obs_key = getattr(agent, "obs_key", None) or ("image" if rssm.is_image else "state")
    config = getattr(agent, "config", None)
    bit_depth = int(getattr(config, "bit_depth", 5))
    return rssm, obs_key, bit_depth


def _time_major(value, device) -> Tensor:
    tensor = value.to(device) if torch.is_tensor(value) else torch.as_tensor(np.asarray(value), device=device)
    return tensor.transpose(0, 1)


def _check_batch(batch: Mapping[str, Any], obs_key: str, context: int) -> None:
    missing = [k for k in (obs_key, "action", "is_first") if k not in batch]
    if missing:
        raise ValueError(f"open_loop_report: batch lacks keys {missing}; it has {sorted(batch)}")
    shape = tuple(np.shape(batch["is_first"]))
    if len(shape) != 2:
        raise ValueError(f"open_loop_report: batch 'is_first' must be (B, T), got shape {shape}")
    for key in (obs_key, "action", "reward"):
        if key in batch and tuple(np.shape(batch[key])[:2]) != shape:
            raise ValueError(f"open_loop_report: batch {key!r} has shape {tuple(np.shape(batch[key]))}, "
                             f"expected (B, T)={shape} leading axes")
    if not isinstance(context, (int, np.integer)) or context < 1:
        raise ValueError(f"open_loop_report: context must be an int >= 1, got {context!r}")
    if shape[1] <= context:
        raise ValueError(f"open_loop_report: sequences of T={shape[1]} steps leave nothing to "
                         f"predict after context={context}; use T > context")


def _truth_display(raw) -> np.ndarray:
    arr = raw.detach().cpu().numpy() if torch.is_tensor(raw) else np.asarray(raw)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32) + 0.5, 0.0, 1.0)  # already in [-0.5, 0.5]


@torch.no_grad()
def open_loop_predictions(agent, batch: Mapping[str, Any], context: int = 5,
                          seed: int | None = 0) -> dict[str, np.ndarray]:
    """The model's view of a ``(B, T, ...)`` batch, batch-major numpy arrays.

    ``image`` / ``image_pred`` ``(B, T, C, H, W)`` float in ``[0, 1]`` (the prediction
    quantised to ``bit_depth`` bits as :func:`postprocess_img` does), or ``state`` /
    ``state_pred``; ``reward`` / ``reward_pred`` ``(B, T)`` when the batch has rewards.
    Steps ``< context`` come from the posterior, the rest from the prior with
    ``batch["action"]`` (``action[:, t]`` led to step ``t``; ``is_first`` restarts the state).
    """
    rssm, obs_key, bit_depth = _parts(agent)
    batch = unwrap_sample(batch)
    _check_batch(batch, obs_key, context)
    device = next(rssm.parameters()).device
    action = _time_major(batch["action"], device).float()
    is_first = _time_major(batch["is_first"], device).float()
    steps = action.shape[0]
    with eval_mode(rssm), seeded(seed, device):
        obs = prepare_observation(_time_major(batch[obs_key], device), bit_depth, device)
        seq = rssm.observe(rssm.encoder(obs[:context]), action[:context], is_first[:context])
        h, s = seq.states[-1], seq.latents[-1]
        hs, ss = [], []
        for t in range(context, steps):
            keep = (1.0 - is_first[t]).unsqueeze(-1)
            h, s, a = h * keep, s * keep, action[t] * keep
            h = rssm.deterministic_state_fwd(h, s, a)
            s = rssm.state_prior(h, sample=True)
            hs.append(h)
            ss.append(s)
        states = torch.cat([seq.states, torch.stack(hs)], 0)
        latents = torch.cat([seq.latents, torch.stack(ss)], 0)
        decoded = rssm.decode(states, latents).transpose(0, 1).float().cpu().numpy()
        out: dict[str, np.ndarray] = {}
        if obs_key == "image" or getattr(rssm, "is_image", False):
            out["image"] = _truth_display(batch[obs_key])
            out["image_pred"] = postprocess_img(decoded, bit_depth).astype(np.float32) / 255.0
        else:
            out["state"] = obs.transpose(0, 1).float().cpu().numpy()
            out["state_pred"] = decoded
        if "reward" in batch:
            out["reward"] = _time_major(batch["reward"], device).transpose(0, 1).float().cpu().numpy()
            out["reward_pred"] = rssm.pred_reward(states, latents).transpose(0, 1).float().cpu().numpy()
    out["is_first"] = is_first.transpose(0, 1).bool().cpu().numpy()
    return out


def open_loop_report(agent, batch: Mapping[str, Any], context: int = 5, rows: int = 4,
                     seed: int | None = 0) -> dict[str, dict[str, Any]]:
    """``{"scalars", "images", "videos"}`` of open-loop predictions (see the module docstring).

    ``rows`` sequences of the batch are drawn; the scalars average over the whole batch.
    """
    pred = open_loop_predictions(agent, batch, context, seed)
    return open_loop_outputs(pred, context, rows)
