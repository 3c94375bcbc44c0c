"""The ``ReplayShard`` actor: a :class:`~distwm.memory.replay.SequenceReplay` behind a
:class:`~distwm.runtime.rate_limiter.RateLimiter`.

It is an asyncio actor: an insert waiting for the learner and a sample waiting for data wait on
the limiter's condition without blocking each other. The class is plain Python (the driver wraps
it with ``ray.remote``), so it also runs under ``asyncio.run`` in tests.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np

from distwm.memory.replay import SequenceReplay
from distwm.runtime.rate_limiter import RateLimiter

__all__ = ["ReplayShard"]


class ReplayShard:
    """One replay shard.

    Args:
        shard_index: position among the shards (for stats).
        capacity, chunk_length, seq_len: see :class:`SequenceReplay`.
        samples_per_insert, min_size, error_buffer: see :class:`RateLimiter`.
        seed: sampling seed.
    """

    def __init__(self, shard_index: int, capacity: int, chunk_length: int, seq_len: int,
                 samples_per_insert: float, min_size: int, error_buffer: float, seed: int = 0):
        self.shard_index = shard_index
        self.replay = SequenceReplay(capacity, chunk_length, seq_len, seed=seed)
        self.limiter = RateLimiter(samples_per_insert, min_size, error_buffer)
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
        self.insert_wait += t1 - t0
        self.insert_time += time.perf_counter() - t1
        return self.stats()

    async def sample(self, num_sequences: int, timeout: float | None = None,
                     seq_len: int | None = None):
        """``(batch {key: (n, T, ...)}, stats)``, or ``(None, stats)`` if the rate limiter
        (or a replay without a whole sequence yet) did not allow it within ``timeout``.
        ``seq_len`` (default: the shard's, the longest sample's) may be shorter."""
        length = self.replay.seq_len if seq_len is None else int(seq_len)
        steps = num_sequences * length
        t0 = time.perf_counter()
        ok = await self.limiter.wait_for_sample(steps, timeout, ready=self._has_sequence)
        t1 = time.perf_counter()
        self.sample_wait += t1 - t0
        if not ok:
            return None, self.stats()
        batch = self.replay.sample(num_sequences, seq_len=length)
        self.limiter.record_sample(steps)
        self.sample_time += time.perf_counter() - t1
        return batch, self.stats()

    def stats(self) -> dict[str, Any]:
        lim = self.limiter
        return {
            "shard": self.shard_index, "inserted": lim.inserted, "sampled": lim.sampled,
            "budget": lim.sample_budget() if self._has_sequence() else min(lim.sample_budget(), 0.0),
            "size": self.replay.size, "capacity": self.replay.capacity,
            "valid_starts": self.replay.num_valid_starts, "ratio": lim.ratio(),
            "insert_wait": self.insert_wait, "sample_wait": self.sample_wait,
            "insert_time": self.insert_time, "sample_time": self.sample_time,
        }

    async def get_stats(self) -> dict[str, Any]:
        return self.stats()

    async def save(self, path: str) -> str:
        """Snapshot contents and limiter counters (``.npz``, or HDF5 for ``.h5``/``.hdf5``)."""
        return self.replay.save(path, extra={"limiter": self.limiter.state_dict(),
                                             "shard": self.shard_index})

    async def restore(self, path: str) -> dict[str, Any]:
        """Load a :meth:`save` snapshot (contents and counters)."""
        extra = self.replay.load(path)
        self.limiter.load_state_dict(extra["limiter"])
        return self.stats()

    async def close(self) -> None:
        """Release waiting inserts and samples (the end of a run)."""
        self.limiter.close()
