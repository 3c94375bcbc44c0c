"""Replay for IRIS training (pure numpy): a ring buffer of transitions that samples contiguous
sequences, and a list-based on-policy buffer for the episode being collected.

A transition ``t`` is ``(observation t, action t taken in it, reward t and terminal t that
followed)``; the observation stored after it is ``t``'s successor. A sampled sequence of
``seq_len`` transitions therefore reads ``seq_len + 1`` consecutive observations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["IRISOnPolicyBuffer", "IRISReplayBuffer"]


def _positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def _pixels(owner: str, obs: Any, shape: tuple) -> np.ndarray:
    """``obs`` as a uint8 array of ``shape``."""
    array = np.asarray(obs.detach().cpu() if hasattr(obs, "detach") else obs)
    if array.shape != shape:
        raise ValueError(f"{owner}: obs has shape {array.shape}, expected obs_shape={shape} (C, H, W)")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "biu" or (array.size and (array.min() < 0 or array.max() > 255)):
        raise ValueError(
            f"{owner}: obs must be uint8 pixels in [0, 255], got dtype {array.dtype}; convert "
            "float frames first, e.g. (obs * 255).astype(np.uint8)"
        )
    return array.astype(np.uint8)


class IRISReplayBuffer:
    """Replay buffer for IRIS (Imagined Rollouts with Implicit Successor) training.

    Stores ``(observation, action, reward, terminal)`` tuples in a ring buffer (FIFO eviction
    when full; uint8 images) and samples contiguous sequences for world model training. A
    sampled sequence stays inside one episode: a terminal may only be its last transition
    (the observation after it is whatever was stored next, normally the next episode's first
    frame, which IRIS masks out after an end). It also never runs across the ring's write
    position, so its steps are consecutive in time.

    Memory layout: ``observations`` ``(size, C, H, W)`` uint8, ``actions``
    ``(size, action_size)`` float32, ``rewards`` and ``terminals`` ``(size,)`` float32.

    Args:
        size: maximum number of transitions to store (at least ``seq_len + 1``).
        obs_shape: shape of observations as ``(C, H, W)``.
        action_size: dimension of actions.
        seq_len: length of sampled sequences (default 20).
        batch_size: number of sequences per batch (default 64).

    Attributes:
        size, obs_shape, action_size, seq_len, batch_size: as given.
        steps: total transitions added (evicted ones included).
        episodes: number of episode terminations observed.

    Sampling draws from ``numpy.random`` (seed it with ``np.random.seed`` for repeatability).

    Example::

        buffer = IRISReplayBuffer(100_000, (3, 64, 64), action_size=6, seq_len=20, batch_size=64)
        buffer.add(obs, one_hot_action, reward, done)
        obs, actions, rewards, terminals = buffer.sample_sequence()  # (64, 21, 3, 64, 64), ...
    """

    def __init__(self, size: int, obs_shape: Sequence[int], action_size: int, seq_len: int = 20,
                 batch_size: int = 64):
        owner = "IRISReplayBuffer"
        self.size = _positive_int(owner, "size", size)
        self.action_size = _positive_int(owner, "action_size", action_size)
        self.seq_len = _positive_int(owner, "seq_len", seq_len)
        self.batch_size = _positive_int(owner, "batch_size", batch_size)
        try:
            shape = tuple(int(s) for s in obs_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or min(shape) <= 0:
            raise ValueError(f"{owner}: obs_shape must be (C, H, W) of positive ints, got {obs_shape!r}")
        self.obs_shape = shape
        if self.size < self.seq_len + 1:
            raise ValueError(
                f"{owner}: size={self.size} cannot hold a sequence of seq_len={self.seq_len} "
                f"transitions ({self.seq_len + 1} observations); use size >= {self.seq_len + 1}"
            )
        self.observations = np.zeros((self.size, *shape), dtype=np.uint8)
        self.actions = np.zeros((self.size, self.action_size), dtype=np.float32)
        self.rewards = np.zeros((self.size,), dtype=np.float32)
        self.terminals = np.zeros((self.size,), dtype=np.float32)
        self.idx = 0  # the ring's write position
        self.full = False
        self.steps = 0
        self.episodes = 0
        self._starts: tuple[tuple[int, int], np.ndarray] | None = None  # ((steps, seq_len), starts)

    def __len__(self) -> int:
        """Transitions stored now."""
        return self.size if self.full else self.idx

    @property
    def buffer_capacity(self) -> int:
        """Returns the total capacity of the buffer."""
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, terminal: bool) -> None:
        """Add a transition: ``obs`` ``(C, H, W)`` uint8 pixels, ``action`` ``(action_size,)``,
        the scalar ``reward`` and whether the episode ``terminal``-ed after it."""
        pixels = _pixels("IRISReplayBuffer.add", obs, self.obs_shape)
        act = np.asarray(action, dtype=np.float32)
        if act.reshape(-1).shape != (self.action_size,):
            raise ValueError(
                f"IRISReplayBuffer.add: action has shape {act.shape}, expected "
                f"(action_size,) = ({self.action_size},)"
            )
        self.observations[self.idx] = pixels
        self.actions[self.idx] = act.reshape(-1)
        self.rewards[self.idx] = float(np.asarray(reward).reshape(()))
        done = bool(np.asarray(terminal).reshape(()))
        self.terminals[self.idx] = float(done)
        self.idx = (self.idx + 1) % self.size
        self.full = self.full or self.idx == 0
        self.steps += 1
        self.episodes += int(done)

    def _valid_starts(self, seq_len: int) -> np.ndarray:
        """Ring indices where a sequence of ``seq_len`` transitions may start."""
        key = (self.steps, seq_len)
        if self._starts is not None and self._starts[0] == key:
            return self._starts[1]
        n = len(self)
        if n < seq_len + 1:
            raise ValueError(
                f"IRISReplayBuffer holds {n} transitions; a sequence of seq_len={seq_len} needs at "
                f"least {seq_len + 1}: add more transitions before sampling"
            )
        oldest = self.idx if self.full else 0
        order = (oldest + np.arange(n)) % self.size  # ring indices, oldest first
        ends = np.concatenate([[0], np.cumsum(self.terminals[order] > 0)])
        first = np.arange(n - seq_len)  # the last observation read is the newest one
        inside = ends[first + seq_len - 1] == ends[first]  # no terminal before the last transition
        starts = order[first[inside]]
        if starts.size == 0:
            raise ValueError(
                f"IRISReplayBuffer: no {seq_len} consecutive stored transitions lie inside one "
                f"episode (the {n} stored ones hold {int(ends[-1])} episode ends); add longer "
                "episodes or sample a shorter seq_len"
            )
        self._starts = (key, starts)
        return starts

    def sample_sequence(self, seq_len: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sample ``batch_size`` sequences for world model training.

        Args:
            seq_len: transitions per sequence (default: the one given at construction);
                at most ``size - 1``.

        Returns:
            ``(observations, actions, rewards, terminals)``: observations
            ``(batch_size, seq_len + 1, C, H, W)`` uint8, actions
            ``(batch_size, seq_len, action_size)`` float32, rewards and terminals
            ``(batch_size, seq_len)`` float32.

        Raises:
            ValueError: a bad ``seq_len``, too few transitions stored, or no window that stays
                inside one episode.
        """
        length = self.seq_len if seq_len is None else _positive_int("IRISReplayBuffer.sample_sequence",
                                                                    "seq_len", seq_len)
        if length > self.size - 1:
            raise ValueError(
                f"IRISReplayBuffer.sample_sequence: seq_len={length} does not fit a buffer of "
                f"size={self.size}; valid: 1 <= seq_len <= {self.size - 1}"
            )
        starts = np.random.choice(self._valid_starts(length), size=self.batch_size)
        index = (starts[:, None] + np.arange(length + 1)) % self.size
        steps = index[:, :length]
        return (self.observations[index], self.actions[steps], self.rewards[steps],
                self.terminals[steps])

    def sample_single(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Sample a single stored transition ``(obs, action, reward, terminal)`` for online updates."""
        if len(self) == 0:
            raise ValueError("IRISReplayBuffer.sample_single: the buffer is empty; add transitions first")
        i = np.random.randint(len(self))
        return (self.observations[i].copy(), self.actions[i].copy(), float(self.rewards[i]),
                float(self.terminals[i]))


class IRISOnPolicyBuffer:
    """On-policy buffer for collecting trajectories during environment interaction.

    Stores the current episode as lists (observations, actions, rewards, terminal flags) before
    it goes to the main replay buffer; :meth:`clear` empties it for the next episode.

    Args:
        max_steps: maximum number of steps to store (default 1000); :meth:`add` beyond it
            raises ``RuntimeError``.

    Attributes:
        max_steps: maximum buffer capacity.
        observations, actions, rewards, terminals: the lists of stored steps (terminals as
            0.0 / 1.0).
    """

    def __init__(self, max_steps: int = 1000):
        self.max_steps = _positive_int("IRISOnPolicyBuffer", "max_steps", max_steps)
        self.observations: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.terminals: list[float] = []

    def __len__(self) -> int:
        return len(self.observations)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, terminal: bool) -> None:
        """Append one step (copies ``obs`` and ``action``; shapes must match the first step's)."""
        if len(self) >= self.max_steps:
            raise RuntimeError(
                f"IRISOnPolicyBuffer is full (max_steps={self.max_steps}); take get_arrays() and "
                "clear() it first"
            )
        obs = np.array(obs.detach().cpu() if hasattr(obs, "detach") else obs)
        act = np.array(action, dtype=np.float32).reshape(-1)
        if self.observations and (obs.shape != self.observations[0].shape
                                  or act.shape != self.actions[0].shape):
            raise ValueError(
                f"IRISOnPolicyBuffer.add: obs {obs.shape} / action {act.shape} differ from the "
                f"first step's {self.observations[0].shape} / {self.actions[0].shape}"
            )
        self.observations.append(obs)
        self.actions.append(act)
        self.rewards.append(float(np.asarray(reward).reshape(())))
        self.terminals.append(float(bool(np.asarray(terminal).reshape(()))))

    def clear(self) -> None:
        """Forget every stored step."""
        self.observations, self.actions, self.rewards, self.terminals = [], [], [], []

    def get_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(observations (T, ...), actions (T, A) float32, rewards (T,) float32,
        terminals (T,) float32)``; observations keep their dtype. Empty arrays when empty."""
        if not self.observations:
            return (np.zeros((0,), np.uint8), np.zeros((0, 0), np.float32),
                    np.zeros((0,), np.float32), np.zeros((0,), np.float32))
        return (np.stack(self.observations), np.stack(self.actions),
                np.asarray(self.rewards, np.float32), np.asarray(self.terminals, np.float32))
