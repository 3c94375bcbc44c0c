"""Unity ML-Agents builds as distwm envs. Optional extra: ``unity`` (``mlagents-envs``).

One agent of one behavior is controlled. Visual observations (``(H, W, C)`` in ``[0, 1]``)
become ``image`` uint8 ``(C, H, W)``; vector observations are concatenated into ``state``.
The action vector is the continuous actions (in ``[-1, 1]``) followed by one one-hot block per
discrete branch. An agent that Unity interrupts (max step reached) ends with ``truncated``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from distwm.envs._optional import require
from distwm.envs.base import AdapterEnv, ObsFormat, as_size, check_obs_type, to_hwc_image

__all__ = ["UNITY_SUFFIXES", "UnityMLAgentsEnv", "is_unity_executable", "make_unity_mlagents_env"]

UNITY_SUFFIXES = (".x86_64", ".x86", ".exe", ".app")


def is_unity_executable(path: Any) -> bool:
    """Whether ``path`` names a Unity build: a Unity suffix, or an existing executable file."""
    if not isinstance(path, (str, Path)) or not str(path):
        return False
    candidate = Path(str(path)).expanduser()
    if candidate.suffix.lower() in UNITY_SUFFIXES:
        return True
    return candidate.is_file() and os.access(candidate, os.X_OK) and candidate.suffix.lower() not in (".xml", ".mjb")


def _check_build(file_name: Any) -> Path:
    if file_name is None or not str(file_name):
        raise ValueError(
            "UnityMLAgentsEnv needs file_name: the path of a Unity executable built with ML-Agents "
            "(for example builds/3DBall.x86_64)"
        )
    path = Path(str(file_name)).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Unity ML-Agents build not found: {str(path)!r}. Pass file_name= the Unity executable "
            "built with ML-Agents (a .x86_64 file on Linux, .exe on Windows, .app on macOS); build "
            "it from the Unity editor (File > Build Settings) or use one of the ML-Agents example builds"
        )
    return path


class UnityMLAgentsEnv(AdapterEnv):
    """A Unity ML-Agents executable as a Gymnasium env.

    ``file_name``: path of the build (checked before mlagents-envs is imported).
    ``behavior_name``: the behavior to control (default: the first one). ``obs_type``:
    ``auto`` (images when the agent has a camera sensor, plus ``state`` when it also has
    vector sensors), ``pixels``, ``state`` or ``both``. ``max_episode_steps``: env steps
    before ``truncated``.
    """

    def __init__(self, file_name: str | Path, behavior_name: str | None = None, seed: int = 0,
                 size: int | tuple[int, int] = (64, 64), worker_id: int = 0, base_port: int = 5005,
                 no_graphics: bool = True, time_scale: float = 20.0, quality_level: int = 1,
                 max_episode_steps: int = 1000, obs_type: str = "auto"):
        super().__init__(seed)
        path = _check_build(file_name)
        check_obs_type(obs_type)
        size = as_size(size)
        environment = require("mlagents_envs.environment", "unity", "Unity ML-Agents environments")
        channels = require("mlagents_envs.side_channel.engine_configuration_channel", "unity",
                           "Unity ML-Agents environments")
        engine = channels.EngineConfigurationChannel()
        self._unity = environment.UnityEnvironment(
            file_name=str(path), worker_id=worker_id, base_port=base_port, seed=int(seed or 0),
            no_graphics=no_graphics, side_channels=[engine],
        )
        try:
            engine.set_configuration_parameters(time_scale=time_scale, quality_level=quality_level)
            self._unity.reset()
            names = list(self._unity.behavior_specs.keys())
            if not names:
                raise ValueError(f"The Unity build {str(path)!r} exposes no ML-Agents behaviors")
            if behavior_name is None:
                behavior_name = names[0]
            elif behavior_name not in names:
                raise ValueError(f"Unknown behavior {behavior_name!r}; valid: {', '.join(names)}")
            self._behavior = behavior_name
            spec = self._unity.behavior_specs[behavior_name]
            self._visual = [i for i, s in enumerate(spec.observation_specs) if len(s.shape) == 3]
            self._vector = [i for i, s in enumerate(spec.observation_specs) if len(s.shape) != 3]
            if obs_type == "auto":
                obs_type = ("both" if self._vector else "pixels") if self._visual else "state"
            if obs_type in ("pixels", "both") and not self._visual:
                raise ValueError(f"Behavior {behavior_name!r} has no visual observation; use obs_type='state'")
            state_dim = sum(int(np.prod(spec.observation_specs[i].shape)) for i in self._vector) or None
            image_channels = spec.observation_specs[self._visual[0]].shape[-1] if self._visual else 3
            self._format = ObsFormat(obs_type, size, state_dim, image_channels)
            action_spec = spec.action_spec
            self._continuous = int(action_spec.continuous_size)
            self._branches = tuple(int(b) for b in action_spec.discrete_branches)
            width = self._continuous + sum(self._branches)
            low = np.concatenate([-np.ones(self._continuous), np.zeros(sum(self._branches))])
            self.action_space = gymnasium.spaces.Box(low.astype(np.float32), np.ones(width, np.float32))
        except Exception:
            self._unity.close()
            raise
        self._action_tuple = require("mlagents_envs.base_env", "unity", "Unity ML-Agents").ActionTuple
        self._max_episode_steps = int(max_episode_steps)
        self._agent: int | None = None
        self._steps = 0
        self._last_frame: np.ndarray | None = None

    @property
    def max_episode_steps(self) -> int:
        return self._max_episode_steps

    @property
    def behavior_name(self) -> str:
        return self._behavior

    def _observation(self, steps, index: int) -> dict[str, np.ndarray]:
        observations = [np.asarray(o[index]) for o in steps.obs]
        frame = observations[self._visual[0]] if self._visual else None
        self._last_frame = frame
        state = None
        if self._format.wants_state:
            state = np.concatenate([observations[i].ravel() for i in self._vector]).astype(np.float32)
        return self._format(state=state, frame=frame if self._format.wants_image else None)

    def _action_tuple_for(self, action: np.ndarray):
        continuous = np.clip(action[: self._continuous], -1.0, 1.0)[None].astype(np.float32)
        discrete, offset = [], self._continuous
        for branch in self._branches:
            discrete.append(int(np.argmax(action[offset: offset + branch])))
            offset += branch
        return self._action_tuple(continuous=continuous, discrete=np.asarray([discrete], np.int32).reshape(1, -1))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._episode_seed(seed)
        self._unity.reset()
        decision, _ = self._unity.get_steps(self._behavior)
        if len(decision) == 0:
            raise RuntimeError(f"No agent of behavior {self._behavior!r} requested a decision after reset")
        self._agent = int(decision.agent_id[0])
        self._steps = 0
        return self._observation(decision, 0), {}

    def step(self, action):
        if self._agent is None:
            raise RuntimeError("UnityMLAgentsEnv: call reset() before step()")
        action = np.asarray(action, np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"Action of shape {action.shape} does not match {self.action_space.shape}")
        self._unity.set_action_for_agent(self._behavior, self._agent, self._action_tuple_for(action))
        self._unity.step()
        decision, terminal = self._unity.get_steps(self._behavior)
        self._steps += 1
        if self._agent in terminal.agent_id_to_index:
            index = terminal.agent_id_to_index[self._agent]
            interrupted = bool(terminal.interrupted[index])
            obs = self._observation(terminal, index)
            self._agent = None
            return obs, float(terminal.reward[index]), not interrupted, interrupted, {}
        if self._agent not in decision.agent_id_to_index:
            raise RuntimeError(f"Agent {self._agent} of {self._behavior!r} requested no decision after step")
        index = decision.agent_id_to_index[self._agent]
        truncated = self._steps >= self._max_episode_steps
        return self._observation(decision, index), float(decision.reward[index]), False, truncated, {}

    def render(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """The last visual observation, uint8 ``(H, W, C)`` at ``size``."""
        if self._last_frame is None:
            raise RuntimeError("No visual observation yet (reset first; the behavior needs a camera sensor)")
        return to_hwc_image(self._last_frame, self._format.size)

    def close(self) -> None:
        self._unity.close()


def make_unity_mlagents_env(env_id: str | Path | None = None, **kwargs: Any) -> UnityMLAgentsEnv:
    """The ``unity`` backend factory: ``env_id`` (or ``file_name=``) is the Unity executable.

    Other ``kwargs`` go to :class:`UnityMLAgentsEnv` (``behavior_name``, ``seed``, ``size``,
    ``worker_id``, ``base_port``, ``no_graphics``, ``time_scale``, ``quality_level``,
    ``max_episode_steps``, ``obs_type``).
    """
    file_name = kwargs.pop("file_name", None)
    if env_id is not None and file_name is not None and str(env_id) != str(file_name):
        raise ValueError(f"Pass the Unity build once: env_id={env_id!r} and file_name={file_name!r} differ")
    return UnityMLAgentsEnv(env_id if env_id is not None else file_name, **kwargs)
