"""MinAtar (Young & Tian 2019): five miniature Atari games on a 10x10 grid (the ``minatar``
backend; pip ``minatar``, extra ``distwm[minatar]``).

Ids: ``minatar:breakout`` (also ``MinAtar/Breakout-v1``, MinAtar's own Gymnasium id, or
``minatar:Breakout``). Games: ``asterix``, ``breakout``, ``freeway``, ``seaquest``,
``space_invaders``.

Observations (a ``Dict``): ``image``, an RGB rendering ``(3, H, W)`` uint8 at ``size`` (each
cell takes the colour of its highest active channel, as MinAtar's own display does, scaled up
by nearest neighbour), and/or ``state``, the ``10 x 10 x channels`` boolean grid as float32
(flattened). Actions are ``Discrete`` over the game's minimal action set (as MinAtar's ``-v1``
Gymnasium envs), or all six with ``minimal_actions=False``. MinAtar's defaults hold: sticky
actions with probability 0.1 and difficulty ramping.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium
import numpy as np

from distwm._names import unknown_name_error
from distwm.envs._optional import require

__all__ = ["MINATAR_GAMES", "MinAtarEnv", "make_minatar_env", "minatar_game"]

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
_ID = re.compile(r"^(?:minatar:(?P<short>\w+)|MinAtar/(?P<gym>\w+)-v[01])$", re.IGNORECASE)
_OBS_TYPES = ("pixels", "rgb", "auto", "state", "both")
# one colour per channel (index 0: empty cell); distinct, bright on black
_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                     [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
                     [250, 190, 212], [0, 128, 128]], dtype=np.uint8)


def minatar_game(env_id: str) -> str | None:
    """The MinAtar game an id names (``None``: not a MinAtar id)."""
    match = _ID.match(str(env_id))
    if match is None:
        return None
    name = match.group("short") or match.group("gym")
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if not name.islower() else name
    return name.replace("spaceinvaders", "space_invaders")


def render_grid(state: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(10, 10, C)`` boolean grid -> ``(3, H, W)`` uint8: the colour of each cell's highest
    active channel, scaled by nearest neighbour."""
    channels = state.shape[-1]
    index = (state * np.arange(1, channels + 1)).max(-1).astype(np.int64)
    rgb = _PALETTE[index % len(_PALETTE)]  # (10, 10, 3)
    rows = np.arange(size[0]) * state.shape[0] // size[0]
    cols = np.arange(size[1]) * state.shape[1] // size[1]
    return np.ascontiguousarray(rgb[rows][:, cols].transpose(2, 0, 1))


class MinAtarEnv(gymnasium.Env):
    """A MinAtar game as a Gymnasium env with distwm's dict observations (module docstring)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, game: str, *, size: tuple[int, int] = (64, 64), obs_type: str = "pixels",
                 sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 minimal_actions: bool = True, seed: int | None = None):
        if game not in MINATAR_GAMES:
            raise unknown_name_error("MinAtar game", game, MINATAR_GAMES)
        if obs_type not in _OBS_TYPES:
            raise ValueError(f"Unknown MinAtar obs_type {obs_type!r}; valid: {', '.join(_OBS_TYPES)}")
        if not 0.0 <= float(sticky_action_prob) <= 1.0:
            raise ValueError(f"sticky_action_prob must lie in [0, 1], got {sticky_action_prob!r}")
        self.game, self.size = game, (int(size[0]), int(size[1]))
        self._options = {"sticky_action_prob": float(sticky_action_prob),
                         "difficulty_ramping": bool(difficulty_ramping)}
        self._minimal, self._seed = bool(minimal_actions), seed
        self._env = None
        self._pixels, self._state = obs_type != "state", obs_type in ("state", "both")
        channels = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}[game]
        spaces = {}
        if self._pixels:
            spaces["image"] = gymnasium.spaces.Box(0, 255, (3, *self.size), np.uint8)
        if self._state:
            spaces["state"] = gymnasium.spaces.Box(0.0, 1.0, (10 * 10 * channels,), np.float32)
        self.observation_space = gymnasium.spaces.Dict(spaces)
        n = {"asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4}[game]
        self.action_space = gymnasium.spaces.Discrete(n if self._minimal else 6)

    def _game(self):
        if self._env is None:  # built on first use: constructing the env has no side effects
            minatar = require("minatar", "minatar", "The MinAtar backend")
            self._env = minatar.Environment(self.game, **self._options)
            self._actions = (list(self._env.minimal_action_set()) if self._minimal
                             else list(range(self._env.num_actions())))
            if len(self._actions) != self.action_space.n:
                raise RuntimeError(f"MinAtar {self.game} has {len(self._actions)} actions, expected "
                                   f"{self.action_space.n}: an unsupported minatar version")
        return self._env

    def _observation(self) -> dict[str, np.ndarray]:
        state = self._env.state()
        obs = {}
        if self._pixels:
            obs["image"] = render_grid(state, self.size)
        if self._state:
            obs["state"] = state.astype(np.float32).reshape(-1)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        env = self._game()
        seed = self._seed if seed is None else seed
        if seed is not None:
            env.seed(int(seed))
            self._seed = None  # later resets continue the seeded stream
        env.reset()
        return self._observation(), {}

    def step(self, action):
        if self._env is None:
            raise RuntimeError("MinAtarEnv.step() before reset()")
        index = int(np.asarray(action).reshape(()))
        if not 0 <= index < self.action_space.n:
            raise ValueError(f"action {action!r} is not in [0, {self.action_space.n})")
        reward, terminal = self._env.act(self._actions[index])
        return self._observation(), float(reward), bool(terminal), False, {}

    def render(self):
        if self._env is None:
            return None
        return render_grid(self._env.state(), self.size).transpose(1, 2, 0)

    def close(self):
        self._env = None


def make_minatar_env(env_id: str, *, seed: int | None = 0, size: int | tuple[int, int] | None = (64, 64),
                     obs_type: str = "pixels", sticky_action_prob: float = 0.1,
                     difficulty_ramping: bool = True, minimal_actions: bool = True, **kwargs: Any) -> MinAtarEnv:
    """The ``minatar`` backend factory (module docstring). ``size``: ``(height, width)`` of
    ``image`` (``None``: 10x10, one pixel per cell)."""
    game = minatar_game(env_id)
    if game is None:
        raise ValueError(f"{env_id!r} is not a MinAtar id; use 'minatar:<game>' with a game in "
                         f"{', '.join(MINATAR_GAMES)}")
    if kwargs:
        raise ValueError(f"make_minatar_env got unknown arguments {sorted(kwargs)}; valid: seed, size, "
                         "obs_type, sticky_action_prob, difficulty_ramping, minimal_actions")
    if size is None:
        size = (10, 10)
    elif isinstance(size, int):
        size = (size, size)
    return MinAtarEnv(game, size=tuple(size), obs_type=obs_type, sticky_action_prob=sticky_action_prob,
                      difficulty_ramping=difficulty_ramping, minimal_actions=minimal_actions, seed=seed)
