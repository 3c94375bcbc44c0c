"""Crafter (Hafner 2021, "Benchmarking the Spectrum of Agent Capabilities"): an open-world
survival game with 22 achievements (the ``crafter`` backend; pip ``crafter``, extra
``distwm[crafter]``).

Ids: ``crafter`` or ``crafter:reward`` (Crafter's reward: +1 the first time an achievement is
unlocked in an episode, -0.1 / +0.1 per health point lost / regained), ``crafter:noreward``
(reward always 0, for unsupervised agents), and Crafter's own Gym ids ``CrafterReward-v1`` /
``CrafterNoReward-v1``.

Observations (a ``Dict``): ``image``, Crafter's RGB rendering ``(3, H, W)`` uint8 at ``size``
(64x64 as in the paper: the local 9x9 view above the inventory). Actions are ``Discrete(17)``
(:data:`CRAFTER_ACTIONS`; one-hot vectors once ``make_env_from_config`` wraps the env).
Crafter's defaults hold: a 64x64 world, episodes of at most ``length=10000`` steps (the
paper's). An episode *terminates* when the player dies (Crafter's ``info["discount"] == 0``) and
is *truncated* at ``length``.

``info`` of every step is Crafter's own: ``achievements`` (``{name: count}`` over the 22
:data:`CRAFTER_ACHIEVEMENTS`, how often each was done so far in the episode; an achievement is
*unlocked* in an episode when its count is > 0), ``inventory``, ``discount``, ``semantic``,
``player_pos`` and ``reward`` (the reward even under ``crafter:noreward``). Crafter's score is
computed from these counts by :mod:`distwm.benchmarks.crafter_score`.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium
import numpy as np

from distwm.envs._optional import require

__all__ = ["CRAFTER_ACHIEVEMENTS", "CRAFTER_ACTIONS", "CrafterEnv", "crafter_variant", "make_crafter_env"]

#: Crafter's 22 achievements, in Crafter's (alphabetical) order (``crafter.constants.achievements``).
CRAFTER_ACHIEVEMENTS = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)
#: Crafter's 17 actions, by index (``crafter.constants.actions``).
CRAFTER_ACTIONS = (
    "noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone",
    "place_table", "place_furnace", "place_plant", "make_wood_pickaxe", "make_stone_pickaxe",
    "make_iron_pickaxe", "make_wood_sword", "make_stone_sword", "make_iron_sword",
)
_ID = re.compile(r"^(?:crafter(?::(?P<short>reward|no[_-]?reward))?|Crafter(?P<gym>Reward|NoReward)-v1)$",
                 re.IGNORECASE)
_OBS_TYPES = ("pixels", "rgb", "auto")


def crafter_variant(env_id: str) -> str | None:
    """``"reward"`` or ``"noreward"``: the Crafter variant an id names (``None``: not a Crafter id)."""
    match = _ID.match(str(env_id))
    if match is None:
        return None
    name = (match.group("short") or match.group("gym") or "reward").lower()
    return "reward" if name == "reward" else "noreward"


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(int(v) < 1 for v in pair):
        raise ValueError(f"Crafter {name} must be a positive int or (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


class CrafterEnv(gymnasium.Env):
    """Crafter as a Gymnasium env with distwm's dict observations (module docstring).

    ``seed`` (or ``reset(seed=...)``) fixes the worlds: Crafter derives episode ``k``'s world
    from ``(seed, k)``; ``None`` lets Crafter draw one.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, *, reward: bool = True, size: tuple[int, int] = (64, 64),
                 area: tuple[int, int] = (64, 64), view: tuple[int, int] = (9, 9),
                 length: int | None = 10000, seed: int | None = None):
        if length is not None and int(length) < 1:
            raise ValueError(f"Crafter length must be >= 1 or None (no time limit), got {length!r}")
        self.reward, self.size = bool(reward), _pair(size, "size")
        self.area, self.view = _pair(area, "area"), _pair(view, "view")
        self.length = None if length is None else int(length)
        self._seed = seed
        self._env = None
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (3, *self.size), np.uint8)})
        self.action_space = gymnasium.spaces.Discrete(len(CRAFTER_ACTIONS))

    def _build(self, seed: int | None):
        crafter = require("crafter", "crafter", "The Crafter backend")
        if tuple(crafter.constants.achievements) != CRAFTER_ACHIEVEMENTS or \
                tuple(crafter.constants.actions) != CRAFTER_ACTIONS:
            raise RuntimeError("this crafter version's achievements or actions differ from "
                               "Crafter 1.8's: an unsupported crafter version")
        # crafter's size is (width, height); distwm's is (height, width)
        return crafter.Env(area=self.area, view=self.view, size=(self.size[1], self.size[0]),
                           reward=self.reward, length=self.length,
                           seed=None if seed is None else int(seed))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        seed = self._seed if seed is None else seed
        if self._env is None or seed is not None:  # built on first use: no side effects before
            self._env = self._build(seed)
            self._seed = None  # later resets continue the seeded sequence of worlds
        return {"image": np.ascontiguousarray(self._env.reset().transpose(2, 0, 1))}, {}

    def step(self, action):
        if self._env is None:
            raise RuntimeError("CrafterEnv.step() before reset()")
        index = int(np.asarray(action).reshape(()))
        if not 0 <= index < self.action_space.n:
            raise ValueError(f"action {action!r} is not in [0, {self.action_space.n})")
        frame, reward, done, info = self._env.step(index)
        terminated = bool(info["discount"] == 0)  # the player died
        obs = {"image": np.ascontiguousarray(frame.transpose(2, 0, 1))}
        return obs, float(reward), terminated, bool(done) and not terminated, info

    def render(self):
        if self._env is None:
            return None
        return self._env.render()

    def close(self):
        self._env = None


def make_crafter_env(env_id: str, *, seed: int | None = 0, size: int | tuple[int, int] | None = (64, 64),
                     obs_type: str = "pixels", area: int | tuple[int, int] = (64, 64),
                     view: int | tuple[int, int] = (9, 9), length: int | None = 10000,
                     **kwargs: Any) -> CrafterEnv:
    """The ``crafter`` backend factory (module docstring). ``size``: ``(height, width)`` of
    ``image`` (``None``: 64x64); ``area``, ``view``, ``length``: Crafter's own arguments."""
    variant = crafter_variant(env_id)
    if variant is None:
        raise ValueError(f"{env_id!r} is not a Crafter id; valid: crafter, crafter:reward, "
                         "crafter:noreward, CrafterReward-v1, CrafterNoReward-v1")
    if kwargs:
        raise ValueError(f"make_crafter_env got unknown arguments {sorted(kwargs)}; valid: seed, size, "
                         "obs_type, area, view, length")
    if obs_type not in _OBS_TYPES:
        raise ValueError(f"Crafter observes pixels only: obs_type {obs_type!r} is not one of "
                         f"{', '.join(_OBS_TYPES)}")
    return CrafterEnv(reward=variant == "reward", size=(64, 64) if size is None else size,
                      area=area, view=view, length=length, seed=seed)
