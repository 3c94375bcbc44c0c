"""What every distwm env adapter shares: the observation format and seeding.

An adapter emits a dict observation with ``image`` (uint8, ``(C, H, W)``) and/or ``state``
(float32, ``(D,)``), chosen by ``obs_type``:

* ``state``: the simulator's vector observation only (nothing is rendered);
* ``pixels``: only the rendered (or native) image;
* ``both``: both keys;
* ``auto``: the backend's natural choice, resolved by each adapter.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium
import numpy as np

__all__ = [
    "OBS_TYPES",
    "AdapterEnv",
    "ObsFormat",
    "as_size",
    "check_obs_type",
    "rendering_hint",
    "to_chw_image",
    "to_hwc_image",
]

OBS_TYPES = ("auto", "state", "pixels", "both")


def check_obs_type(obs_type: str, allowed: Sequence[str] = OBS_TYPES) -> str:
    """Return ``obs_type`` if it is one of ``allowed``; otherwise raise ``ValueError``."""
    if obs_type not in allowed:
        raise ValueError(f"Unknown obs_type {obs_type!r}; valid: {', '.join(allowed)}")
    return obs_type


def as_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int or a pair; raises ``ValueError`` for anything else."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return height, width


def to_hwc_image(frame: Any, size: tuple[int, int] | None = None,
                 interpolation: str = "area") -> np.ndarray:
    """An ``(H, W, C)`` uint8 frame from HW/HWC uint8 or float-in-[0, 1] input, resized to ``size``.

    ``interpolation``: ``area`` (anti-aliased, for downscaling camera frames) or ``nearest``.
    """
    image = np.asarray(frame)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"Expected an image of shape (H, W) or (H, W, C), got shape {image.shape}")
    if image.dtype != np.uint8:
        scale = 255.0 if image.size and float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    if size is not None and image.shape[:2] != tuple(size):
        import cv2

        flags = {"area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
        if interpolation not in flags:
            raise ValueError(f"Unknown interpolation {interpolation!r}; valid: {', '.join(flags)}")
        flag = flags[interpolation]
        if interpolation == "area" and (size[0] > image.shape[0] or size[1] > image.shape[1]):
            flag = cv2.INTER_LINEAR
        channels = image.shape[2]
        image = cv2.resize(image, (size[1], size[0]), interpolation=flag)
        if image.ndim == 2:
            image = image[:, :, None]
        assert image.shape[2] == channels
    return np.ascontiguousarray(image)


def to_chw_image(frame: Any, size: tuple[int, int] | None = None,
                 interpolation: str = "area") -> np.ndarray:
    """Like :func:`to_hwc_image` but channel-first: ``(C, H, W)`` uint8."""
    return np.ascontiguousarray(to_hwc_image(frame, size, interpolation).transpose(2, 0, 1))


def rendering_hint(exc: BaseException) -> RuntimeError:
    """A ``RuntimeError`` explaining how to get off-screen MuJoCo rendering working."""
    return RuntimeError(
        f"Off-screen rendering failed ({type(exc).__name__}: {exc}). On a machine without a "
        "display set MUJOCO_GL=egl (GPU or Mesa EGL: apt-get install libegl1 libegl-mesa0 "
        "libgl1-mesa-dri) or MUJOCO_GL=osmesa before importing mujoco/dm_control, or use "
        "obs_type='state'."
    )


class ObsFormat:
    """Builds observation dicts and their ``gymnasium.spaces.Dict`` for one adapter."""

    def __init__(self, obs_type: str, size: tuple[int, int], state_dim: int | None,
                 channels: int = 3):
        check_obs_type(obs_type, ("state", "pixels", "both"))
        self.obs_type = obs_type
        self.size = size
        self.channels = channels
        self.wants_state = obs_type in ("state", "both")
        self.wants_image = obs_type in ("pixels", "both")
        if self.wants_state and state_dim is None:
            raise ValueError("obs_type 'state'/'both' needs a vector observation, but this env has none")
        self.state_dim = state_dim
        spaces: dict[str, gymnasium.Space] = {}
        if self.wants_image:
            spaces["image"] = gymnasium.spaces.Box(0, 255, (channels, *size), np.uint8)
        if self.wants_state:
            spaces["state"] = gymnasium.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        self.space = gymnasium.spaces.Dict(spaces)

    def __call__(self, state: Any = None, frame: Any = None) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        if self.wants_image:
            obs["image"] = to_chw_image(frame, self.size)
        if self.wants_state:
            obs["state"] = np.asarray(state, dtype=np.float32).reshape(self.state_dim)
        return obs


class AdapterEnv(gymnasium.Env):
    """Base of the distwm adapters: dict observations, a seed used by the first reset.

    Subclasses set ``self._format`` (an :class:`ObsFormat`) and ``self.action_space``.
    ``reset(seed=None)`` reseeds from the constructor's ``seed`` on the first call and
    continues the random stream afterwards, like Gymnasium's own environments.
    """

    metadata = {"render_modes": ["rgb_array"]}
    render_mode = "rgb_array"
    _format: ObsFormat

    def __init__(self, seed: int | None = 0):
        super().__init__()
        self._seed = seed
        self._reset_count = 0

    @property
    def observation_space(self) -> gymnasium.spaces.Dict:  # type: ignore[override]
        return self._format.space

    @property
    def obs_type(self) -> str:
        return self._format.obs_type

    def _episode_seed(self, seed: int | None) -> int | None:
        """The seed this reset should apply (``None``: keep the current random stream)."""
        if seed is None and self._reset_count == 0:
            seed = self._seed
        self._reset_count += 1
        if seed is not None:
            super().reset(seed=int(seed))
            self.action_space.seed(int(seed))
        return seed
