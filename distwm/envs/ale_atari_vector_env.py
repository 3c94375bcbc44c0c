"""Many Atari games stepped in C++ threads by ALE's native ``ale_py.vector_env.AtariVectorEnv``."""

from __future__ import annotations

from typing import Any

from distwm._names import unknown_name_error
from distwm.envs._optional import require
from distwm.envs.ale_atari_env import atari_game, atari_rom_ids

__all__ = ["make_atari_vector_env"]

_VECTOR_OBS_TYPES = {"rgb": False, "pixels": False, "auto": False, "grayscale": True}


def make_atari_vector_env(game: str, num_envs: int, obs_type: str = "rgb", frameskip: int = 4,
                          repeat_action_probability: float = 0.25, full_action_space: bool = False,
                          max_episode_steps: int | None = None, seed: int | None = None,
                          **kwargs: Any):
    """Create ``num_envs`` copies of an Atari game in ALE's native vector env.

    ``game``: ``pong``, ``Pong``, ``ALE/Pong-v5``, ... ``obs_type``: ``rgb`` (observations
    ``(num_envs, stack_num, H, W, 3)``) or ``grayscale`` (``(num_envs, stack_num, H, W)``);
    ALE's vector env has no RAM observations. ``max_episode_steps`` counts agent steps (ALE
    counts frames: ``max_episode_steps * frameskip``). With ``seed`` the envs are reset once
    here with seeds ``seed, seed + 1, ...`` so later ``reset()`` calls are reproducible.
    Other ``kwargs`` go to ``AtariVectorEnv`` (``img_height``, ``img_width``, ``stack_num``,
    ``noop_max``, ``episodic_life``, ``reward_clipping``, ``num_threads``, ...); its defaults
    apply otherwise. Returns the ``AtariVectorEnv`` (Gymnasium ``VectorEnv`` API, ``Discrete``
    actions as int arrays).
    """
    if obs_type not in _VECTOR_OBS_TYPES:
        raise ValueError(
            f"Unknown obs_type {obs_type!r} for ALE's vector env; valid: {', '.join(_VECTOR_OBS_TYPES)} "
            "(it has no 'ram' observations: use make_atari_env for those)"
        )
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    rom = atari_game(game)
    if rom is None:
        raise unknown_name_error("Atari game", str(game), atari_rom_ids())
    vector_env = require("ale_py.vector_env", "atari", "ALE's vector env")
    options: dict[str, Any] = dict(
        frameskip=frameskip,
        repeat_action_probability=repeat_action_probability,
        full_action_space=full_action_space,
        grayscale=_VECTOR_OBS_TYPES[obs_type],
    )
    if max_episode_steps is not None:
        options["max_num_frames_per_episode"] = int(max_episode_steps) * int(frameskip)
    options.update(kwargs)
    env = vector_env.AtariVectorEnv(rom, num_envs, **options)
    if seed is not None:
        env.reset(seed=int(seed))
    return env
