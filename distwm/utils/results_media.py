"""Files in a results directory: combined videos and prediction frame grids (the seed's
``combine_videos``, ``ensure_results_dir_exists`` and ``save_frames``).

Videos are read with imageio (GIF with Pillow, MP4 / AVI with imageio-ffmpeg) and written with
:class:`distwm.utils.utils.StreamingVideoWriter`; images with imageio. Torch is not imported.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from distwm.utils.utils import normalize_frames_for_saving
from distwm.utils.video_io import StreamingVideoWriter, _video_format

__all__ = ["combine_videos", "ensure_results_dir_exists", "save_frames"]


def ensure_results_dir_exists(results_dir) -> str:
    """Return ``results_dir`` if it is an existing directory; raise ``FileNotFoundError`` (naming
    it) if not."""
    path = os.fspath(results_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"results directory {path!r} does not exist"
                                + (" (it is a file)" if os.path.exists(path) else ""))
    return path


def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = size
    out = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA
                     if frame.shape[0] >= height and frame.shape[1] >= width else cv2.INTER_LINEAR)
    return out if out.ndim == frame.ndim else out[..., None]


def combine_videos(video_dir, output_name: str = "combined.mp4", pattern: str = "vid_*.mp4",
                   fps: float = 25, resize: bool = True) -> str:
    """Concatenate the videos in ``video_dir`` matching ``pattern`` (in sorted name order) into
    ``{video_dir}/{output_name}``; returns that path.

    The output format comes from ``output_name``'s extension (mp4, avi or gif) and plays at
    ``fps``. Frames take the size of the first video's; with ``resize=False`` a video of another
    size raises ``ValueError``. The output file itself is never an input. It is written to a
    temporary file first and moved into place when complete.

    Example: ``combine_videos("results/planet", output_name="all_training.mp4")``.
    """
    import imageio.v2 as iio

    video_dir = ensure_results_dir_exists(video_dir)
    out_path = os.path.join(video_dir, output_name)
    fmt = _video_format(out_path)
    files = [f for f in sorted(glob.glob(os.path.join(video_dir, pattern)))
             if os.path.abspath(f) != os.path.abspath(out_path) and os.path.isfile(f)]
    if not files:
        raise FileNotFoundError(f"no videos in {video_dir!r} match {pattern!r}")
    root, ext = os.path.splitext(out_path)
    partial = f"{root}.partial{ext}"
    size: tuple[int, int] | None = None
    writer = StreamingVideoWriter(partial, fps=fps, format=fmt)
    try:
        for name in files:
            reader = iio.get_reader(name)
            try:
                for frame in reader:
                    frame = np.asarray(frame)
                    if size is None:
                        size = frame.shape[:2]
                    elif frame.shape[:2] != size:
                        if not resize:
                            raise ValueError(f"{name!r} has frames of {frame.shape[:2]}, the first "
                                             f"video {size} (pass resize=True to resize them)")
                        frame = _resized(frame, size)
                    writer.write_frame(frame)
            finally:
                reader.close()
        writer.close()
        if writer.frames_written == 0:
            raise ValueError(f"the videos matching {pattern!r} in {video_dir!r} hold no frames")
        os.replace(partial, out_path)
    finally:
        writer.close()
        if os.path.exists(partial):
            os.remove(partial)
    return out_path


def _frames(x, what: str) -> np.ndarray:
    """``(T, H, W, 3)`` float in ``[0, 1]`` from a tensor / array with or without time axis."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = arr[None]
    try:
        return normalize_frames_for_saving(arr)
    except ValueError as exc:
        raise ValueError(f"save_frames: {what}: {exc}") from None


def save_frames(target, pred_prior, pred_posterior, name, n_rows: int = 5) -> str:
    """Save side-by-side target, prior-prediction, and posterior-prediction frames.

    Each input is ``(T, C, H, W)`` / ``(T, H, W, C)`` or a single frame without the time axis
    (tensor or array, uint8, ``[0, 1]`` or ``[-0.5, 0.5]``: values are normalised to
    ``[0, 1]``, see :func:`~distwm.utils.utils.normalize_frames_for_saving`). Predictions are
    resized to the target's size. The PNG ``{name}.png`` shows one ``target | prior |
    posterior`` triple per time step, ``n_rows`` triples a column. Returns the file written.
    """
    import imageio.v2 as iio

    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows <= 0:
        raise ValueError(f"save_frames: n_rows must be a positive int, got {n_rows!r}")
    truth = _frames(target, "target")
    steps, height, width = truth.shape[:3]
    panels = [truth]
    for what, pred in (("pred_prior", pred_prior), ("pred_posterior", pred_posterior)):
        frames = _frames(pred, what)
        if len(frames) != steps:
            raise ValueError(f"save_frames: {what} has {len(frames)} frames, target has {steps}")
        panels.append(np.stack([f if f.shape[:2] == (height, width) else _resized(f, (height, width))
                                for f in frames]))
    triples = np.concatenate(panels, axis=2)  # (T, H, 3W, 3)
    columns = -(-steps // n_rows)
    grid = np.ones((min(steps, n_rows) * height, columns * 3 * width, 3), np.float32)
    for t, triple in enumerate(triples):
        row, col = t % n_rows, t // n_rows
        grid[row * height:(row + 1) * height, col * 3 * width:(col + 1) * 3 * width] = triple
    path = f"{os.fspath(name)}.png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    iio.imwrite(path, np.round(grid * 255).astype(np.uint8))
    return path
