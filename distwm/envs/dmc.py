"""DeepMind Control Suite tasks (``walker-walk``, ``cartpole-swingup``, ``ball_in_cup-catch``).

``state`` is the flattened concatenation of the task's observation dict (in the suite's key
order); ``image`` is the physics camera rendered at ``size``. DMC's time limit (usually 1000
steps) ends an episode with ``truncated=True`` (discount 1); ``terminated`` is set only when
the task ends the episode with discount 0. Rendering needs ``MUJOCO_GL=egl`` (or ``osmesa``)
on a machine without a display.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium
import numpy as np

from distwm.envs.base import AdapterEnv, ObsFormat, as_size, check_obs_type, rendering_hint, to_hwc_image
from distwm.envs.wrappers import standardize_actions

__all__ = ["DMC_DOMAINS", "DeepMindControlEnv", "list_dmc_envs", "make_dmc_env", "parse_dmc_id"]

#: Domains of ``dm_control.suite`` (checked against the installed suite by the tests), so that
#: recognising a DMC id does not import dm_control.
DMC_DOMAINS = (
    "acrobot", "ball_in_cup", "cartpole", "cheetah", "dog", "finger", "fish", "hopper", "humanoid",
    "humanoid_CMU", "lqr", "manipulator", "pendulum", "point_mass", "quadruped", "reacher",
    "stacker", "swimmer", "walker",
)
_DOMAIN_ALIASES = {"cup": "ball_in_cup"}
_GYM_VERSION = re.compile(r"-v\d+$")


def parse_dmc_id(name: str) -> tuple[str, str] | None:
    """``(domain, task)`` for a DMC id such as ``walker-walk`` or ``ball_in_cup-catch``.

    Case, ``-`` and ``_`` are interchangeable (``ball-in-cup-catch`` works); ``cup`` stands
    for ``ball_in_cup``. Returns ``None`` when ``name`` does not start with a DMC domain or
    looks like a Gymnasium id (``CartPole-v1``). The task name is not checked here.
    """
    if not isinstance(name, str) or _GYM_VERSION.search(name):
        return None
    key = name.strip().lower().replace("-", "_")
    domains = {d.lower(): d for d in DMC_DOMAINS}
    domains.update(_DOMAIN_ALIASES)
    for prefix in sorted(domains, key=len, reverse=True):
        if key.startswith(prefix + "_") and len(key) > len(prefix) + 1:
            return domains[prefix], key[len(prefix) + 1:]
    return None


def _suite():
    """``dm_control.suite``, without the GLFW "no DISPLAY" warning that dm_control emits on
    import when MUJOCO_GL is unset (rendering errors explain the fix if pixels are requested)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*DISPLAY environment variable is missing")
        from dm_control import suite
    return suite


def list_dmc_envs() -> list[str]:
    """The suite's benchmarking tasks as ``domain-task`` ids (imports dm_control)."""
    suite = _suite()
    return [f"{domain}-{task}" for domain, task in suite.BENCHMARKING]


def _load(domain: str, task: str, seed: int | None):
    suite = _suite()
    tasks = suite.TASKS_BY_DOMAIN.get(domain, ())
    if task not in tasks:
        raise ValueError(
            f"Unknown DMC task {task!r} for domain {domain!r}; valid tasks: {', '.join(tasks)}"
        )
    return suite.load(domain, task, task_kwargs={"random": seed})


def _spec_box(spec) -> gymnasium.spaces.Box:
    low = np.broadcast_to(np.asarray(spec.minimum, np.float32), spec.shape)
    high = np.broadcast_to(np.asarray(spec.maximum, np.float32), spec.shape)
    return gymnasium.spaces.Box(low, high, dtype=np.float32)


class DeepMindControlEnv(AdapterEnv):
    """A DMC task as a Gymnasium env with dict observations.

    ``name``: ``domain-task``. ``camera``: camera id or name (default 2 for quadruped, else 0).
    ``obs_type``: ``both`` (default: ``state`` and ``image``), ``state`` or ``pixels``
    (``auto`` means ``both`` here).
    """

    def __init__(self, name: str, seed: int | None, size: int | tuple[int, int] = (64, 64),
                 camera: int | str | None = None, obs_type: str = "both"):
        super().__init__(seed)
        parsed = parse_dmc_id(name)
        if parsed is None:
            raise ValueError(
                f"Not a DeepMind Control id: {name!r}; expected 'domain-task' with a domain in "
                f"{', '.join(DMC_DOMAINS)}"
            )
        self._domain, self._task = parsed
        check_obs_type(obs_type)
        obs_type = "both" if obs_type == "auto" else obs_type
        self._env = _load(self._domain, self._task, seed)
        self._camera = (2 if self._domain == "quadruped" else 0) if camera is None else camera
        state_dim = int(sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values()))
        self._format = ObsFormat(obs_type, as_size(size), state_dim)
        self.action_space = _spec_box(self._env.action_spec())

    @property
    def name(self) -> str:
        return f"{self._domain}-{self._task}"

    @property
    def max_episode_steps(self) -> int:
        limit = getattr(self._env, "_step_limit", None)
        return int(limit) if limit is not None and np.isfinite(limit) else 1000

    @property
    def physics(self):
        return self._env.physics

    def _observation(self, time_step) -> dict[str, np.ndarray]:
        state = None
        if self._format.wants_state:
            state = np.concatenate([np.asarray(v, np.float32).ravel() for v in time_step.observation.values()])
        frame = self._render_frame() if self._format.wants_image else None
        return self._format(state=state, frame=frame)

    def _render_frame(self) -> np.ndarray:
        height, width = self._format.size
        try:
            return self._env.physics.render(height, width, camera_id=self._camera)
        except Exception as exc:  # dm_control raises several GL error types
            raise rendering_hint(exc) from exc

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = self._episode_seed(seed)
        if seed is not None:
            self._env.task.random.seed(int(seed))
        time_step = self._env.reset()
        return self._observation(time_step), {"discount": np.float32(1.0)}

    def step(self, action):
        action = np.asarray(action, np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"Action of shape {action.shape} does not match {self.action_space.shape}")
        time_step = self._env.step(action)
        discount = np.float32(1.0 if time_step.discount is None else time_step.discount)
        last = time_step.last()
        terminated = bool(last and discount == 0.0)
        truncated = bool(last and not terminated)
        reward = float(time_step.reward or 0.0)
        return self._observation(time_step), reward, terminated, truncated, {"discount": discount}

    def render(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """The camera frame, uint8 ``(H, W, 3)`` at ``size``."""
        return to_hwc_image(self._render_frame())

    def close(self) -> None:
        self._env.close()


def make_dmc_env(env_id: str, *, seed: int = 0, size: int | tuple[int, int] = (64, 64),
                 camera: int | str | None = None, obs_type: str = "auto") -> gymnasium.Env:
    """The ``dmc`` backend factory. ``obs_type="auto"`` means ``state`` (no rendering)."""
    check_obs_type(obs_type)
    env = DeepMindControlEnv(env_id, seed=seed, size=size, camera=camera,
                             obs_type="state" if obs_type == "auto" else obs_type)
    return standardize_actions(env)
