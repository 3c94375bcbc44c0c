"""Video files: :func:`write_video`, :func:`save_video` and :class:`StreamingVideoWriter`
(GIF through Pillow, mp4 / avi through imageio-ffmpeg), re-exported by
:mod:`distwm.utils.utils` under the seed's names. Nothing heavy is imported at import time.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from distwm.utils.utils import _to_uint8_frames, normalize_frames_for_saving

__all__ = ["VIDEO_FORMATS", "StreamingVideoWriter", "save_video", "write_video"]

_log = logging.getLogger(__name__)

VIDEO_FORMATS = ("gif", "mp4", "avi")


def _video_format(path: str, fmt: str | None = None) -> str:
    fmt = (fmt or os.path.splitext(path)[1].lstrip(".")).lower()
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"video format {fmt!r} is not supported; choose one of {VIDEO_FORMATS}")
    return fmt


def _open_video_writer(path: str, fps: float, fmt: str):
    """An imageio writer for ``path``: Pillow for GIF, ffmpeg (imageio-ffmpeg) for mp4/avi."""
    import imageio.v2 as iio

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if fmt == "gif":
        return iio.get_writer(path, format="GIF", mode="I", duration=1000.0 / fps, loop=0)
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"writing {fmt} video needs imageio-ffmpeg (`pip install imageio-ffmpeg`); "
            "GIF works without it"
        ) from exc
    codec = "libx264" if fmt == "mp4" else "mpeg4"
    return iio.get_writer(
        path, format="FFMPEG", mode="I", fps=fps, codec=codec, macro_block_size=1
    )


def write_video(frames, path: str | os.PathLike, fps: float = 20, fmt: str | None = None) -> str:
    """Write frames (any layout :func:`normalize_frames_for_saving` accepts) to ``path``.

    The format comes from ``fmt`` or the file extension (gif, mp4, avi). Creates the parent
    directory. Returns the path written.
    """
    path = os.fspath(path)
    fmt = _video_format(path, fmt)
    data = _to_uint8_frames(frames)
    if data.shape[0] == 0:
        raise ValueError(f"no frames to write to {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    writer = _open_video_writer(path, fps, fmt)
    try:
        for frame in data:
            writer.append_data(frame)
    finally:
        writer.close()
    return path


def save_video(frames, path: str | os.PathLike, name: str, fps: float = 25) -> str:
    """Write ``{path}/{name}.mp4`` and a debug PNG ``{path}/{name}_debug_frame.png`` (first frame).

    ``frames``: ``(T, C, H, W)`` or ``(T, H, W, C)``, float in ``[0, 1]`` (or uint8 /
    ``[-0.5, 0.5]``, see :func:`normalize_frames_for_saving`). Per-channel statistics are
    logged at INFO level. Returns the video path.
    """
    import imageio.v2 as iio

    path = os.fspath(path)
    data = normalize_frames_for_saving(frames)
    stats = ", ".join(
        f"{c}: min={data[..., i].min():.3f} mean={data[..., i].mean():.3f} max={data[..., i].max():.3f}"
        for i, c in enumerate("RGB")
    )
    _log.info("save_video %s: %d frames %dx%d; %s", name, data.shape[0], data.shape[2],
              data.shape[1], stats)
    video_path = write_video(data, os.path.join(path, f"{name}.mp4"), fps=fps)
    iio.imwrite(os.path.join(path, f"{name}_debug_frame.png"),
                np.round(data[0] * 255).astype(np.uint8))
    return video_path


class StreamingVideoWriter:
    """Write frames one at a time to a video file (nothing is opened until the first frame).

    Args:
        path: output file path.
        fps: frames per second.
        frame_shape: ``(height, width)`` every frame must have; by default the first frame's.
        format: ``'mp4'``, ``'avi'`` or ``'gif'``.
    """

    def __init__(self, path, fps: float = 20, frame_shape=None, format: str = "mp4"):
        self.path = os.fspath(path)
        self.format = _video_format(self.path, format)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps = fps
        self.frame_shape = tuple(frame_shape) if frame_shape is not None else None
        if self.frame_shape is not None and len(self.frame_shape) != 2:
            raise ValueError(f"frame_shape must be (height, width), got {frame_shape!r}")
        self.frames_written = 0
        self._writer = None
        self._closed = False

    def write_frame(self, frame) -> None:
        """Write one frame: ``(H, W, C)`` or ``(H, W)``, uint8 or float in ``[0, 1]``."""
        if self._closed:
            raise RuntimeError(f"StreamingVideoWriter for {self.path!r} is closed")
        arr = np.asarray(frame.detach().cpu().numpy() if hasattr(frame, "detach") else frame)
        if arr.ndim not in (2, 3):
            raise ValueError(f"a frame must be (H, W, C) or (H, W), got shape {arr.shape}")
        rgb = _to_uint8_frames(arr[None])[0]
        if self.frame_shape is None:
            self.frame_shape = tuple(rgb.shape[:2])
        elif tuple(rgb.shape[:2]) != self.frame_shape:
            raise ValueError(
                f"frame of size {rgb.shape[:2]} does not match frame_shape {self.frame_shape}"
            )
        if self._writer is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._writer = _open_video_writer(self.path, self.fps, self.format)
        self._writer.append_data(rgb)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True

    def __enter__(self) -> "StreamingVideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
