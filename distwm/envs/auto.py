"""Which built-in backend an env id belongs to, and which ids each backend offers.

:func:`detect_backend` is cheap: it reads file names and ale-py's ROM list from disk and
Gymnasium's registry, and imports no simulator (Gymnasium-Robotics' registrations are loaded
only for ids no other backend recognised). :func:`list_backend_envs` imports a simulator
only for the backend it is asked about.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

__all__ = ["BACKEND_ORDER", "detect_backend", "list_backend_envs"]

#: The order in which ``detect_backend`` tries the backends.
BACKEND_ORDER = ("unity", "mujoco", "dmc", "atari", "minatar", "crafter", "gym", "robotics", "brax")
_GYM_ID = re.compile(r"^(?:[\w.-]+/)?[\w:.-]+-v\d+$")


def _is_unity(env_id: str) -> bool:
    from distwm.envs.unity_env import is_unity_executable

    return is_unity_executable(env_id)


def _is_mujoco(env_id: str) -> bool:
    from distwm.envs.mujoco_env import is_mjcf_string, is_mujoco_model_path

    return is_mjcf_string(env_id) or is_mujoco_model_path(env_id)


def _is_dmc(env_id: str) -> bool:
    from distwm.envs.dmc import parse_dmc_id

    return parse_dmc_id(env_id) is not None


def _is_atari(env_id: str) -> bool:
    from distwm.envs.ale_atari_env import atari_game

    return env_id.startswith("ALE/") or atari_game(env_id) is not None


def _is_minatar(env_id: str) -> bool:
    from distwm.envs.minatar_env import minatar_game

    return minatar_game(env_id) is not None


def _is_crafter(env_id: str) -> bool:
    from distwm.envs.crafter_env import crafter_variant

    return crafter_variant(env_id) is not None


def _is_gym(env_id: str) -> bool:
    if not _GYM_ID.match(env_id):
        return False
    import gymnasium

    from distwm.envs.robotics_env import is_robotics_spec

    spec = gymnasium.registry.get(env_id)
    # Robotics ids are in the registry once gymnasium_robotics was imported: keep them "robotics"
    return spec is not None and not is_robotics_spec(spec)


def _is_robotics(env_id: str) -> bool:
    from distwm.envs._optional import is_installed

    if not _GYM_ID.match(env_id) or not is_installed("gymnasium_robotics"):
        return False
    from distwm.envs.robotics_env import list_gymnasium_robotics_envs

    return env_id in list_gymnasium_robotics_envs()


def _is_brax(env_id: str) -> bool:
    from distwm.envs.brax_env import brax_env_name

    return brax_env_name(env_id) is not None


_MATCHERS: dict[str, Callable[[str], bool]] = {
    "unity": _is_unity,
    "mujoco": _is_mujoco,
    "dmc": _is_dmc,
    "atari": _is_atari,
    "minatar": _is_minatar,
    "crafter": _is_crafter,
    "gym": _is_gym,
    "robotics": _is_robotics,
    "brax": _is_brax,
}


def detect_backend(env_id: str | Path) -> tuple[str | None, list[str]]:
    """``(backend, tried)``: the first built-in backend that recognises ``env_id``.

    ``walker-walk`` -> ``dmc``; ``ALE/Pong-v5``, ``pong`` -> ``atari``; a registered
    Gymnasium id -> ``gym`` (Gymnasium-Robotics ids -> ``robotics``); an ``.xml``/``.mjb``
    path or MJCF text -> ``mujoco``; ``minatar:breakout`` -> ``minatar``; ``crafter``,
    ``crafter:noreward`` -> ``crafter``; a Unity build (``.x86_64``/``.exe``/``.app`` or an
    existing executable file) -> ``unity``; ``brax/ant`` -> ``brax``. ``backend`` is
    ``None`` when none does; ``tried`` lists the backends checked, in order.
    """
    env_id = str(env_id)
    tried: list[str] = []
    for name in BACKEND_ORDER:
        tried.append(name)
        if env_id and _MATCHERS[name](env_id):
            return name, tried
    return None, tried


def _gym_ids() -> list[str]:
    import gymnasium

    from distwm.envs.robotics_env import is_robotics_spec

    ids = []
    for env_id, spec in gymnasium.registry.items():
        entry = spec.entry_point
        module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
        if env_id.startswith("ALE/") or str(module).startswith("ale_py") or is_robotics_spec(spec):
            continue
        if getattr(entry, "__name__", "") == "_raise_mujoco_py_error":  # moved v2/v3 tasks
            continue
        ids.append(env_id)
    return sorted(ids)


def _mujoco_ids() -> list[str]:
    import gymnasium

    return sorted(
        env_id for env_id, spec in gymnasium.registry.items()
        if isinstance(spec.entry_point, str) and spec.entry_point.startswith("gymnasium.envs.mujoco")
    )


def _listers() -> dict[str, Callable[[], list[str]]]:
    from distwm.envs._optional import is_installed

    def dmc() -> list[str]:
        from distwm.envs.dmc import list_dmc_envs

        return list_dmc_envs() if is_installed("dm_control") else []

    def atari() -> list[str]:
        from distwm.envs.ale_atari_env import list_available_atari_envs

        return list_available_atari_envs() if is_installed("ale_py") else []

    def mujoco() -> list[str]:
        return _mujoco_ids() if is_installed("mujoco") else []

    def robotics() -> list[str]:
        from distwm.envs.robotics_env import list_gymnasium_robotics_envs

        return list_gymnasium_robotics_envs()

    def brax() -> list[str]:
        from distwm.envs.brax_env import list_brax_envs

        return list_brax_envs() if is_installed("brax") else []

    def minatar() -> list[str]:
        from distwm.envs.minatar_env import MINATAR_GAMES

        return [f"minatar:{game}" for game in MINATAR_GAMES] if is_installed("minatar") else []

    def crafter() -> list[str]:
        return ["crafter:reward", "crafter:noreward"] if is_installed("crafter") else []

    return {"gym": _gym_ids, "dmc": dmc, "atari": atari, "minatar": minatar, "crafter": crafter,
            "mujoco": mujoco, "robotics": robotics, "brax": brax, "unity": lambda: []}


def list_backend_envs(backend: str) -> list[str]:
    """Env ids that a built-in backend offers in this installation.

    ``dmc``: the suite's benchmarking tasks (``walker-walk``); ``atari``: ``ALE/<Game>-v5``;
    ``gym``: Gymnasium's registry without ALE and Gymnasium-Robotics ids; ``mujoco``:
    Gymnasium's MuJoCo tasks (native models are files, so not listed); ``robotics``:
    Gymnasium-Robotics ids; ``minatar``: ``minatar:<game>``; ``crafter``: ``crafter:reward``,
    ``crafter:noreward``; ``brax``: ``brax/<name>``; ``unity``: none (builds are files).
    A backend whose extra is not installed lists nothing.
    """
    listers = _listers()
    if backend not in listers:
        raise ValueError(f"Unknown built-in env backend {backend!r}; valid: {', '.join(sorted(listers))}")
    return sorted(listers[backend]())
