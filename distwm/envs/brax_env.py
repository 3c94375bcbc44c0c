"""Brax tasks (JAX physics, run here on CPU JAX) as distwm envs. Optional extra: ``brax``.

Brax environments are functional: ``reset(key) -> state`` and ``step(state, action) -> state``.
The adapter keeps the state between calls, jit-compiles both functions once, and converts
``state.obs`` to ``state`` float32. Images are rendered with MuJoCo from the System's
``mj_model`` (the same renderer as ``brax.io.image``); envs without one support only
``obs_type="state"``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import gymnasium
import numpy as np

from distwm._names import unknown_name_error
from distwm.envs._optional import require
from distwm.envs.base import AdapterEnv, ObsFormat, as_size, check_obs_type, rendering_hint, to_hwc_image

__all__ = ["BraxImageEnv", "brax_env_name", "list_brax_envs", "make_brax_env"]

_PREFIXES = ("brax/", "brax:")


def brax_env_name(env_id: str) -> str | None:
    """``ant`` for ``brax/ant`` or ``brax:ant``; ``None`` for ids without the prefix."""
    if isinstance(env_id, str):
        for prefix in _PREFIXES:
            if env_id.lower().startswith(prefix) and len(env_id) > len(prefix):
                return env_id[len(prefix):]
    return None


def _import_brax_envs(suppress_warp_warnings: bool = True):
    quiet = contextlib.redirect_stdout(io.StringIO()) if suppress_warp_warnings else contextlib.nullcontext()
    with quiet, warnings.catch_warnings():
        if suppress_warp_warnings:
            warnings.simplefilter("ignore")
        return require("brax.envs", "brax", "Brax environments")


def list_brax_envs() -> list[str]:
    """Registered Brax env names as ``brax/<name>`` ids (imports brax and jax)."""
    envs = _import_brax_envs()
    return [f"brax/{name}" for name in sorted(getattr(envs, "_envs", {}))]


def _flat_obs(obs: Any) -> np.ndarray:
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k], np.float32).ravel() for k in sorted(obs)])
    return np.asarray(obs, np.float32).ravel()


class BraxImageEnv(AdapterEnv):
    """A Brax env as a Gymnasium env with dict observations and ``[-1, 1]`` actions.

    ``env``: a Brax env name (``"ant"``, ``"brax/ant"``) or a built env exposing
    ``reset(rng)`` / ``step(state, action)``. ``backend``: Brax pipeline (``generalized``,
    ``positional``, ``spring``, ``mjx``; ``None``: the env's default). ``episode_length``:
    steps before ``truncated`` (``None``: 1000). ``auto_reset``: start a new episode inside
    ``step`` when one ends (the returned observation is then the new episode's first and
    ``info["final_observation"]`` the last one). ``obs_type``: ``pixels`` (default), ``state``,
    ``both`` or ``auto`` (pixels when the env has a MuJoCo model to render, else state). ``env_kwargs`` go to ``brax.envs.get_environment``.
    """

    def __init__(self, env: Any, seed: int = 0, size: int | tuple[int, int] = (64, 64),
                 backend: str | None = None, episode_length: int | None = None, auto_reset: bool = False,
                 jit: bool = True, suppress_warp_warnings: bool = True, obs_type: str = "pixels",
                 camera: str | int | None = None, **env_kwargs: Any):
        super().__init__(seed)
        check_obs_type(obs_type)
        envs = _import_brax_envs(suppress_warp_warnings)
        import jax

        if isinstance(env, str):
            name = brax_env_name(env) or env
            known = sorted(getattr(envs, "_envs", {}))
            if known and name not in known:
                raise unknown_name_error("Brax env", name, known)
            if backend is not None:
                env_kwargs["backend"] = backend
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                env = envs.get_environment(name, **env_kwargs)
        elif not (hasattr(env, "reset") and hasattr(env, "step")):
            raise ValueError(f"env must be a Brax env name or a Brax env, got {type(env).__name__}")
        if episode_length is not None and (not isinstance(episode_length, int) or episode_length < 1):
            raise ValueError(f"episode_length must be a positive int or None, got {episode_length!r}")
        self.brax_env = env
        self._episode_length = episode_length or 1000
        self._auto_reset = auto_reset
        self._reset_fn = jax.jit(env.reset) if jit else env.reset
        self._step_fn = jax.jit(env.step) if jit else env.step
        self._key = jax.random.PRNGKey(0 if seed is None else int(seed))
        self._state = None
        self._steps = 0
        self._camera = -1 if camera is None else camera
        self._renderer = None
        self._mj_data = None
        obs_size = env.observation_size
        state_dim = int(sum(np.prod(s) for s in obs_size.values())) if isinstance(obs_size, dict) else int(obs_size)
        renderable = getattr(getattr(env, "sys", None), "mj_model", None) is not None
        if obs_type == "auto":
            obs_type = "pixels" if renderable else "state"
        if obs_type in ("pixels", "both") and not renderable:
            raise ValueError(
                f"This Brax env ({type(env).__name__}) has no MuJoCo model to render images from; "
                "use obs_type='state'"
            )
        self._format = ObsFormat(obs_type, as_size(size), state_dim)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (int(env.action_size),), np.float32)

    @property
    def max_episode_steps(self) -> int:
        return self._episode_length

    def _render_frame(self) -> np.ndarray:
        import mujoco

        mj_model = self.brax_env.sys.mj_model
        if self._renderer is None:
            height, width = self._format.size
            try:
                self._renderer = mujoco.Renderer(mj_model, height, width)
            except Exception as exc:
                raise rendering_hint(exc) from exc
            self._mj_data = mujoco.MjData(mj_model)
        pipeline_state = self._state.pipeline_state
        self._mj_data.qpos[:] = np.asarray(pipeline_state.q)
        self._mj_data.qvel[:] = np.asarray(pipeline_state.qd)
        mujoco.mj_forward(mj_model, self._mj_data)
        self._renderer.update_scene(self._mj_data, camera=self._camera)
        return self._renderer.render()

    def _observation(self) -> dict[str, np.ndarray]:
        state = _flat_obs(self._state.obs) if self._format.wants_state else None
        frame = self._render_frame() if self._format.wants_image else None
        return self._format(state=state, frame=frame)

    def _new_episode(self) -> None:
        import jax

        self._key, key = jax.random.split(self._key)
        self._state = self._reset_fn(key)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        import jax

        seed = self._episode_seed(seed)
        if seed is not None:
            self._key = jax.random.PRNGKey(int(seed))
        self._new_episode()
        return self._observation(), {}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("BraxImageEnv: call reset() before step()")
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        if action.shape != self.action_space.shape:
            raise ValueError(f"Action of shape {action.shape} does not match {self.action_space.shape}")
        self._state = self._step_fn(self._state, action)
        self._steps += 1
        reward = float(self._state.reward)
        done = bool(float(self._state.done) > 0.5)
        brax_truncation = bool(float(self._state.info.get("truncation", 0.0)) > 0.5)
        terminated = done and not brax_truncation
        truncated = (done and brax_truncation) or (not done and self._steps >= self._episode_length)
        obs = self._observation()
        info: dict[str, Any] = {}
        if self._auto_reset and (terminated or truncated):
            info["final_observation"] = obs
            self._new_episode()
            obs = self._observation()
        return obs, reward, terminated, truncated, info

    def render(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """The current frame, uint8 ``(H, W, 3)`` at ``size``."""
        if self._state is None:
            raise RuntimeError("BraxImageEnv: call reset() before render()")
        return to_hwc_image(self._render_frame())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def make_brax_env(env: Any, *, seed: int = 0, size: int | tuple[int, int] = (64, 64),
                  obs_type: str = "auto", **kwargs: Any) -> BraxImageEnv:
    """The ``brax`` backend factory: ``env`` is ``ant``, ``brax/ant`` or a Brax env object.

    ``obs_type="auto"`` means ``pixels`` for envs with a MuJoCo model, else ``state``.
    Other ``kwargs`` go to :class:`BraxImageEnv`.
    """
    return BraxImageEnv(env, seed=seed, size=size, obs_type=obs_type, **kwargs)
