"""Gymnasium-Robotics tasks (Fetch, Shadow Hand, mazes, Adroit, Franka Kitchen, ...).

Optional extra: ``pip install distwm[robotics]``. Goal-conditioned ``Dict`` observations
(``observation``, ``achieved_goal``, ``desired_goal``) are flattened into ``state``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from typing import Any

import gymnasium

from distwm._names import unknown_name_error
from distwm.envs._optional import is_installed, require

__all__ = [
    "is_moved_mujoco_error",
    "is_robotics_spec",
    "list_gymnasium_robotics_envs",
    "make_gymnasium_env_with_robotics_fallback",
    "make_robotics_env",
    "register_gymnasium_robotics_envs",
]

_MOVED_MESSAGE = "have been moved to the gymnasium-robotics project"


def is_moved_mujoco_error(exc: BaseException) -> bool:
    """Whether Gymnasium reported that a MuJoCo v2/v3 task moved to gymnasium-robotics."""
    return _MOVED_MESSAGE in str(exc) or ("mujoco v2 and v3" in str(exc).lower() and "moved" in str(exc))


def register_gymnasium_robotics_envs() -> None:
    """Import Gymnasium-Robotics so that its tasks are in Gymnasium's registry.

    Current versions register on import; older plugin-style installs need
    ``gymnasium.register_envs``. Raises ``ImportError`` naming the extra when it is missing.
    """
    # the package prints release notices on import; keep them off the user's terminal
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        module = require("gymnasium_robotics", "robotics", "Gymnasium-Robotics environments")
        gymnasium.register_envs(module)


def is_robotics_spec(spec: gymnasium.envs.registration.EnvSpec) -> bool:
    """Whether a Gymnasium registry entry comes from gymnasium-robotics."""
    entry = spec.entry_point
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    return str(module).startswith("gymnasium_robotics")


def list_gymnasium_robotics_envs() -> list[str]:
    """Every id that the installed gymnasium-robotics registers ([] when it is not installed)."""
    if not is_installed("gymnasium_robotics"):
        return []
    register_gymnasium_robotics_envs()
    return sorted(env_id for env_id, spec in gymnasium.registry.items() if is_robotics_spec(spec))


def make_gymnasium_env_with_robotics_fallback(env: str, *, render_mode: str | None = "rgb_array",
                                              gym_kwargs: dict[str, Any] | None = None,
                                              **kwargs: Any) -> gymnasium.Env:
    """``gymnasium.make(env)``; if the id is unknown or a moved MuJoCo task, register
    Gymnasium-Robotics (when installed) and try once more."""
    options = {**(gym_kwargs or {}), **kwargs}
    try:
        return gymnasium.make(env, render_mode=render_mode, **options)
    except (gymnasium.error.NameNotFound, gymnasium.error.VersionNotFound, ImportError) as exc:
        moved = is_moved_mujoco_error(exc)
        if not (moved or isinstance(exc, gymnasium.error.Error)):
            raise
        if not is_installed("gymnasium_robotics"):
            if moved:
                raise ImportError(
                    f"{env!r} is a MuJoCo v2/v3 task that Gymnasium moved to gymnasium-robotics. "
                    "Install it with: pip install distwm[robotics] (or use the -v5 task)"
                ) from exc
            raise
        register_gymnasium_robotics_envs()
        return gymnasium.make(env, render_mode=render_mode, **options)


def make_robotics_env(env: str, *, seed: int = 0, size: int | tuple[int, int] = (64, 64),
                      render_mode: str | None = "rgb_array", gym_kwargs: dict[str, Any] | None = None,
                      obs_type: str = "auto", **kwargs: Any):
    """Create a :class:`~distwm.envs.gym_env.GymImageEnv` for a Gymnasium-Robotics task
    (the ``robotics`` backend factory).

    ``obs_type``: ``auto``/``state`` (flattened goal dict, nothing rendered), ``pixels`` or
    ``both``. Extra ``kwargs`` go to ``gymnasium.make``.
    """
    from distwm.envs.gym_env import make_gym_env

    register_gymnasium_robotics_envs()
    spec = gymnasium.registry.get(env)
    if spec is None or not is_robotics_spec(spec):
        raise unknown_name_error("Gymnasium-Robotics env", env, list_gymnasium_robotics_envs())
    made = make_gym_env(env, seed=seed, size=size, render_mode=render_mode, obs_type=obs_type,
                        gym_kwargs=gym_kwargs, **kwargs)
    remove_maze_xml(made.env.unwrapped)
    return made


def remove_maze_xml(env: Any) -> None:
    """Delete the XML file a Gymnasium-Robotics maze env writes into the temp folder (one per
    env, never removed upstream); MuJoCo has loaded the model from it by the time it returns."""
    path = getattr(env, "tmp_xml_file_path", None)
    if isinstance(path, str) and os.path.basename(path).endswith(".xml"):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
