"""Sequence replay for Dreamer (pure numpy).

:class:`ReplayBuffer` is a ring buffer of env steps in the replay format of
:mod:`distwm.agent`: per step ``image`` and/or ``state``, ``action`` (the action that led to
this observation, zero at an episode start), ``reward``, ``is_first``, ``is_terminal`` and
``is_last``. Steps of ``num_envs`` parallel envs are stored in one stream per env, so that a
sampled sequence is always consecutive steps of one env: it can run across an episode start
only where ``is_first`` marks it (the model resets its state there) and never across the
ring's write position (where the newest step meets the oldest).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ReplayBuffer", "Memory", "Episode", "REPLAY_KEYS"]

#: Keys of a replay step besides the observation keys.
REPLAY_KEYS = ("action", "reward", "is_first", "is_terminal", "is_last")


def _obs_shapes(obs_shape: Sequence[int] | Mapping[str, Sequence[int]]) -> dict[str, tuple]:
    if isinstance(obs_shape, Mapping):
        shapes = {str(k): tuple(int(s) for s in v) for k, v in obs_shape.items()}
    else:
        shape = tuple(int(s) for s in obs_shape)
        if len(shape) not in (1, 3):
            raise ValueError(
                f"obs_shape {shape} must be (C, H, W) for images or (D,) for vectors, or a dict"
            )
        shapes = {"image" if len(shape) == 3 else "state": shape}
    if not shapes or set(shapes) - {"image", "state"}:
        raise ValueError(f"observation keys must be 'image' and/or 'state', got {sorted(shapes)}")
    return shapes


class ReplayBuffer:
    """Fixed-size FIFO replay of env steps that samples ``(batch, seq_len)`` sequences.

    Args:
        size: capacity in steps (over all envs; each env stream holds ``size // num_envs``).
        obs_shape: ``(C, H, W)`` (image, stored uint8), ``(D,)`` (state, float32), or a dict
            ``{"image": ..., "state": ...}``.
        action_size: width of the action vectors.
        seq_len: default sequence length of :meth:`sample`.
        batch_size: default number of sequences of :meth:`sample`.
        num_envs: parallel env streams fed together by :meth:`add_batch` / :meth:`add_chunk`.
        seed: seed of the sampling generator.
    """

    def __init__(self, size: int, obs_shape, action_size: int, seq_len: int, batch_size: int,
                 num_envs: int = 1, seed: int | None = None):
        for name, value in (("size", size), ("action_size", action_size), ("seq_len", seq_len),
                            ("batch_size", batch_size), ("num_envs", num_envs)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"ReplayBuffer {name} must be a positive integer, got {value!r}")
        self.capacity = int(size) // int(num_envs)
        if self.capacity < seq_len:
            raise ValueError(
                f"ReplayBuffer size {size} gives {self.capacity} steps per env stream, fewer "
                f"than seq_len={seq_len}; use size >= seq_len * num_envs"
            )
        self.obs_shapes = _obs_shapes(obs_shape)
        self.action_size = int(action_size)
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.num_envs = int(num_envs)
        self.rng = np.random.default_rng(seed)
        n, cap = self.num_envs, self.capacity
        self.data: dict[str, np.ndarray] = {}
        for key, shape in self.obs_shapes.items():
            dtype = np.uint8 if key == "image" else np.float32
            self.data[key] = np.zeros((n, cap, *shape), dtype)
        self.data["action"] = np.zeros((n, cap, self.action_size), np.float32)
        self.data["reward"] = np.zeros((n, cap), np.float32)
        for key in ("is_first", "is_terminal", "is_last"):
            self.data[key] = np.zeros((n, cap), bool)
        self.idx = 0
        self.full = False
        self.steps = 0
        self.episodes = 0

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def filled(self) -> int:
        """Steps stored per env stream."""
        return self.capacity if self.full else self.idx

    def __len__(self) -> int:
        return self.filled * self.num_envs

    def can_sample(self, seq_len: int | None = None) -> bool:
        return self.filled >= (seq_len or self.seq_len)

    # -- insertion -----------------------------------------------------------------------------
    def add(self, obs: Mapping[str, Any], ac, rew: float, done: float, *,
            is_first: bool = False, is_last: bool | None = None) -> None:
        """Add one step of a single env (``num_envs == 1``).

        ``obs`` is the observation dict, ``ac`` the action that led to it (zeros at an
        episode start), ``rew`` the reward received on arriving, ``done`` whether the MDP
        terminated here; ``is_last`` (default ``done``) also marks a time-limit end.
        """
        if self.num_envs != 1:
            raise ValueError(f"add() is for a single env; this buffer has num_envs={self.num_envs}, use add_batch()")
        step = {key: np.asarray(obs[key])[None] for key in self.obs_shapes if key in obs}
        step.update(action=np.asarray(ac, np.float32)[None], reward=np.asarray([rew], np.float32),
                    is_first=np.asarray([is_first]), is_terminal=np.asarray([bool(done)]),
                    is_last=np.asarray([bool(done) if is_last is None else is_last]))
        self.add_batch(step)

    def add_batch(self, step: Mapping[str, Any]) -> None:
        """Add one step of every env: each value shaped ``(num_envs, ...)``."""
        self.add_chunk({key: np.asarray(value)[:, None] for key, value in step.items()})

    def add_chunk(self, chunk: Mapping[str, Any]) -> None:
        """Add ``L`` consecutive steps of every env: each value shaped ``(num_envs, L, ...)``."""
        missing = [k for k in (*self.obs_shapes, *REPLAY_KEYS) if k not in chunk]
        if missing:
            raise ValueError(f"replay chunk lacks keys {missing}; it has {sorted(chunk)}")
        length = np.asarray(chunk["reward"]).shape[1] if np.ndim(chunk["reward"]) == 2 else -1
        for key, store in self.data.items():
            value = np.asarray(chunk[key])
            expected = (self.num_envs, length, *store.shape[2:])
            if value.shape != expected:
                raise ValueError(
                    f"replay chunk {key!r} has shape {value.shape}, expected {expected} "
                    "(num_envs, steps, ...)"
                )
        if length > self.capacity:
            raise ValueError(f"chunk of {length} steps exceeds the stream capacity {self.capacity}")
        positions = (self.idx + np.arange(length)) % self.capacity
        for key, store in self.data.items():
            store[:, positions] = np.asarray(chunk[key]).astype(store.dtype, copy=False)
        self.full = self.full or self.idx + length >= self.capacity
        self.idx = int((self.idx + length) % self.capacity)
        self.steps += length * self.num_envs
        self.episodes += int(np.asarray(chunk["is_last"]).sum())

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, batch_size: int | None = None, seq_len: int | None = None) -> dict[str, np.ndarray]:
        """``batch_size`` sequences of ``seq_len`` consecutive steps, as ``(B, T, ...)`` arrays.

        Keys: the observation keys, ``action``, ``reward``, ``is_first``, ``is_terminal``,
        ``is_last``. (The seed returned a time-major tuple; distwm uses the agent protocol's
        batch-major dict.)
        """
        batch = int(batch_size or self.batch_size)
        length = int(seq_len or self.seq_len)
        if length > self.capacity:
            raise ValueError(f"seq_len {length} exceeds the stream capacity {self.capacity}")
        if not self.can_sample(length):
            raise ValueError(
                f"ReplayBuffer holds {self.filled} steps per env, fewer than seq_len={length}; "
                "add more steps before sampling"
            )
        envs = self.rng.integers(0, self.num_envs, batch)
        if self.full:
            # Start at least seq_len steps before the write position (never across it).
            offsets = self.rng.integers(0, self.capacity - length + 1, batch)
            starts = (self.idx + offsets) % self.capacity
        else:
            starts = self.rng.integers(0, self.idx - length + 1, batch)
        index = (starts[:, None] + np.arange(length)[None]) % self.capacity
        return {key: store[envs[:, None], index] for key, store in self.data.items()}

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str) -> str:
        """Write the buffer (contents and counters) to an ``.npz`` file; returns the path."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        meta = np.asarray([self.idx, int(self.full), self.steps, self.episodes], np.int64)
        tmp = path + ".tmp.npz"
        np.savez(tmp, __meta__=meta, **self.data)
        os.replace(tmp, path)
        return path

    def load(self, path: str) -> None:
        """Restore what :meth:`save` wrote; the buffer's shapes must match."""
        try:
            archive = np.load(os.fspath(path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path!r} is not a readable replay file: {exc}") from exc
        with archive:
            for key, store in self.data.items():
                if key not in archive or archive[key].shape != store.shape:
                    found = archive[key].shape if key in archive else "missing"
                    raise ValueError(
                        f"replay file {path!r}: {key!r} is {found}, this buffer needs {store.shape}"
                    )
                store[...] = archive[key]
            idx, full, steps, episodes = (int(v) for v in archive["__meta__"])
        self.idx, self.full, self.steps, self.episodes = idx, bool(full), steps, episodes


class Memory:
    """A bounded deque of transitions with uniform sampling (the seed's PlaNet helper)."""

    def __init__(self, capacity: int = 10000):
        if not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"Memory capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.buffer: deque = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.buffer)

    def append(self, *args) -> None:
        """Append one transition, e.g. ``(obs, action, reward, done, info)``."""
        self.buffer.append(args)

    def sample(self, batch_size: int) -> list:
        """``batch_size`` transitions drawn without replacement."""
        if batch_size > len(self.buffer):
            raise ValueError(f"cannot sample {batch_size} transitions from {len(self.buffer)} stored")
        index = np.random.choice(len(self.buffer), batch_size, replace=False)
        return [self.buffer[i] for i in index]


class Episode:
    """One episode as lists of observations, actions, rewards, terminals and infos."""

    def __init__(self, observation, action=None, reward=None, terminal=None, info=None):
        self.observations = [observation]
        self.actions = [] if action is None else [action]
        self.rewards = [] if reward is None else [reward]
        self.terminals = [] if terminal is None else [terminal]
        self.infos = [info] if info is not None else []

    def __len__(self) -> int:
        return len(self.actions)

    def append(self, action, observation, reward, terminal, info=None) -> None:
        self.actions.append(action)
        self.observations.append(observation)
        self.rewards.append(reward)
        self.terminals.append(terminal)
        if info is not None:
            self.infos.append(info)

    @property
    def total_reward(self) -> float:
        return float(np.sum(self.rewards)) if self.rewards else 0.0
