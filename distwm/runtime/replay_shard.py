"""The ``ReplayShard`` actor: a :class:`~distwm.memory.replay.SequenceReplay` behind a
:class:`~distwm.runtime.rate_limiter.RateLimiter`, made durable by a
:class:`~distwm.runtime.replay_store.ShardStore` (snapshot + append-only log).

It is an asyncio actor: an insert waiting for the learner and a sample waiting for data wait on
the limiter's condition without blocking each other. The class is plain Python (the driver wraps
it with ``ray.remote``), so it also runs under ``asyncio.run`` in tests.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence

import numpy as np

from distwm.memory.replay import SequenceReplay
from distwm.runtime.rate_limiter import RateLimiter
from distwm.runtime.replay_store import ShardStore

__all__ = ["ReplayShard"]


class ReplayShard:
    """One replay shard.

    Args:
        shard_index: position among the shards (for stats).
        capacity, chunk_length, seq_len: see :class:`SequenceReplay`.
        samples_per_insert, min_size, error_buffer: see :class:`RateLimiter`.
        seed: sampling seed.
        store_root: the run's replay directory (path or URI): every accepted chunk and sample
            is logged there before the call returns, and :meth:`open` restores from it.
            ``None``: in memory only.
        snapshot_format, snapshot_steps, flush_seconds: see :class:`ShardStore`
            (``snapshot_steps`` 0: the shard's capacity).
    """

    def __init__(self, shard_index: int, capacity: int, chunk_length: int, seq_len: int,
                 samples_per_insert: float, min_size: int, error_buffer: float, seed: int = 0,
                 store_root: str | None = None, snapshot_format: str = "npz",
                 snapshot_steps: int = 0, flush_seconds: float = 5.0):
        self.shard_index = shard_index
        self.replay = SequenceReplay(capacity, chunk_length, seq_len, seed=seed)
        self.limiter = RateLimiter(samples_per_insert, min_size, error_buffer)
        self.store = None if store_root is None else ShardStore(
            store_root, shard_index, snapshot_format, snapshot_steps or self.replay.capacity,
            flush_seconds)
        self.restored: dict[str, Any] | None = None
        self.insert_wait = 0.0
        self.sample_wait = 0.0
        self.insert_time = 0.0
        self.sample_time = 0.0

    def _has_sequence(self) -> bool:
        return self.replay.num_valid_starts > 0

    async def insert(self, stream_ids: Sequence[str], start_steps: Sequence[int],
                     chunk: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Insert one chunk per stream, waiting while the learner is behind."""
        steps = len(stream_ids) * self.replay.chunk_length
        t0 = time.perf_counter()
        await self.limiter.wait_for_insert(steps)
        t1 = time.perf_counter()
        self.replay.insert(chunk, list(stream_ids), list(start_steps))
        self.limiter.record_insert(steps)
        if self.store is not None:  # logged before the worker hears the chunk arrived
            self.store.append_insert(stream_ids, start_steps, chunk, steps)
            if self.store.snapshot_due():
                self.store.snapshot(self.replay, self._extra())
        self.insert_wait += t1 - t0
        self.insert_time += time.perf_counter() - t1
        return self.stats()

    async def sample(self, num_sequences: int, timeout: float | None = None,
                     seq_len: int | None = None, online: bool = False, stepids: bool = False):
        """``(batch {key: (n, T, ...)}, stats)``, or ``(None, stats)`` if the rate limiter
        (or a replay without a whole sequence yet) did not allow it within ``timeout``.
        ``seq_len`` (default: the shard's, the longest sample's) may be shorter; ``online``:
        the freshest sequences first; ``stepids``: with each step's name for :meth:`update`
        (:meth:`SequenceReplay.sample`)."""
        length = self.replay.seq_len if seq_len is None else int(seq_len)
        steps = num_sequences * length
        t0 = time.perf_counter()
        ok = await self.limiter.wait_for_sample(steps, timeout, ready=self._has_sequence)
        t1 = time.perf_counter()
        self.sample_wait += t1 - t0
        if not ok:
            return None, self.stats()
        batch = self.replay.sample(num_sequences, seq_len=length, online=online, stepids=stepids)
        self.limiter.record_sample(steps)
        if self.store is not None:
            self.store.append_sample(steps)
        self.sample_time += time.perf_counter() - t1
        return batch, self.stats()

    async def update(self, stepid: np.ndarray, values: Mapping[str, np.ndarray]) -> int:
        """Overwrite entries at sampled steps (the learner's write-back: DreamerV3's replayed
        latents); logged like an insert. Returns how many steps were still held."""
        written = self.replay.update(stepid, values)
        if self.store is not None and written:
            self.store.append_update(np.asarray(stepid, np.int64), values)
        return written

    def stats(self) -> dict[str, Any]:
        lim = self.limiter
        return {
            "shard": self.shard_index, "pid": os.getpid(), "inserted": lim.inserted, "sampled": lim.sampled,
            "budget": lim.sample_budget() if self._has_sequence() else min(lim.sample_budget(), 0.0),
            "size": self.replay.size, "capacity": self.replay.capacity,
            "valid_starts": self.replay.num_valid_starts, "ratio": lim.ratio(),
            "online_sampled": self.replay.online_sampled,
            "insert_wait": self.insert_wait, "sample_wait": self.sample_wait,
            "insert_time": self.insert_time, "sample_time": self.sample_time,
            "log_time": self.store.log_time if self.store else 0.0,
            "log_bytes": self.store.log_bytes if self.store else 0,
        }

    async def get_stats(self) -> dict[str, Any]:
        return self.stats()

    def _extra(self) -> dict[str, Any]:
        return {"limiter": self.limiter.state_dict(), "shard": self.shard_index}

    async def open(self) -> dict[str, Any]:
        """Restore from the store (snapshot + log) once; returns what was restored and the
        stats. Without a store the shard starts empty."""
        if self.restored is None:
            self.restored = ({} if self.store is None
                             else self.store.restore(self.replay, self.limiter))
        return {**self.restored, **self.stats()}

    async def snapshot(self) -> str | None:
        """Compact the log into a snapshot now (returns its location; ``None``: no store)."""
        if self.store is None:
            return None
        return self.store.snapshot(self.replay, self._extra())

    async def chunk_keys(self) -> list[tuple[str, int]]:
        """``(stream id, start step)`` of every chunk held (for audits)."""
        return self.replay.chunk_keys()

    async def close(self) -> None:
        """Release waiting inserts and samples and close the log (the end of a run)."""
        self.limiter.close()
        if self.store is not None:
            self.store.flush()
            self.store.close()
