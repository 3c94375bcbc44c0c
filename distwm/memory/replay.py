"""A ring buffer of env-step streams that samples contiguous sequences (pure numpy, no Ray).

Data arrive as fixed-length *chunks*: ``chunk[key]`` shaped ``(N, L, ...)`` holds ``L``
consecutive steps of ``N`` streams (one stream per env). Each stream's chunks are linked in
the order they arrive, so a sampled sequence of length ``T`` may run from the end of one chunk
into the next chunk of the same stream; it never mixes streams. Episode boundaries inside a
stream are marked by ``is_first`` (DESIGN.md "Data"): a sequence may cross an episode start
only there, and the model resets its state at that step.

Storage is a ring of ``capacity // L`` blocks of ``L`` steps; the oldest block is overwritten
first. Images stay ``uint8``. Sampling is uniform over every valid sequence start.

Used by the Ray ``ReplayShard`` actor and by single-process training loops alike.
"""

from __future__ import annotations

import math
import os
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from distwm.memory.array_files import META_KEY as _META_KEY
from distwm.memory.array_files import load_arrays, save_arrays

__all__ = ["SequenceReplay"]

_BLOCK_ARRAYS = ("succ", "valid", "block_start")


class SequenceReplay:
    """Ring buffer of chunked env-step streams with contiguous sequence sampling.

    Args:
        capacity: maximum number of env steps held (rounded down to whole chunks).
        chunk_length: ``L``, the number of steps in every inserted chunk.
        seq_len: ``T``, the length of the sequences :meth:`sample` returns (may exceed ``L``).
        seed: seed of the sampling generator.
    """

    def __init__(self, capacity: int, chunk_length: int, seq_len: int, seed: int | None = None):
        for name, value in (("capacity", capacity), ("chunk_length", chunk_length),
                            ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if capacity < chunk_length:
            raise ValueError(
                f"capacity ({capacity}) must hold at least one chunk of chunk_length={chunk_length}"
            )
        self.chunk_length = int(chunk_length)
        self.seq_len = int(seq_len)
        self.num_blocks = int(capacity) // self.chunk_length
        self.capacity = self.num_blocks * self.chunk_length
        # blocks a sequence may touch after its first: ceil((T - 1) / L)
        self._hops = math.ceil((self.seq_len - 1) / self.chunk_length)
        self._rng = np.random.default_rng(seed)
        self._data: dict[str, np.ndarray] = {}
        self._succ = np.full(self.num_blocks, -1, dtype=np.int64)
        self._valid = np.zeros(self.num_blocks, dtype=np.int64)
        self._block_start = np.zeros(self.num_blocks, dtype=np.int64)
        self._block_stream: list[str | None] = [None] * self.num_blocks
        # stream -> {"tail": recent blocks (oldest first), "next": expected next step index}
        self._streams: dict[str, dict[str, Any]] = {}
        self._next = 0
        self._filled = 0
        self.total_inserted = 0
        # fresh sequences for online sampling: (block, offset, stream, block start step)
        self._online: deque = deque(maxlen=self.num_blocks)
        self.online_sampled = 0

    # -- properties ------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Env steps currently stored."""
        return self._filled * self.chunk_length

    @property
    def fill(self) -> float:
        """``size / capacity``."""
        return self.size / self.capacity

    @property
    def num_valid_starts(self) -> int:
        """How many distinct sequences :meth:`sample` can return now."""
        return int(self._valid.sum())

    @property
    def keys(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return self.size

    # -- insert ----------------------------------------------------------------------------
    def _allocate(self, chunk: Mapping[str, np.ndarray]) -> None:
        for key, value in chunk.items():
            arr = np.asarray(value)
            self._data[key] = np.zeros((self.num_blocks, self.chunk_length, *arr.shape[2:]),
                                       dtype=arr.dtype)

    def _check_chunk(self, chunk: Mapping[str, np.ndarray], num_streams: int) -> None:
        if not chunk:
            raise ValueError("insert() needs a non-empty chunk dict")
        if self._data and set(chunk) != set(self._data):
            raise ValueError(
                f"chunk keys {sorted(chunk)} differ from the buffer's keys {sorted(self._data)}"
            )
        for key, value in chunk.items():
            arr = np.asarray(value)
            if arr.shape[:2] != (num_streams, self.chunk_length):
                raise ValueError(
                    f"chunk[{key!r}] has shape {arr.shape}; expected ({num_streams}, "
                    f"{self.chunk_length}, ...) for {num_streams} streams of chunk_length "
                    f"{self.chunk_length}"
                )
            if key in self._data and arr.shape[2:] != self._data[key].shape[2:]:
                raise ValueError(
                    f"chunk[{key!r}] has per-step shape {arr.shape[2:]}, the buffer holds "
                    f"{self._data[key].shape[2:]}"
                )

    def _evict(self, block: int) -> None:
        """Forget what ``block`` held before it is overwritten (it is the oldest block)."""
        stream = self._block_stream[block]
        if stream is None:
            return
        info = self._streams.get(stream)
        if info is not None:
            tail: deque = info["tail"]
            if tail and tail[0] == block:
                tail.popleft()
            if not tail:
                del self._streams[stream]
        self._succ[block] = -1
        self._valid[block] = 0
        self._block_stream[block] = None

    def _valid_starts(self, steps_after: int) -> int:
        return int(np.clip(self.chunk_length + steps_after - self.seq_len + 1, 0,
                           self.chunk_length))

    def _link(self, block: int, stream: str, start: int) -> None:
        info = self._streams.get(stream)
        if info is None or info["next"] != start or not info["tail"]:
            # a new stream, or a gap (lost chunk): start a new chain
            info = {"tail": deque(maxlen=self._hops + 1), "next": start, "online": start}
            self._streams[stream] = info
        else:
            self._succ[info["tail"][-1]] = block
        info["tail"].append(block)
        info["next"] = start + self.chunk_length
        self._block_stream[block] = stream
        self._block_start[block] = start
        for j, b in enumerate(reversed(info["tail"])):
            self._valid[b] = self._valid_starts(j * self.chunk_length)
        self._queue_fresh(stream, info)

    def _queue_fresh(self, stream: str, info: dict[str, Any]) -> None:
        """Queue the stream's newly complete non-overlapping sequences for online sampling."""
        while info["online"] + self.seq_len <= info["next"]:
            step = info["online"]
            for b in info["tail"]:
                offset = step - int(self._block_start[b])
                if 0 <= offset < self.chunk_length:
                    self._online.append((b, offset, stream, int(self._block_start[b])))
                    break
            info["online"] = step + self.seq_len

    def insert(self, chunk: Mapping[str, np.ndarray], stream_ids: Sequence[str],
               start_steps: Sequence[int] | None = None) -> int:
        """Add one chunk per stream; returns the number of env steps inserted.

        ``chunk[key]`` is ``(N, L, ...)``; ``stream_ids[i]`` names the stream of row ``i``
        and ``start_steps[i]`` is the index (within that stream) of the row's first step.
        A row links to the stream's previous chunk only when it starts exactly where that
        one ended; otherwise (first chunk, or a chunk was lost) it starts a new chain.
        ``start_steps`` defaults to "continues the stream".
        """
        num = len(stream_ids)
        if num > self.num_blocks:
            raise ValueError(
                f"insert of {num} chunks exceeds the buffer's {self.num_blocks} blocks "
                f"(capacity {self.capacity} steps); raise capacity"
            )
        if not all(isinstance(s, str) for s in stream_ids):
            raise ValueError(f"stream_ids must be strings, got {list(stream_ids)!r}")
        if len(set(stream_ids)) != num:
            raise ValueError(f"stream_ids must be distinct within one insert, got {list(stream_ids)}")
        self._check_chunk(chunk, num)
        if start_steps is None:
            start_steps = [self._streams[s]["next"] if s in self._streams else 0 for s in stream_ids]
        if len(start_steps) != num:
            raise ValueError(f"got {len(start_steps)} start_steps for {num} streams")
        if not self._data:
            self._allocate(chunk)
        for i, stream in enumerate(stream_ids):
            block = self._next
            self._evict(block)
            for key, value in chunk.items():
                self._data[key][block] = value[i]
            self._link(block, stream, int(start_steps[i]))
            self._next = (self._next + 1) % self.num_blocks
            self._filled = min(self._filled + 1, self.num_blocks)
        steps = num * self.chunk_length
        self.total_inserted += steps
        return steps

    # -- sample ----------------------------------------------------------------------------
    def sample(self, batch_size: int, rng: np.random.Generator | None = None,
               seq_len: int | None = None, online: bool = False,
               stepids: bool = False) -> dict[str, np.ndarray]:
        """``batch_size`` sequences, uniform over valid starts: ``{key: (B, T, ...)}``.

        ``seq_len`` (default: the buffer's ``T``) may be shorter than ``T`` (a second named
        sample of the same stream, e.g. single frames); it starts where a ``T``-step sequence
        could start. ``online``: the first sequences are the freshest ones not sampled online
        yet (each stream's newest non-overlapping ``T``-step sequences, once each), the rest
        uniform (DreamerV3's online queue). ``stepids``: also ``stepid`` ``(B, T)`` int64, each
        step's name for :meth:`update` (chunk serial number x ``L`` + index in the chunk)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        length = self.seq_len if seq_len is None else int(seq_len)
        if not 1 <= length <= self.seq_len:
            raise ValueError(f"seq_len must be in [1, {self.seq_len}] for this buffer, got {seq_len!r}")
        total = self.num_valid_starts
        if total == 0:
            raise ValueError(
                f"no sequence of length {self.seq_len} is available yet ({self.size} steps stored)"
            )
        rng = rng or self._rng
        cum = np.cumsum(self._valid)
        draws = rng.integers(0, total, size=batch_size)
        first = np.searchsorted(cum, draws, side="right")
        offsets = draws - (cum[first] - self._valid[first])
        if online:
            self._take_fresh(first, offsets)
        pos = offsets[:, None] + np.arange(length)[None, :]
        hop, within = np.divmod(pos, self.chunk_length)
        chain = np.empty((batch_size, self._hops + 1), dtype=np.int64)
        chain[:, 0] = first
        for h in range(1, self._hops + 1):
            chain[:, h] = self._succ[chain[:, h - 1]]
        blocks = np.take_along_axis(chain, hop, axis=1)
        if (blocks < 0).any():  # pragma: no cover - guarded by the valid-start bookkeeping
            raise RuntimeError("replay chain bookkeeping is inconsistent")
        flat = blocks * self.chunk_length + within
        out = {}
        for key, arr in self._data.items():
            flat_arr = arr.reshape(self.num_blocks * self.chunk_length, *arr.shape[2:])
            out[key] = flat_arr[flat]
        if stepids:
            out["stepid"] = self._serials()[blocks] * self.chunk_length + within
        return out

    def _serials(self) -> np.ndarray:
        """The serial number (0, 1, ... in insertion order) of the chunk each block holds: chunk
        ``s`` went to block ``s % num_blocks`` (blocks are filled in ring order)."""
        chunks = self.total_inserted // self.chunk_length
        blocks = np.arange(self.num_blocks, dtype=np.int64)
        # the newest chunk in block b: the largest s < chunks with s % num_blocks == b
        return chunks - 1 - (chunks - 1 - blocks) % self.num_blocks

    def update(self, stepid: np.ndarray, values: Mapping[str, np.ndarray]) -> int:
        """Overwrite stored ``values[key]`` ``(B, T, ...)`` at the steps named by ``stepid``
        ``(B, T)`` (from :meth:`sample`); steps no longer held are skipped. Returns how many
        steps were written. Only keys the buffer already holds can be updated."""
        stepid = np.asarray(stepid, np.int64)
        unknown = sorted(set(values) - set(self._data))
        if unknown:
            raise ValueError(f"update() keys {unknown} are not stored here; stored keys: {self.keys}")
        for key, value in values.items():
            if np.shape(value)[:stepid.ndim] != stepid.shape:
                raise ValueError(f"update() values[{key!r}] has shape {np.shape(value)}; "
                                 f"expected {stepid.shape} + {self._data[key].shape[2:]}")
        serial, within = np.divmod(stepid.reshape(-1), self.chunk_length)
        chunks = self.total_inserted // self.chunk_length
        held = (serial < chunks) & (serial >= chunks - self._filled) & (serial >= 0)
        flat = (serial[held] % self.num_blocks) * self.chunk_length + within[held]
        for key, value in values.items():
            arr = self._data[key]
            store = arr.reshape(self.num_blocks * self.chunk_length, *arr.shape[2:])
            vals = np.asarray(value).reshape(-1, *arr.shape[2:])
            store[flat] = vals[held].astype(arr.dtype, copy=False)
        return int(held.sum())

    def _take_fresh(self, first: np.ndarray, offsets: np.ndarray) -> None:
        """Put queued fresh sequences (still held, whole) in the first rows of a draw."""
        row = 0
        while row < len(first) and self._online:
            block, offset, stream, start = self._online.popleft()
            if (self._block_stream[block] == stream and int(self._block_start[block]) == start
                    and offset < self._valid[block]):
                first[row], offsets[row] = block, offset
                row += 1
        self.online_sampled += row

    # -- persistence -----------------------------------------------------------------------
    def chunk_keys(self) -> list[tuple[str, int]]:
        """``(stream id, start step)`` of every chunk held, oldest block first."""
        n = self._filled
        order = range(n) if n < self.num_blocks else [(self._next + i) % n for i in range(n)]
        return [(self._block_stream[b], int(self._block_start[b])) for b in order]

    def state_dict(self) -> dict[str, Any]:
        """Arrays of the filled blocks plus JSON-able metadata."""
        n = self._filled
        streams = [[s, list(map(int, info["tail"])), int(info["next"]), int(info["online"])]
                   for s, info in self._streams.items()]
        meta = {
            "capacity": self.capacity, "chunk_length": self.chunk_length, "seq_len": self.seq_len,
            "next": self._next, "filled": n, "total_inserted": self.total_inserted,
            "streams": streams,
            "block_stream": self._block_stream[:n],
            "dtypes": {k: [str(v.dtype), list(v.shape[2:])] for k, v in self._data.items()},
        }
        state: dict[str, Any] = {f"data/{k}": v[:n] for k, v in self._data.items()}
        state.update({f"blocks/{k}": getattr(self, f"_{k}")[:n] for k in _BLOCK_ARRAYS})
        state[_META_KEY] = meta
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        meta = state[_META_KEY]
        mine = (self.capacity, self.chunk_length, self.seq_len)
        theirs = (meta["capacity"], meta["chunk_length"], meta["seq_len"])
        if mine != theirs:
            raise ValueError(
                f"snapshot has (capacity, chunk_length, seq_len)={theirs}, this buffer {mine}"
            )
        n = int(meta["filled"])
        self._data = {}
        for key, (dtype, shape) in meta["dtypes"].items():
            arr = np.zeros((self.num_blocks, self.chunk_length, *shape), dtype=np.dtype(dtype))
            arr[:n] = state[f"data/{key}"]
            self._data[key] = arr
        for key in _BLOCK_ARRAYS:
            arr = getattr(self, f"_{key}")
            arr[:] = -1 if key == "succ" else 0
            arr[:n] = state[f"blocks/{key}"]
        self._block_stream = list(meta["block_stream"]) + [None] * (self.num_blocks - n)
        self._streams = {}
        for stream, tail, nxt, *online in meta["streams"]:  # older snapshots: no online mark
            self._streams[stream] = {"tail": deque(tail, maxlen=self._hops + 1), "next": nxt,
                                     "online": online[0] if online else nxt}
        self._next = int(meta["next"])
        self._filled = n
        self.total_inserted = int(meta["total_inserted"])

    def save(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> str:
        """Write the contents to ``path`` (``.npz``, or HDF5 for ``.h5``/``.hdf5``) atomically.

        ``extra``: JSON-able metadata stored alongside (e.g. rate-limiter counters).
        """
        return save_arrays(path, self.state_dict(), extra)

    def load(self, path: str | os.PathLike) -> dict[str, Any]:
        """Restore from :meth:`save`'s file; returns the ``extra`` metadata saved with it."""
        state, extra = load_arrays(path)
        self.load_state_dict(state)
        return extra
