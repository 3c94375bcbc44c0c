"""Sequence replay for Dreamer (pure numpy): the seed's ``ReplayBuffer`` API over
:class:`distwm.memory.replay.SequenceReplay`, the replay the Ray runtime shards.

Steps are in the replay format of :mod:`distwm.agent`: per step ``image`` and/or ``state``,
``action`` (the action that led to this observation, zero at an episode start), ``reward``,
``is_first``, ``is_terminal`` and ``is_last``. Each env is one stream, so a sampled sequence
is consecutive steps of one env: it runs across an episode start only where ``is_first``
marks it (the model resets its state there) and never across the ring's write position.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from distwm.memory.replay import SequenceReplay

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
    """FIFO replay of env steps that samples ``(batch_size, seq_len)`` sequences.

    Args:
        size: capacity in env steps (over all envs).
        obs_shape: ``(C, H, W)`` (image, stored uint8), ``(D,)`` (state, float32), or a dict
            ``{"image": ..., "state": ...}``.
        action_size: width of the action vectors.
        seq_len: length of the sampled sequences.
        batch_size: default number of sequences of :meth:`sample`.
        num_envs: parallel env streams fed together by :meth:`add_batch` / :meth:`add_chunk`.
        chunk_length: steps per stored block; :meth:`add_chunk` takes chunks of this length,
            :meth:`add` and :meth:`add_batch` collect single steps into them.
        seed: seed of the sampling generator.
        entries: extra per-step arrays stored with every step, ``{name: (shape, dtype)}``
            (``DataSpec.entries``; e.g. Dreamer's latents for its replay context); a step
            added without them stores zeros.
    """

    def __init__(self, size: int, obs_shape, action_size: int, seq_len: int, batch_size: int,
                 num_envs: int = 1, chunk_length: int = 1, seed: int | None = None,
                 entries: Mapping[str, tuple] | None = None):
        for name, value in (("size", size), ("action_size", action_size), ("seq_len", seq_len),
                            ("batch_size", batch_size), ("num_envs", num_envs),
                            ("chunk_length", chunk_length)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"ReplayBuffer {name} must be a positive integer, got {value!r}")
        if size < seq_len * num_envs:
            raise ValueError(
                f"ReplayBuffer size {size} must hold a sequence per env: size >= seq_len * "
                f"num_envs = {seq_len * num_envs}"
            )
        self.obs_shapes = _obs_shapes(obs_shape)
        self.action_size = int(action_size)
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.num_envs = int(num_envs)
        self.chunk_length = int(chunk_length)
        self.replay = SequenceReplay(int(size), self.chunk_length, self.seq_len, seed=seed)
        self.streams = [f"env{i}" for i in range(self.num_envs)]
        self._dtypes = {k: np.uint8 if k == "image" else np.float32 for k in self.obs_shapes}
        self._dtypes.update(action=np.float32, reward=np.float32, is_first=bool,
                            is_terminal=bool, is_last=bool)
        self._shapes = {**self.obs_shapes, "action": (self.action_size,), "reward": (),
                        "is_first": (), "is_terminal": (), "is_last": ()}
        self.entries = {k: (tuple(shape), np.dtype(dtype)) for k, (shape, dtype) in (entries or {}).items()}
        for key, (shape, dtype) in self.entries.items():
            self._shapes[key], self._dtypes[key] = shape, dtype
        self._pending: list[dict[str, np.ndarray]] = []
        self.episodes = 0

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.replay.capacity

    @property
    def steps(self) -> int:
        """Env steps added so far (all envs; including ones since evicted or still pending)."""
        return self.replay.total_inserted + len(self._pending) * self.num_envs

    def __len__(self) -> int:
        """Env steps stored and available to :meth:`sample`'s sequences."""
        return len(self.replay)

    def can_sample(self) -> bool:
        return self.replay.num_valid_starts > 0

    # -- insertion -----------------------------------------------------------------------------
    def add(self, obs: Mapping[str, Any], ac, rew: float, done: float, *,
            is_first: bool = False, is_last: bool | None = None) -> None:
        """Add one step of a single env (``num_envs == 1``).

        ``obs`` is the observation dict, ``ac`` the action that led to it (zeros at an
        episode start), ``rew`` the reward received on arriving, ``done`` whether the MDP
        terminated here; ``is_last`` (default ``done``) also marks a time-limit end.
        """
        if self.num_envs != 1:
            raise ValueError(
                f"add() is for a single env; this buffer has num_envs={self.num_envs}, use add_batch()"
            )
        missing = [k for k in self.obs_shapes if k not in obs]
        if missing:
            raise ValueError(f"observation lacks keys {missing}; it has {sorted(obs)}")
        step = {key: np.asarray(obs[key])[None] for key in self.obs_shapes}
        step.update(action=np.asarray(ac, np.float32)[None], reward=np.asarray([rew], np.float32),
                    is_first=np.asarray([is_first]), is_terminal=np.asarray([bool(done)]),
                    is_last=np.asarray([bool(done) if is_last is None else is_last]))
        self.add_batch(step)

    def add_batch(self, step: Mapping[str, Any]) -> None:
        """Add one step of every env: each value shaped ``(num_envs, ...)``."""
        self._pending.append(self._checked(step, 1))
        if len(self._pending) == self.chunk_length:
            chunk = {k: np.stack([s[k] for s in self._pending], 1) for k in self._shapes}
            self._pending = []
            self._insert(chunk)

    def add_chunk(self, chunk: Mapping[str, Any]) -> None:
        """Add ``chunk_length`` consecutive steps of every env: values ``(num_envs, L, ...)``."""
        if self._pending:
            raise ValueError(f"add_chunk() after {len(self._pending)} single steps of an unfinished chunk")
        self._insert({k: v for k, v in self._checked(chunk, 2).items()})

    def _checked(self, data: Mapping[str, Any], lead: int) -> dict[str, np.ndarray]:
        missing = [k for k in self._shapes if k not in data and k not in self.entries]
        if missing:
            raise ValueError(f"replay step lacks keys {missing}; it has {sorted(data)}")
        lead_shape = (self.num_envs,) if lead == 1 else (self.num_envs, self.chunk_length)
        out = {}
        for key, shape in self._shapes.items():
            if key in self.entries and key not in data:
                out[key] = np.zeros((*lead_shape, *shape), self._dtypes[key])
                continue
            value = np.asarray(data[key])
            if value.shape != (*lead_shape, *shape):
                raise ValueError(
                    f"replay {key!r} has shape {value.shape}, expected {(*lead_shape, *shape)}"
                )
            if key == "image" and value.dtype != np.uint8:
                raise ValueError(f"replay 'image' must be uint8, got {value.dtype}")
            out[key] = value.astype(self._dtypes[key], copy=False)
        return out

    def _insert(self, chunk: dict[str, np.ndarray]) -> None:
        self.replay.insert(chunk, self.streams)
        self.episodes += int(chunk["is_last"].sum())

    # -- sampling ------------------------------------------------------------------------------
    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The seed's time-major batch: ``(observations (T, B, ...), actions (T, B, A),
        rewards (T, B), terminals (T, B))`` of ``batch_size`` sequences of ``seq_len`` steps.

        ``observations`` are the stored images (uint8 ``(T, B, C, H, W)``), or the state vectors
        when the buffer holds no image; ``terminals`` are float32, 1.0 where the episode
        terminated. distwm's agents use :meth:`sample_batch` (batch-major dict, every key).
        """
        batch = self.sample_batch()
        key = "image" if "image" in batch else "state"
        if key not in batch:
            raise ValueError(f"sample(): the seed's tuple holds an 'image' or 'state' observation; "
                             f"this buffer stores {sorted(self.obs_shapes)} (use sample_batch())")
        time_major = lambda x: np.ascontiguousarray(np.swapaxes(x, 0, 1))  # noqa: E731
        return (time_major(batch[key]), time_major(batch["action"]), time_major(batch["reward"]),
                time_major(batch["is_terminal"].astype(np.float32)))

    def sample_batch(self, batch_size: int | None = None, seq_len: int | None = None,
                     stepids: bool = False, online: bool = False) -> dict[str, np.ndarray]:
        """``batch_size`` sequences of ``seq_len`` consecutive steps, as ``(B, T, ...)`` arrays.

        Keys: the observation keys, ``action``, ``reward``, ``is_first``, ``is_terminal``,
        ``is_last`` (the agent protocol's batch-major dict; :meth:`sample` is the seed's
        time-major tuple). ``seq_len`` defaults to the one given at construction and may be
        shorter (another named sample of the same data). ``stepids``: also ``stepid``
        ``(B, T)``, the names :meth:`update` takes; ``online``: the freshest sequences not
        trained on yet first (DreamerV3's online queue, :meth:`SequenceReplay.sample`).
        """
        if seq_len is not None and not 1 <= seq_len <= self.seq_len:
            raise ValueError(f"this buffer samples sequences of {self.seq_len} steps (or shorter), not {seq_len}")
        if not self.can_sample():
            raise ValueError(
                f"ReplayBuffer holds {len(self)} steps, no complete sequence of "
                f"{self.seq_len} yet; add more steps before sampling"
            )
        return self.replay.sample(int(batch_size or self.batch_size), seq_len=seq_len,
                                  stepids=stepids, online=online)

    def update(self, stepid: np.ndarray, values: Mapping[str, np.ndarray]) -> int:
        """Overwrite stored entries at the steps ``stepid`` names (see
        :meth:`SequenceReplay.update`); returns how many steps were still held."""
        return self.replay.update(stepid, values)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write the stored steps and counters to ``path`` (``.npz`` or ``.h5``)."""
        if self._pending:
            raise ValueError(f"save() with {len(self._pending)} steps of an unfinished chunk pending")
        return self.replay.save(path, extra={"episodes": self.episodes})

    def load(self, path) -> None:
        """Restore what :meth:`save` wrote (capacity, chunk length and seq_len must match)."""
        extra = self.replay.load(path)
        self.episodes = int(extra.get("episodes", 0))


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
