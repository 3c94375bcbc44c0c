"""Frames from files, and frames to clips (numpy and OpenCV; no torch).

The video datasets (:mod:`distwm.datasets.video_datasets`, :mod:`distwm.datasets.tinyworlds`)
read frames as ``(T, H, W, C)`` arrays with :func:`read_video_frames`, :func:`read_image` or
from arrays whose layout :func:`to_thwc` infers, then :func:`frames_to_clip` samples
``num_frames`` of them (:func:`sample_frame_indices`), scales them to pixel values in
``[0, 255]`` (:func:`pixel_scale`) and resizes them (:func:`resize_frames`).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "CHANNEL_COUNTS", "to_thwc", "sample_frame_indices", "pixel_scale", "resize_frames",
    "frames_to_clip", "read_video_frames", "read_image", "natural_sort_key", "npz_member_shape",
    "npz_keys",
]

#: channel counts a frame may have (grey, RGB, RGBA; alpha is dropped)
CHANNEL_COUNTS = (1, 3, 4)


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("reading and resizing video frames needs OpenCV: "
                          "pip install opencv-python-headless") from exc
    return cv2


def to_thwc(array: np.ndarray, what: str = "clip") -> np.ndarray:
    """A clip as ``(T, H, W, C)``: ``(T, H, W)`` (grey), ``(T, H, W, C)`` or ``(T, C, H, W)``
    with C in :data:`CHANNEL_COUNTS` (channel-last wins when both could be); RGBA loses alpha."""
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    elif array.ndim != 4:
        raise ValueError(f"{what} must be (T, H, W), (T, H, W, C) or (T, C, H, W), got shape {array.shape}")
    elif array.shape[-1] not in CHANNEL_COUNTS:
        if array.shape[1] not in CHANNEL_COUNTS:
            raise ValueError(f"{what} of shape {array.shape} has no channel axis of size "
                             f"{CHANNEL_COUNTS} (expected (T, H, W, C) or (T, C, H, W))")
        array = array.transpose(0, 2, 3, 1)
    return array[..., :3] if array.shape[-1] == 4 else array


def sample_frame_indices(total: int, num_frames: int) -> np.ndarray:
    """``num_frames`` evenly spaced indices into ``total`` frames, first and last included
    (repeating frames when ``total < num_frames``)."""
    if total < 1:
        raise ValueError("a clip needs at least one frame, got none")
    return np.linspace(0, total - 1, num_frames).round().astype(np.int64)


def pixel_scale(frames: np.ndarray) -> np.ndarray:
    """Frames as float32 pixel values in ``[0, 255]``: integers as they are, floats in
    ``[0, 1]`` (max <= 1) times 255, other floats as they are."""
    frames = np.asarray(frames)
    if np.issubdtype(frames.dtype, np.floating):
        frames = frames.astype(np.float32)
        if frames.size and float(frames.max()) <= 1.0:
            frames = frames * 255.0
        return frames
    return frames.astype(np.float32)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """``(T, H, W, C)`` float32 frames resized to ``(T, size, size, C)`` (area averaging when
    shrinking, bilinear when enlarging)."""
    if frames.shape[1:3] == (size, size):
        return frames
    cv2 = _cv2()
    shrink = size < frames.shape[1] or size < frames.shape[2]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = [cv2.resize(frame, (size, size), interpolation=interpolation) for frame in frames]
    return np.stack(out).reshape(len(frames), size, size, frames.shape[-1])


def frames_to_clip(frames: np.ndarray, num_frames: int, image_size: int) -> np.ndarray:
    """``(T', H, W, C)`` frames as a ``(C, num_frames, image_size, image_size)`` float32 clip
    of pixel values in ``[0, 255]`` (frames evenly sampled when ``T' != num_frames``)."""
    if len(frames) != num_frames:
        frames = frames[sample_frame_indices(len(frames), num_frames)]
    frames = resize_frames(pixel_scale(frames), image_size)
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))


def _decode(path: Path, wanted: np.ndarray | None) -> tuple[dict[int, np.ndarray], int]:
    """``({index: RGB frame} for the ``wanted`` indices, frames decoded)``; ``wanted=None``
    only counts the frames (nothing is kept)."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"OpenCV cannot open the video {path}")
    keep = set() if wanted is None else set(wanted.tolist())
    last = None if wanted is None else int(wanted.max())
    frames, position = {}, 0
    try:
        while (last is None or position <= last) and capture.grab():
            if position in keep:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                frames[position] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            position += 1
    finally:
        capture.release()
    return frames, position


def read_video_frames(path, num_frames: int) -> np.ndarray:
    """``num_frames`` evenly spaced RGB frames ``(num_frames, H, W, 3)`` uint8 of the video at
    ``path``, decoding only the frames it keeps (after a counting pass when the container
    does not say how many frames it has, or says too many)."""
    cv2 = _cv2()
    path = Path(path)
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if count > 0:
        wanted = sample_frame_indices(count, num_frames)
        frames, decoded = _decode(path, wanted)
        if len(frames) == len(np.unique(wanted)):
            return np.stack([frames[int(i)] for i in wanted])
    else:
        _, decoded = _decode(path, None)
    if decoded == 0:
        raise ValueError(f"no frames could be decoded from the video {path}")
    wanted = sample_frame_indices(decoded, num_frames)
    frames, _ = _decode(path, wanted)
    return np.stack([frames[int(i)] for i in wanted])


def read_image(path) -> np.ndarray:
    """The image at ``path`` as ``(H, W, 3)`` uint8 RGB."""
    cv2 = _cv2()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"OpenCV cannot read the image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def natural_sort_key(path: Path) -> tuple:
    """Sort key putting ``frame2.png`` before ``frame10.png``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", Path(path).name) if part)


def npz_member_shape(path, key: str) -> tuple[int, ...]:
    """The shape of array ``key`` in the ``.npz`` at ``path``, read from its header alone."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _, _ = reader(member)
    return tuple(shape)


def npz_keys(path) -> Sequence[str]:
    """The array names of the ``.npz`` at ``path``, in archive order."""
    with zipfile.ZipFile(path) as archive:
        return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
