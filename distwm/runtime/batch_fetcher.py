"""Assemble learner batches from several replay shards, one batch ahead.

:class:`SampleFetcher` serves an agent's named samples (``DataSpec.samples``): one
:class:`BatchFetcher` per sample, and the batches of the samples each update carries.

A batch of ``B`` sequences is split over the live shards by their sample budget (what each
shard's rate limiter would allow now, from the stats every answer carries), so that shards that
received more data are sampled more and every shard's replay ratio stays on target. Requests
carry a timeout: a shard that cannot serve in time answers ``None`` with fresh stats and the
missing sequences are asked of the others, so a stale split never deadlocks.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

__all__ = ["BatchFetcher", "SampleFetcher", "split_by_budget"]


def split_by_budget(num: int, budgets: Sequence[float], cost: float) -> list[int]:
    """Give ``num`` items of ``cost`` each, one at a time, to the index with the most budget
    left (ties: lowest index)."""
    left = np.asarray(budgets, dtype=float).copy()
    counts = [0] * len(left)
    for _ in range(num):
        i = int(np.argmax(left))
        counts[i] += 1
        left[i] -= cost
    return counts


class BatchFetcher:
    """Fetch ``(B, T, ...)`` batches from replay-shard actors with one batch prefetched."""

    def __init__(self, batch_size: int, seq_len: int, sample_timeout: float = 0.5,
                 online: bool = False, stepids: bool = False):
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.online = online  # each shard's freshest sequences first (SampleSpec.online)
        self.stepids = stepids  # with stepid (B, T) and shard (B,) (SampleSpec.stepids)
        self.sample_timeout = sample_timeout
        self.shards: list[Any] = []
        self.stats: dict[int, dict] = {}
        self.dead: set[int] = set()
        self._inflight: dict[Any, tuple[int, int]] = {}  # ref -> (shard, sequences)
        self._pieces: list[dict] = []
        self._have = 0
        self.wait_time = 0.0

    def set_shards(self, shards: Sequence[Any]) -> None:
        """Use these shard handles from now on (a restored shard has a new handle)."""
        changed = [i for i, s in enumerate(shards) if i >= len(self.shards) or s != self.shards[i]]
        self.shards = list(shards)
        self.dead -= set(changed)
        for ref, (i, n) in list(self._inflight.items()):
            if i in changed:  # asked of a replaced shard: ask again
                del self._inflight[ref]
        if changed:
            self._request(self.batch_size - self._have - self._pending())

    def _pending(self) -> int:
        return sum(n for _, n in self._inflight.values())

    def _budgets(self) -> list[float]:
        out = []
        for i in range(len(self.shards)):
            if i in self.dead:
                out.append(-np.inf)
                continue
            budget = self.stats.get(i, {}).get("budget", 0.0)
            asked = sum(n for _, (j, n) in self._inflight.items() if j == i)
            out.append(budget - asked * self.seq_len)
        return out

    def _request(self, num: int) -> None:
        live = [i for i in range(len(self.shards)) if i not in self.dead]
        if num <= 0 or not live:
            return
        counts = split_by_budget(num, self._budgets(), self.seq_len)
        for i, n in enumerate(counts):
            if n:
                ref = self.shards[i].sample.remote(n, self.sample_timeout, self.seq_len, self.online,
                                                   self.stepids)
                self._inflight[ref] = (i, n)

    def _receive(self, ref: Any) -> None:
        import ray

        shard, n = self._inflight.pop(ref)
        try:
            batch, stats = ray.get(ref)
        except ray.exceptions.RayActorError:
            self.dead.add(shard)
            return
        self.stats[shard] = stats
        if batch is not None:
            if self.stepids:
                batch["shard"] = np.full(n, shard, np.int32)
            self._pieces.append(batch)
            self._have += n

    def next_batch(self, deadline: float) -> dict[str, np.ndarray] | None:
        """The next whole batch, or ``None`` if it is not complete by ``deadline``
        (``time.monotonic()``); what arrived is kept for the next call. Asks for the batch
        after it before returning."""
        import ray

        t0 = time.monotonic()
        while self._have < self.batch_size:
            self._request(self.batch_size - self._have - self._pending())
            remaining = deadline - time.monotonic()
            if not self._inflight or remaining <= 0:
                break
            ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=remaining)
            for ref in ready:
                self._receive(ref)
        self.wait_time += time.monotonic() - t0
        if self._have < self.batch_size:
            return None
        batch = self._take()
        # prefetch the next batch while the caller trains on this one
        self._request(self.batch_size - self._have - self._pending())
        return batch

    def _take(self) -> dict[str, np.ndarray]:
        pieces, self._pieces = self._pieces, []
        batch = {k: np.concatenate([p[k] for p in pieces], axis=0) for k in pieces[0]}
        extra = self._have - self.batch_size
        if extra > 0:  # more than one batch arrived: keep the rest for the next one
            self._pieces = [{k: v[self.batch_size:] for k, v in batch.items()}]
            batch = {k: v[: self.batch_size] for k, v in batch.items()}
        self._have = max(extra, 0)
        return batch


class SampleFetcher:
    """``{name: batch}`` for the samples update ``k`` carries (``spec.due(k)``), each from its
    own :class:`BatchFetcher` (each prefetches its next batch)."""

    def __init__(self, spec: Any, sample_timeout: float = 0.5):
        self.spec = spec
        self.fetchers = {s.name: BatchFetcher(s.batch_size, s.seq_len, sample_timeout,
                                              getattr(s, "online", False),
                                              getattr(s, "stepids", False))
                         for s in spec.samples}
        self._ready: dict[str, dict[str, np.ndarray]] = {}

    def set_shards(self, shards: Sequence[Any]) -> None:
        for fetcher in self.fetchers.values():
            fetcher.set_shards(shards)

    def next_batches(self, update_index: int, deadline: float) -> dict[str, dict] | None:
        """The batches of update ``update_index``, or ``None`` if one is not complete by
        ``deadline`` (the complete ones are kept for the next call)."""
        for name in self.spec.due(update_index):
            if name not in self._ready:
                batch = self.fetchers[name].next_batch(deadline)
                if batch is None:
                    return None
                self._ready[name] = batch
        out, self._ready = self._ready, {}
        return out

    @property
    def wait_time(self) -> float:
        return sum(f.wait_time for f in self.fetchers.values())

    @property
    def dead(self) -> set[int]:
        return set().union(*(f.dead for f in self.fetchers.values()))

    @property
    def stats(self) -> dict[int, dict]:
        """The latest stats of every shard (from whichever fetcher heard last)."""
        out: dict[int, dict] = {}
        for fetcher in self.fetchers.values():
            for shard, stats in fetcher.stats.items():
                if shard not in out or stats.get("sampled", 0) >= out[shard].get("sampled", 0):
                    out[shard] = stats
        return out
