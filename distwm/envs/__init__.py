"""Environment adapters and wrappers: one backend a module, all with the Gymnasium 1.x API.

Observations are dicts with ``image`` (uint8 ``(C, H, W)``) and/or ``state`` (float32);
actions are float32 vectors (one-hot for discrete games, ``[-1, 1]`` for continuous control).
Every name here is imported lazily, so ``import distwm.envs`` imports no simulator.

>>> from distwm.envs import make_env
>>> env = make_env("cartpole-swingup")          # doctest: +SKIP  (DeepMind Control)
>>> env = make_env("ALE/Pong-v5")               # doctest: +SKIP  (Atari)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    # Gymnasium
    "GymImageEnv": "distwm.envs.gym_env",
    "make_gym_env": "distwm.envs.gym_env",
    # DeepMind Control
    "DeepMindControlEnv": "distwm.envs.dmc",
    "make_dmc_env": "distwm.envs.dmc",
    # Atari
    "make_atari_env": "distwm.envs.ale_atari_env",
    "list_available_atari_envs": "distwm.envs.ale_atari_env",
    "make_atari_vector_env": "distwm.envs.ale_atari_vector_env",
    "DiamondAtariWrapper": "distwm.envs.diamond_atari",
    "make_diamond_atari_env": "distwm.envs.diamond_atari",
    # MuJoCo and Gymnasium-Robotics
    "MuJoCoImageEnv": "distwm.envs.mujoco_env",
    "make_mujoco_env": "distwm.envs.mujoco_env",
    "make_mujoco_env_from_config": "distwm.envs.mujoco_env",
    "make_robotics_env": "distwm.envs.robotics_env",
    "list_gymnasium_robotics_envs": "distwm.envs.robotics_env",
    "register_gymnasium_robotics_envs": "distwm.envs.robotics_env",
    "is_moved_mujoco_error": "distwm.envs.robotics_env",
    "make_gymnasium_env_with_robotics_fallback": "distwm.envs.robotics_env",
    # Brax, Unity
    "BraxImageEnv": "distwm.envs.brax_env",
    "make_brax_env": "distwm.envs.brax_env",
    "UnityMLAgentsEnv": "distwm.envs.unity_env",
    "make_unity_mlagents_env": "distwm.envs.unity_env",
    # wrappers
    "TimeLimit": "distwm.envs.wrappers",
    "ActionRepeat": "distwm.envs.wrappers",
    "NormalizeActions": "distwm.envs.wrappers",
    "ObsDict": "distwm.envs.wrappers",
    "OneHotAction": "distwm.envs.wrappers",
    "RewardObs": "distwm.envs.wrappers",
    "ResizeImage": "distwm.envs.wrappers",
    "RenderImage": "distwm.envs.wrappers",
    "UUID": "distwm.envs.wrappers",
    "SelectAction": "distwm.envs.wrappers",
    # vectorization
    "SimWorker": "distwm.envs.vector_env",
    "VectorizedEnv": "distwm.envs.vector_env",
    "NumpyVectorizedEnv": "distwm.envs.vector_env",
    "TorchVectorizedEnv": "distwm.envs.vector_env",
    "EnvWorkerError": "distwm.envs.vector_env",
    # backend resolution and config-driven construction
    "detect_backend": "distwm.envs.auto",
    "list_backend_envs": "distwm.envs.auto",
    "make_env_from_config": "distwm.envs.factory",
}

__all__ = ["make_env", *sorted(_LAZY)]


def make_env(env_id: str, **kwargs: Any) -> Any:
    """Create an env by id with the right backend: delegates to :func:`distwm.registry.make_env`
    (``backend="auto"`` unless given; registered backends included)."""
    from distwm.registry import make_env as api_make_env

    return api_make_env(env_id, **kwargs)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distwm.envs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
