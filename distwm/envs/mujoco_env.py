"""Native MuJoCo models (MJCF XML string or file, or a compiled MJB) as distwm envs.

The adapter drives the low-level ``mujoco`` bindings: ``mujoco.MjModel`` / ``MjData``, actions
written to ``data.ctrl``, images from ``mujoco.Renderer``. A bare model has no task, so
rewards and terminations come from callbacks:

* ``reward_fn(model, data, action) -> float`` (default: 0.0),
* ``terminal_fn(model, data) -> bool`` (default: never; use ``TimeLimit`` to cut episodes).

``state`` is ``concat(qpos, qvel)`` as float32. Rendering needs ``MUJOCO_GL=egl`` (or
``osmesa``) on a machine without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gymnasium
import numpy as np

from distwm.envs.base import AdapterEnv, ObsFormat, as_size, check_obs_type, rendering_hint, to_hwc_image
from distwm.envs.wrappers import standardize_actions

__all__ = [
    "MuJoCoImageEnv",
    "RewardFn",
    "TerminalFn",
    "is_mjcf_string",
    "is_mujoco_model_path",
    "make_mujoco_env",
    "make_mujoco_env_from_config",
]

RewardFn = Callable[[Any, Any, np.ndarray], float]
TerminalFn = Callable[[Any, Any], bool]

_MODEL_SUFFIXES = {".xml": "xml_path", ".mjb": "binary_path"}
_MUJOCO_BACKENDS = ("auto", "native", "gymnasium", "robotics")


def is_mjcf_string(model: Any) -> bool:
    """Whether ``model`` is MJCF XML text (starts with ``<mujoco``, after an optional header)."""
    if not isinstance(model, str):
        return False
    text = model.lstrip()
    if text.startswith("<?xml"):
        text = text[text.find("?>") + 2:].lstrip()
    return text.startswith("<mujoco")


def is_mujoco_model_path(model: Any) -> bool:
    """Whether ``model`` names an ``.xml`` or ``.mjb`` file (existing or not)."""
    if not isinstance(model, (str, Path)) or is_mjcf_string(model):
        return False
    return Path(str(model)).suffix.lower() in _MODEL_SUFFIXES


def _load_model(xml_path, xml_string, binary_path, assets):
    import mujoco

    given = [n for n, v in (("xml_path", xml_path), ("xml_string", xml_string), ("binary_path", binary_path))
             if v is not None]
    if len(given) != 1:
        raise ValueError(
            f"Pass exactly one of xml_path, xml_string, binary_path (got {', '.join(given) or 'none'})"
        )
    assets = dict(assets or {})
    if xml_string is not None:
        return mujoco.MjModel.from_xml_string(xml_string, assets)
    path = Path(xml_path if xml_path is not None else binary_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"MuJoCo model file not found: {str(path)!r}")
    if xml_path is not None:
        return mujoco.MjModel.from_xml_path(str(path), assets)
    return mujoco.MjModel.from_binary_path(str(path), assets)


class MuJoCoImageEnv(AdapterEnv):
    """A native MuJoCo model as a Gymnasium env (see the module docstring).

    ``camera``: camera name or id (default: the free camera). ``frame_skip``: physics steps per
    env step. ``reset_noise_scale``: uniform noise added to ``qpos0`` and ``qvel`` at reset.
    ``default_control_range``: bounds of actuators without ``ctrlrange``. ``obs_type``:
    ``pixels`` (default), ``state`` or ``both`` (``auto`` means ``pixels``). The action space
    is the actuators' control range (``make_mujoco_env`` rescales it to ``[-1, 1]``).
    """

    def __init__(self, xml_path: str | Path | None = None, *, xml_string: str | None = None,
                 binary_path: str | Path | None = None, assets: dict[str, bytes] | None = None,
                 seed: int = 0, size: int | tuple[int, int] = (64, 64), camera: str | int | None = None,
                 reward_fn: RewardFn | None = None, terminal_fn: TerminalFn | None = None,
                 frame_skip: int = 1, reset_noise_scale: float = 0.0,
                 default_control_range: tuple[float, float] = (-1.0, 1.0), obs_type: str = "pixels"):
        super().__init__(seed)
        import mujoco

        check_obs_type(obs_type)
        if not isinstance(frame_skip, int) or frame_skip < 1:
            raise ValueError(f"frame_skip must be an int >= 1, got {frame_skip!r}")
        for name, fn in (("reward_fn", reward_fn), ("terminal_fn", terminal_fn)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{name} must be callable, got {fn!r}")
        self.model = _load_model(xml_path, xml_string, binary_path, assets)
        self.data = mujoco.MjData(self.model)
        self._reward_fn = reward_fn
        self._terminal_fn = terminal_fn
        self._frame_skip = frame_skip
        self._noise = float(reset_noise_scale)
        self._camera = -1 if camera is None else camera
        self._renderer = None
        obs_type = "pixels" if obs_type == "auto" else obs_type
        self._format = ObsFormat(obs_type, as_size(size), self.model.nq + self.model.nv)
        low, high = (float(v) for v in default_control_range)
        limited = self.model.actuator_ctrllimited.astype(bool)
        ranges = self.model.actuator_ctrlrange.reshape(self.model.nu, 2).astype(np.float32)
        self.action_space = gymnasium.spaces.Box(
            np.where(limited, ranges[:, 0], low).astype(np.float32),
            np.where(limited, ranges[:, 1], high).astype(np.float32),
            dtype=np.float32,
        )

    def _state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float32)

    def _observation(self) -> dict[str, np.ndarray]:
        state = self._state() if self._format.wants_state else None
        frame = self._render_frame() if self._format.wants_image else None
        return self._format(state=state, frame=frame)

    def _render_frame(self) -> np.ndarray:
        import mujoco

        if self._renderer is None:
            height, width = self._format.size
            try:
                self._renderer = mujoco.Renderer(self.model, height, width)
            except Exception as exc:
                raise rendering_hint(exc) from exc
        self._renderer.update_scene(self.data, camera=self._camera)
        return self._renderer.render()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        import mujoco

        self._episode_seed(seed)
        mujoco.mj_resetData(self.model, self.data)
        if self._noise > 0:
            self.data.qpos[:] = self.model.qpos0 + self.np_random.uniform(-self._noise, self._noise, self.model.nq)
            self.data.qvel[:] = self.np_random.uniform(-self._noise, self._noise, self.model.nv)
        mujoco.mj_forward(self.model, self.data)
        return self._observation(), {}

    def step(self, action):
        import mujoco

        action = np.asarray(action, np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"Action of shape {action.shape} does not match {self.action_space.shape}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=self._frame_skip)
        reward = float(self._reward_fn(self.model, self.data, action)) if self._reward_fn else 0.0
        terminated = bool(self._terminal_fn(self.model, self.data)) if self._terminal_fn else False
        return self._observation(), reward, terminated, False, {"time": float(self.data.time)}

    def render(self) -> np.ndarray:
        """The camera frame, uint8 ``(H, W, 3)`` at ``size``."""
        return to_hwc_image(self._render_frame())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _native_source(model: Any) -> dict[str, Any]:
    if is_mjcf_string(model):
        return {"xml_string": model}
    suffix = Path(str(model)).suffix.lower()
    return {_MODEL_SUFFIXES[suffix]: model}


def make_mujoco_env(model: str | Path | None = None, *, backend: str = "auto", seed: int = 0,
                    size: int | tuple[int, int] = (64, 64), render_mode: str | None = "rgb_array",
                    gym_kwargs: dict[str, Any] | None = None, obs_type: str = "auto", **kwargs: Any):
    """One factory for MuJoCo models and tasks (the ``mujoco`` backend factory).

    ``model``: an MJCF XML string or ``.xml`` path, an ``.mjb`` path, or a Gymnasium MuJoCo
    task id (``"Humanoid-v5"``). ``backend``: ``auto`` (infer), ``native`` (MJCF/MJB),
    ``gymnasium`` (task id) or ``robotics`` (Gymnasium-Robotics id). In native mode
    ``kwargs`` are :class:`MuJoCoImageEnv` options (``camera``, ``reward_fn``,
    ``terminal_fn``, ``frame_skip``, ``reset_noise_scale``, ``assets``, ...) and
    ``obs_type="auto"`` means ``pixels``; in task mode they go to ``gymnasium.make``.
    Actions are rescaled to ``[-1, 1]``.
    """
    if backend not in _MUJOCO_BACKENDS:
        raise ValueError(f"Unknown MuJoCo backend {backend!r}; valid: {', '.join(_MUJOCO_BACKENDS)}")
    if model is None:
        raise ValueError("make_mujoco_env needs a model: an MJCF string, an .xml/.mjb path or a task id")
    if backend == "auto":
        backend = "native" if (is_mjcf_string(model) or is_mujoco_model_path(model)) else "gymnasium"
    if backend == "native":
        if not (is_mjcf_string(model) or is_mujoco_model_path(model)):
            raise ValueError(f"Native MuJoCo needs an MJCF string or an .xml/.mjb path, got {model!r}")
        check_obs_type(obs_type)
        env = MuJoCoImageEnv(**_native_source(model), seed=seed, size=size, obs_type=obs_type, **kwargs)
        return standardize_actions(env)
    if backend == "robotics":
        from distwm.envs.robotics_env import make_robotics_env

        return make_robotics_env(str(model), seed=seed, size=size, render_mode=render_mode,
                                 gym_kwargs=gym_kwargs, obs_type=obs_type, **kwargs)
    from distwm.envs.gym_env import make_gym_env

    return make_gym_env(str(model), seed=seed, size=size, render_mode=render_mode, obs_type=obs_type,
                        gym_kwargs=gym_kwargs, **kwargs)


def make_mujoco_env_from_config(args: Any, size: int | tuple[int, int]):
    """Build a MuJoCo env from an ``RLConfig``-like object.

    Reads ``args.env`` (MJCF string, ``.xml``/``.mjb`` path or task id), ``args.seed``,
    ``args.obs_type`` and ``args.env_kwargs`` (options of :func:`make_mujoco_env`).
    """
    model = getattr(args, "env", None)
    if model is None:
        raise ValueError(f"{type(args).__name__} has no 'env' to build a MuJoCo env from")
    options = dict(getattr(args, "env_kwargs", None) or {})
    options.setdefault("seed", getattr(args, "seed", 0))
    options.setdefault("obs_type", getattr(args, "obs_type", "auto"))
    return make_mujoco_env(model, size=size, **options)
