"""DIAMOND's replay data: a circular buffer of transitions, windows of consecutive steps for the
denoiser and the reward/termination model, and their collate.

Everything is stored in preallocated numpy arrays (frames in ``obs_dtype``, uint8 by default;
actions int64 indices when ``action_dim == 1``, float32 vectors otherwise; rewards float32;
dones bool), never as Python objects, so :meth:`ReplayBuffer.state_dict` is plain arrays and
numbers (``numpy.savez`` / ``torch.save`` without pickled objects).

Windows (:meth:`ReplayBuffer.sample_sequence`, :class:`SequenceDataset`) follow the reference's
sampler (eloialonso/diamond ``src/data/batch_sampler.py``): ``sequence_length`` steps in all, of
which the first ``burn_in`` condition the rest. The last ``sequence_length - burn_in`` steps are
always real steps of one episode; burn-in steps from before that episode's start (or before the
oldest stored step) are zero padding with ``mask`` False, as the reference pads before an
episode's start.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ReplayBuffer", "SequenceDataset", "collate_fn"]

_KEYS = ("obs", "actions", "rewards", "dones", "next_obs")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class ReplayBuffer:
    """Replay buffer for storing environment interactions. Stores (observation, action, reward,
    done, next_observation) tuples; once ``capacity`` is reached each new transition overwrites
    the oldest. ``sample*`` return tensors on ``device``; ``seed`` seeds the sampling."""

    def __init__(self, capacity: int = 1000, obs_shape: tuple[int, int, int] = (64, 64, 3), action_dim: int = 1,
                 device: str = "cpu", *, obs_dtype: Any = np.uint8, seed: int | None = None):
        self.capacity = _positive_int("ReplayBuffer capacity", capacity)
        shape = tuple(obs_shape) if isinstance(obs_shape, (tuple, list)) else None
        if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ValueError(f"ReplayBuffer obs_shape must be a tuple of positive integers, got {obs_shape!r}")
        self.obs_shape = tuple(int(s) for s in shape)
        self.action_dim = _positive_int("ReplayBuffer action_dim", action_dim)
        self.device = torch.device(device)
        self.obs_dtype = np.dtype(obs_dtype)
        self._rng = np.random.default_rng(seed)
        self._allocate(self.capacity)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, *self.obs_shape), self.obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = (np.zeros(capacity, np.int64) if self.action_dim == 1
                        else np.zeros((capacity, self.action_dim), np.float32))
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, bool)
        self.ptr = self.size = self.total_added = 0

    def __len__(self) -> int:
        return self.size

    # -- writing ------------------------------------------------------------------------------
    def _frame(self, name: str, value: Any) -> np.ndarray:
        array = np.asarray(value)
        if array.shape != self.obs_shape:
            raise ValueError(f"ReplayBuffer.add: {name} has shape {array.shape}, expected {self.obs_shape}")
        if self.obs_dtype == np.uint8 and array.dtype != np.uint8:
            raise ValueError(f"ReplayBuffer.add: {name} is {array.dtype} but the buffer stores uint8 frames; "
                             "pass uint8 frames or build the buffer with obs_dtype=np.float32")
        return array

    def _action(self, action: Any) -> Any:
        array = np.asarray(action)
        if self.action_dim == 1:
            if array.size != 1 or not float(array.reshape(-1)[0]).is_integer():
                raise ValueError(f"ReplayBuffer.add: action must be one integer index (action_dim=1), got {action!r}")
            return int(array.reshape(-1)[0])
        if array.shape != (self.action_dim,):
            raise ValueError(f"ReplayBuffer.add: action has shape {array.shape}, expected ({self.action_dim},)")
        return array.astype(np.float32)

    def add(self, obs: np.ndarray, action: int, reward: float, done: bool, next_obs: np.ndarray) -> None:
        """Add a transition to the buffer."""
        obs, next_obs, action = self._frame("obs", obs), self._frame("next_obs", next_obs), self._action(action)
        i = self.ptr
        self.obs[i], self.next_obs[i], self.actions[i] = obs, next_obs, action
        self.rewards[i], self.dones[i] = float(reward), bool(done)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    def is_ready(self, min_size: int) -> bool:
        """Check if buffer has enough samples."""
        return self.size >= int(min_size)

    # -- reading ------------------------------------------------------------------------------
    def _physical(self, logical: np.ndarray) -> np.ndarray:
        """Chronological positions (0: the oldest stored) -> array rows."""
        start = self.ptr if self.size == self.capacity else 0
        return (start + logical) % self.capacity

    def _tensors(self, arrays: dict[str, np.ndarray], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        device = self.device if device is None else device
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Sample a random batch of transitions (uniformly, with replacement)."""
        batch_size = _positive_int("batch_size", batch_size)
        if self.size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty; add transitions first")
        rows = self._rng.integers(0, self.size, batch_size)
        return self._tensors({k: getattr(self, k)[rows] for k in _KEYS})

    def valid_window_ends(self, sequence_length: int, burn_in: int = 0) -> np.ndarray:
        """Chronological positions that can end a window: the last ``sequence_length -
        burn_in`` steps up to them are stored and belong to one episode."""
        length = _positive_int("sequence_length", sequence_length)
        if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or not 0 <= burn_in < length:
            raise ValueError(f"burn_in must be an integer in [0, sequence_length={length}), got {burn_in!r}")
        horizon = length - int(burn_in)
        dones = self.dones[self._physical(np.arange(self.size))]
        counts = np.concatenate([[0], np.cumsum(dones)])
        ends = np.arange(horizon - 1, self.size)
        # no episode end among the horizon's steps before its last one
        return ends[counts[ends] - counts[ends - horizon + 1] == 0]

    def windows(self, ends: np.ndarray, sequence_length: int) -> dict[str, np.ndarray]:
        """The ``sequence_length`` steps up to each chronological position of ``ends``, as
        numpy arrays ``(len(ends), sequence_length, ...)`` with ``mask`` False on padding."""
        ends = np.asarray(ends, np.int64)
        dones = self.dones[self._physical(np.arange(self.size))]
        last_end = np.maximum.accumulate(np.where(dones, np.arange(self.size), -1))
        boundary = np.where(ends >= 1, last_end[np.maximum(ends - 1, 0)], -1)  # that episode starts after it
        positions = ends[:, None] + np.arange(1 - sequence_length, 1)[None, :]
        mask = positions > boundary[:, None]
        rows = self._physical(np.maximum(positions, 0))
        out = {}
        for key in _KEYS:
            values = getattr(self, key)[rows]
            values[~mask] = 0
            out[key] = values
        out["mask"] = mask
        return out

    def sample_sequence(self, batch_size: int, sequence_length: int, burn_in: int = 0) -> dict[str, torch.Tensor]:
        """Sample a sequence of transitions for training.

        Args:
            batch_size: Number of sequences to sample
            sequence_length: Total sequence length (burn_in + horizon)
            burn_in: Number of initial frames to use for conditioning

        Returns:
            Dictionary with tensors of shape (batch_size, sequence_length, ...): ``obs``,
            ``actions``, ``rewards``, ``dones``, ``next_obs`` and ``mask`` (False on padding).
        """
        batch_size = _positive_int("batch_size", batch_size)
        ends = self.valid_window_ends(sequence_length, burn_in)
        if len(ends) == 0:
            raise ValueError(f"ReplayBuffer.sample_sequence: no {int(sequence_length) - int(burn_in)} consecutive "
                             f"steps of one episode among the {self.size} stored transitions")
        return self._tensors(self.windows(self._rng.choice(ends, batch_size), int(sequence_length)))

    # -- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Return a serializable state dict for checkpointing: numpy arrays of the stored
        transitions (oldest first) and integer metadata."""
        rows = self._physical(np.arange(self.size))
        state = {k: getattr(self, k)[rows].copy() for k in _KEYS}
        state.update(capacity=self.capacity, obs_shape=list(self.obs_shape), action_dim=self.action_dim,
                     total_added=self.total_added)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Load state previously produced by state_dict(); the buffer takes the saved capacity
        (resizing its arrays if it differs)."""
        missing = [k for k in (*_KEYS, "capacity", "obs_shape", "action_dim") if k not in state]
        if missing:
            raise ValueError(f"ReplayBuffer.load_state_dict: missing {missing}")
        shape, action_dim = tuple(int(s) for s in np.asarray(state["obs_shape"])), int(np.asarray(state["action_dim"]))
        if shape != self.obs_shape or action_dim != self.action_dim:
            raise ValueError(f"ReplayBuffer.load_state_dict: saved obs_shape {shape} / action_dim {action_dim} differ "
                             f"from this buffer's {self.obs_shape} / {self.action_dim}")
        arrays = {k: np.asarray(state[k]) for k in _KEYS}
        size = len(arrays["rewards"])
        capacity = _positive_int("saved capacity", int(np.asarray(state["capacity"])))
        if size > capacity or any(len(a) != size for a in arrays.values()):
            raise ValueError(f"ReplayBuffer.load_state_dict: arrays of lengths {[len(a) for a in arrays.values()]} "
                             f"for a capacity of {capacity}")
        self._allocate(capacity)
        for key, values in arrays.items():
            getattr(self, key)[:size] = values
        self.size, self.ptr = size, size % capacity
        self.total_added = int(np.asarray(state.get("total_added", size)))


class SequenceDataset(Dataset):
    """PyTorch Dataset for sampling sequences from the replay buffer. Used for training the
    diffusion world model.

    Item ``i`` is the ``i``-th window (oldest first) of ``sequence_length`` steps, the first
    ``burn_in`` conditioning the rest (DIAMOND's denoiser: 4 + 1): a dict of CPU tensors
    ``(sequence_length, ...)`` with the keys of :meth:`ReplayBuffer.sample_sequence`. The
    windows follow the buffer as it grows."""

    def __init__(self, replay_buffer: ReplayBuffer, sequence_length: int = 5, burn_in: int = 4):
        if not isinstance(replay_buffer, ReplayBuffer):
            raise ValueError(f"SequenceDataset needs a ReplayBuffer, got {type(replay_buffer).__name__}")
        self.replay_buffer = replay_buffer
        self.sequence_length = _positive_int("sequence_length", sequence_length)
        replay_buffer.valid_window_ends(self.sequence_length, burn_in)  # checks burn_in
        self.burn_in = int(burn_in)
        self._ends: np.ndarray | None = None
        self._version = -1

    def _valid_ends(self) -> np.ndarray:
        if self._version != self.replay_buffer.total_added or self._ends is None:
            self._ends = self.replay_buffer.valid_window_ends(self.sequence_length, self.burn_in)
            self._version = self.replay_buffer.total_added
        return self._ends

    def __len__(self) -> int:
        return len(self._valid_ends())

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ends = self._valid_ends()
        if not -len(ends) <= index < len(ends):
            raise IndexError(f"SequenceDataset index {index} out of range for {len(ends)} windows")
        window = self.replay_buffer.windows(ends[[index]], self.sequence_length)
        return self.replay_buffer._tensors({k: v[0] for k, v in window.items()}, torch.device("cpu"))


def collate_fn(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate function for the dataloader: stacks each key into a leading batch dimension."""
    if not batch:
        raise ValueError("collate_fn: empty batch")
    keys = set(batch[0])
    for item in batch[1:]:
        if set(item) != keys:
            raise ValueError(f"collate_fn: items have different keys: {sorted(keys)} vs {sorted(item)}")
    return {k: torch.stack([item[k] for item in batch]) for k in batch[0]}
