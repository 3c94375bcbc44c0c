"""Images and videos of open-loop predictions beside the real frames (numpy only).

What a world-model user looks at, as DreamerV3's ``report`` shows it: for a few sequences of a
batch, the real frames (``truth``), the model's frames (``model``: reconstructions for the first
``context`` frames, which the model observed, then open-loop predictions from the prior with the
real actions) and their difference ``error = (model - truth + 1) / 2`` (grey where they agree).

* :func:`open_loop_strip`: one ``(H', W', 3)`` uint8 image; per sequence three rows (truth,
  model, error) of frames side by side; a coloured border marks each frame as context (green)
  or predicted (red).
* :func:`open_loop_video`: ``(T, H', W', 3)`` uint8 frames; per frame truth | model | error side
  by side, one sequence under another.
* :func:`save_png`, :func:`save_video`: write them (video through
  :func:`distwm.utils.utils.write_video`: MP4 with imageio-ffmpeg, GIF without).

Frames may be ``(B, T, C, H, W)`` or ``(B, T, H, W, C)`` with C in {1, 3}, uint8 in
``[0, 255]`` or float in ``[0, 1]`` (clipped); one channel is repeated to RGB.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

import numpy as np

__all__ = [
    "CONTEXT_COLOR",
    "PREDICTED_COLOR",
    "to_rgb_frames",
    "error_frames",
    "open_loop_outputs",
    "open_loop_strip",
    "open_loop_video",
    "save_png",
    "save_video",
]

_log = logging.getLogger(__name__)

#: border colour of the frames the model observed (posterior reconstructions)
CONTEXT_COLOR = (0, 200, 0)
#: border colour of the frames the model predicted open loop (prior)
PREDICTED_COLOR = (220, 0, 0)

_CHANNELS = (1, 3)


def to_rgb_frames(frames, name: str = "frames") -> np.ndarray:
    """``(B, T, C, H, W)`` or ``(B, T, H, W, C)`` uint8 / float ``[0, 1]`` -> float32
    ``(B, T, H, W, 3)`` in ``[0, 1]``.

    The layout is channels-first when axis 2 has 1 or 3 entries and the last axis does not;
    channels-last when the last axis has 1 or 3 entries; otherwise a ValueError names the shape.
    """
    if hasattr(frames, "detach"):  # a torch tensor, without importing torch
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim != 5:
        raise ValueError(
            f"{name} must be (B, T, C, H, W) or (B, T, H, W, C) with C in {_CHANNELS}, "
            f"got shape {arr.shape} ({arr.ndim}-D)"
        )
    if arr.shape[-1] in _CHANNELS:
        pass
    elif arr.shape[2] in _CHANNELS:
        arr = np.moveaxis(arr, 2, -1)
    else:
        raise ValueError(
            f"{name} must be (B, T, C, H, W) or (B, T, H, W, C) with C in {_CHANNELS}, "
            f"got shape {arr.shape}: neither axis 2 nor the last axis is a channel axis"
        )
    if min(arr.shape) == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_:
        out = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        out = np.clip(out, 0.0, 1.0)
    else:
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got dtype {arr.dtype} "
                         f"(shape {arr.shape})")
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return out


def _pair(truth, model) -> tuple[np.ndarray, np.ndarray]:
    t = to_rgb_frames(truth, "truth")
    m = to_rgb_frames(model, "model")
    if t.shape != m.shape:
        raise ValueError(
            f"truth and model frames differ in shape: truth {np.shape(truth)} -> {t.shape}, "
            f"model {np.shape(model)} -> {m.shape} (as (B, T, H, W, 3))"
        )
    return t, m


def error_frames(truth: np.ndarray, model: np.ndarray) -> np.ndarray:
    """``(model - truth + 1) / 2`` of float frames in ``[0, 1]``: 0.5 (grey) where they agree."""
    return (model - truth + 1.0) / 2.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_border(border) -> int:
    if not isinstance(border, (int, np.integer)) or border < 0:
        raise ValueError(f"border must be a non-negative int, got {border!r}")
    return int(border)


def _framed(frames: np.ndarray, context: int | None, border: int) -> np.ndarray:
    """uint8 ``(B, T, H, W, 3)`` -> ``(B, T, H + 2b, W + 2b, 3)`` with coloured borders."""
    if border == 0:
        return frames
    b, t, h, w, _ = frames.shape
    out = np.zeros((b, t, h + 2 * border, w + 2 * border, 3), np.uint8)
    if context is not None:
        out[:, :context] = np.asarray(CONTEXT_COLOR, np.uint8)
        out[:, context:] = np.asarray(PREDICTED_COLOR, np.uint8)
    out[:, :, border:border + h, border:border + w] = frames
    return out


def _check_context(context, steps: int) -> int:
    if not isinstance(context, (int, np.integer)) or isinstance(context, bool):
        raise ValueError(f"context must be an int, got {context!r}")
    if not 0 <= context <= steps:
        raise ValueError(f"context must be in 0..T={steps} (frames the model observed), got {context}")
    return int(context)


def open_loop_strip(truth, model, context: int, border: int = 2) -> np.ndarray:
    """The open-loop image: ``(B * 3 * (H + 2b), T * (W + 2b), 3)`` uint8.

    For each sequence ``i`` (of ``B``), rows ``3i``, ``3i + 1``, ``3i + 2`` are the real frames,
    the model's frames and the error ``(model - truth + 1) / 2``, frames ``0..T-1`` left to
    right. Each frame has a ``border``-pixel frame: :data:`CONTEXT_COLOR` for the first
    ``context`` frames (observed), :data:`PREDICTED_COLOR` for the rest (open loop).
    """
    t, m = _pair(truth, model)
    context = _check_context(context, t.shape[1])
    border = _check_border(border)
    err = error_frames(t, m)
    # (B, 3, T, H, W, 3): truth / model / error rows per sequence
    rows = np.stack([_to_uint8(t), _to_uint8(m), _to_uint8(err)], axis=1)
    b, _, steps, h, w, _ = rows.shape
    framed = _framed(rows.reshape(b * 3, steps, h, w, 3), context, border)
    fh, fw = framed.shape[2:4]
    # (B*3, T, fh, fw, 3) -> (B*3, fh, T, fw, 3) -> (B*3*fh, T*fw, 3)
    return np.ascontiguousarray(framed.transpose(0, 2, 1, 3, 4).reshape(b * 3 * fh, steps * fw, 3))


def open_loop_video(truth, model, context: int | None = None, border: int = 2) -> np.ndarray:
    """The open-loop video: ``(T, B * H', 3 * W', 3)`` uint8.

    Each video frame shows, per sequence (one under another), the real frame, the model's frame
    and the error ``(model - truth + 1) / 2`` side by side. With ``context`` each panel has a
    ``border``-pixel frame (context: green, predicted: red), ``H' = H + 2b``; without it,
    ``H' = H`` and ``W' = W``.
    """
    t, m = _pair(truth, model)
    if context is None:
        border = 0
    else:
        context = _check_context(context, t.shape[1])
        border = _check_border(border)
    err = error_frames(t, m)
    panels = [_framed(_to_uint8(x), context, border) for x in (t, m, err)]
    side = np.concatenate(panels, axis=3)  # (B, T, H', 3W', 3)
    b, steps, fh, fw, _ = side.shape
    return np.ascontiguousarray(side.transpose(1, 0, 2, 3, 4).reshape(steps, b * fh, fw, 3))


def _check_uint8_image(image, what: str, ndim: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == ndim - 1:  # grey without a channel axis
        arr = arr[..., None]
    if arr.ndim != ndim or arr.shape[-1] not in _CHANNELS:
        expected = "(H, W, 3)" if ndim == 3 else "(T, H, W, 3)"
        raise ValueError(f"{what} must be {expected} (or 1 channel), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got dtype {arr.dtype} (shape {arr.shape})")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def save_png(image, path: str | os.PathLike) -> str:
    """Write an ``(H, W, 3)`` (or ``(H, W)``, ``(H, W, 1)``) uint8 image as PNG; returns the
    path. Creates the parent directory."""
    import imageio.v2 as iio

    arr = _check_uint8_image(image, "image", 3)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    iio.imwrite(path, arr, format="PNG")
    return path


def _has_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def save_video(frames, path: str | os.PathLike, fps: float = 10) -> str:
    """Write ``(T, H, W, 3)`` uint8 frames to ``path`` and return the path written.

    The extension picks the format (``.gif``, ``.mp4``, ``.avi``; none: MP4). MP4/AVI need
    imageio-ffmpeg; without it the video is written as GIF beside ``path`` (``.gif``
    extension) and that path is returned. Delegates to :func:`distwm.utils.utils.write_video`.
    """
    from distwm.utils.utils import write_video

    arr = _check_uint8_image(frames, "frames", 4)
    if arr.shape[0] == 0:
        raise ValueError(f"no frames to write: shape {arr.shape}")
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    ext = ext.lower().lstrip(".")
    if ext == "":
        ext, path = "mp4", path + ".mp4"
        root = path[:-4]
    if ext in ("mp4", "avi") and not _has_ffmpeg():
        _log.info("imageio-ffmpeg is not installed: writing %s as GIF", path)
        ext, path = "gif", root + ".gif"
    return write_video(arr, path, fps=fps, fmt=ext)


def open_loop_outputs(pred: Mapping[str, np.ndarray], context: int, rows: int) -> dict[str, dict]:
    """A family's ``report(batch)`` from its open-loop predictions.

    ``pred`` holds batch-major arrays: ``image`` / ``image_pred`` (uint8 frames), ``state`` /
    ``state_pred``, ``reward`` / ``reward_pred`` and ``is_first``, each where the family has
    them. Returns ``{"scalars": openloop/* errors over the predicted steps (and the context
    reconstructions), "images": {"openloop": strip}, "videos": {"openloop": video}}`` for the
    first ``rows`` sequences; no images or videos without ``image``."""
    if not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(f"open_loop_report: rows must be an int >= 1, got {rows!r}")

    def mse(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))

    scalars: dict[str, float] = {}
    images: dict[str, np.ndarray] = {}
    videos: dict[str, np.ndarray] = {}
    if "image" in pred:
        scalars["openloop/image_mse"] = mse(pred["image_pred"][:, context:], pred["image"][:, context:])
        scalars["openloop/image_mse_context"] = mse(pred["image_pred"][:, :context],
                                                    pred["image"][:, :context])
        truth, model = pred["image"][:rows], pred["image_pred"][:rows]
        images["openloop"] = open_loop_strip(truth, model, context)
        videos["openloop"] = open_loop_video(truth, model, context)
    if "state" in pred:
        scalars["openloop/state_mse"] = mse(pred["state_pred"][:, context:], pred["state"][:, context:])
    if "reward" in pred:
        err = (pred["reward_pred"][:, context:] - pred["reward"][:, context:]) ** 2
        keep = ~pred["is_first"][:, context:]
        scalars["openloop/reward_mse"] = float(err[keep].mean()) if keep.any() else float("nan")
    return {"scalars": scalars, "images": images, "videos": videos}
