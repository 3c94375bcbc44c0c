"""Atari 2600 games through the Arcade Learning Environment (ale-py ships the ROMs).

Ids: ``ALE/Pong-v5``, the legacy ``PongNoFrameskip-v4`` family, or a bare game name
(``pong``, ``Pong``, ``space_invaders``, ``SpaceInvaders``), which means ``ALE/<Game>-v5``.
Recognising an id reads ale-py's ROM list from disk without importing ale-py.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from distwm._names import unknown_name_error
from distwm.envs._optional import require

__all__ = [
    "atari_game",
    "atari_gym_id",
    "atari_rom_ids",
    "list_available_atari_envs",
    "make_atari_env",
]

_ID = re.compile(r"^(?:ALE/)?(?P<name>[A-Za-z0-9_]+?)(?:-ram)?(?:NoFrameskip|Deterministic)?(?:-v(?P<v>\d+))?$")
# obs_type -> (ALE obs_type, distwm obs_type)
_OBS_TYPES = {
    "auto": ("rgb", "pixels"),
    "rgb": ("rgb", "pixels"),
    "pixels": ("rgb", "pixels"),
    "grayscale": ("grayscale", "pixels"),
    "ram": ("ram", "state"),
    "state": ("ram", "state"),
}


@functools.lru_cache(maxsize=1)
def atari_rom_ids() -> tuple[str, ...]:
    """Snake-case game names whose ROMs ale-py ships (``()`` when ale-py is not installed)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("ale_py")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return ()
    for location in spec.submodule_search_locations:
        hashes = Path(location) / "roms" / "md5.json"
        if hashes.is_file():
            return tuple(sorted(name.rsplit(".", 1)[0] for name in json.loads(hashes.read_text())))
    return ()


def _snake(name: str) -> str:
    if "_" in name or name.islower():
        return name.lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def atari_game(env_id: str) -> str | None:
    """The ROM name (``pong``) an Atari id refers to, or ``None`` if it is not an Atari game."""
    if not isinstance(env_id, str):
        return None
    match = _ID.match(env_id.strip())
    if match is None:
        return None
    game = _snake(match.group("name"))
    return game if game in atari_rom_ids() else None


def _register() -> Any:
    import gymnasium

    ale_py = require("ale_py", "atari", "Atari environments")
    gymnasium.register_envs(ale_py)
    return ale_py


def atari_gym_id(env_id: str) -> str:
    """The registered Gymnasium id for an Atari id (``pong`` -> ``ALE/Pong-v5``)."""
    import gymnasium

    _register()
    if env_id in gymnasium.registry:
        return env_id
    game = atari_game(env_id)
    if game is not None:
        from ale_py.registration import rom_id_to_name

        candidate = f"ALE/{rom_id_to_name(game)}-v5"
        if candidate in gymnasium.registry:
            return candidate
    raise unknown_name_error("Atari game", env_id, atari_rom_ids(), list_available_atari_envs())


def list_available_atari_envs() -> list[str]:
    """Every ``ALE/<Game>-v5`` id registered by ale-py."""
    import gymnasium

    _register()
    return sorted(env_id for env_id in gymnasium.registry if env_id.startswith("ALE/"))


def make_atari_env(env_id: str, obs_type: str = "rgb", frameskip: int = 4,
                   repeat_action_probability: float = 0.25, full_action_space: bool = False,
                   max_episode_steps: int | None = None, *, seed: int = 0,
                   size: int | tuple[int, int] | None = (64, 64), preprocessing: str | None = None,
                   max_noop: int = 30, terminate_on_life_loss: bool = True, **kwargs: Any):
    """Create an Atari game as a distwm env (the ``atari`` backend factory).

    ``obs_type``: ``rgb`` / ``pixels`` / ``auto`` (``image`` uint8 ``(3, H, W)``),
    ``grayscale`` (``image`` ``(1, H, W)``) or ``ram`` / ``state`` (the 128-byte RAM as a
    float32 ``state``). ``size``: ``(height, width)`` of ``image`` (``None``: native 210x160).
    Actions are one-hot vectors over the game's action set. Other ``kwargs`` (``mode``,
    ``difficulty``, ...) go to ``gymnasium.make``.

    ``preprocessing="atari100k"``: the Atari 100k protocol of IRIS and DIAMOND
    (:class:`~distwm.envs.diamond_atari.DiamondAtariWrapper`): ALE at frameskip 1 without sticky
    actions, ``frameskip`` done by the wrapper with a max-pool over the last two frames,
    1..``max_noop`` no-op starts, ``terminate_on_life_loss``, raw rewards, RGB only.
    """
    from distwm.envs.gym_env import GymImageEnv

    if preprocessing is not None:
        return _atari100k_env(env_id, preprocessing, obs_type, frameskip, size, max_noop,
                              terminate_on_life_loss, seed, max_episode_steps, kwargs)

    if obs_type not in _OBS_TYPES:
        raise ValueError(f"Unknown Atari obs_type {obs_type!r}; valid: {', '.join(_OBS_TYPES)}")
    ale_obs, distwm_obs = _OBS_TYPES[obs_type]
    gym_id = atari_gym_id(env_id)
    options = dict(obs_type=ale_obs, frameskip=frameskip, repeat_action_probability=repeat_action_probability,
                   full_action_space=full_action_space, **kwargs)
    if max_episode_steps is not None:
        options["max_episode_steps"] = max_episode_steps
    import gymnasium

    env = gymnasium.make(gym_id, **options)
    return GymImageEnv(env, seed=seed, size=size, obs_type=distwm_obs)


def _atari100k_env(env_id, preprocessing, obs_type, frameskip, size, max_noop, terminate_on_life_loss,
                   seed, max_episode_steps, kwargs):
    from distwm.envs.diamond_atari import make_diamond_atari_env

    if preprocessing != "atari100k":
        raise ValueError(f"Unknown Atari preprocessing {preprocessing!r}; valid: 'atari100k' (or None)")
    if obs_type not in ("rgb", "pixels", "auto"):
        raise ValueError(f"Atari preprocessing 'atari100k' observes RGB frames; obs_type {obs_type!r} "
                         "is not supported with it (valid: rgb, pixels, auto)")
    unused = sorted(set(kwargs) - {"repeat_action_probability", "full_action_space"})
    if unused or max_episode_steps is not None:
        raise ValueError(f"Atari preprocessing 'atari100k' takes no {unused or ['max_episode_steps']} "
                         "(it fixes sticky actions off and the minimal action set; cap episodes with "
                         "the config's time_limit)")
    return make_diamond_atari_env(env_id, frameskip=int(frameskip), max_noop=int(max_noop),
                                  terminate_on_life_loss=bool(terminate_on_life_loss), reward_clip=False,
                                  resize=size, seed=seed)
