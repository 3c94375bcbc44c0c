"""Samples-per-insert rate limiting (Reverb's ``SampleToInsertRatio``), pure Python.

Counters are in env steps: ``inserted`` env steps went in, ``sampled`` env steps were replayed
(a sequence of length ``T`` counts ``T``). After ``min_size`` steps the limiter keeps

    | sampled - samples_per_insert * (inserted - min_size) |  <=  error_buffer

by refusing a sample that would overshoot (the learner waits for data) and an insert that would
undershoot (the env workers wait for the learner). ``samples_per_insert`` is DreamerV3's
``train_ratio``. ``samples_per_insert == 0`` never blocks inserts (collection only).

The blocking waits are ``async`` (the ``ReplayShard`` actor is an asyncio actor, so a waiting
insert never blocks a sample and vice versa).
"""

from __future__ import annotations

import asyncio
import math
from typing import Callable

__all__ = ["RateLimiter", "min_error_buffer"]


def min_error_buffer(samples_per_insert: float, max_insert: int, max_sample: int) -> float:
    """Smallest error buffer with which inserts of ``max_insert`` steps and samples of
    ``max_sample`` steps can never both be refused (no deadlock): ``spi * n + k``.

    (Both refused needs ``2 * buffer < spi * n + k``; this leaves a factor-2 margin.)
    """
    return samples_per_insert * max_insert + max_sample


class RateLimiter:
    """Hold ``sampled / (inserted - min_size)`` at ``samples_per_insert``, within
    ``error_buffer`` replayed steps.

    Args:
        samples_per_insert: target replayed steps per inserted env step (``>= 0``).
        min_size: inserted env steps before the first sample is allowed.
        error_buffer: allowed absolute drift, in replayed steps (``>= 0``).
    """

    def __init__(self, samples_per_insert: float, min_size: int, error_buffer: float):
        if not math.isfinite(samples_per_insert) or samples_per_insert < 0:
            raise ValueError(f"samples_per_insert must be finite and >= 0, got {samples_per_insert!r}")
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size!r}")
        if not math.isfinite(error_buffer) or error_buffer < 0:
            raise ValueError(f"error_buffer must be finite and >= 0, got {error_buffer!r}")
        self.samples_per_insert = float(samples_per_insert)
        self.min_size = int(min_size)
        self.error_buffer = float(error_buffer)
        self.inserted = 0
        self.sampled = 0
        self._closed = False
        self._cond: asyncio.Condition | None = None

    @classmethod
    def from_tolerance(cls, samples_per_insert: float, min_size: int, tolerance: float,
                       max_insert: int, max_sample: int) -> "RateLimiter":
        """Acme's convention: ``error_buffer = tolerance * samples_per_insert * min_size``,
        raised to :func:`min_error_buffer` so that it cannot deadlock."""
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        buffer = max(tolerance * samples_per_insert * min_size,
                     min_error_buffer(samples_per_insert, max_insert, max_sample))
        return cls(samples_per_insert, min_size, buffer)

    # -- pure predicates -----------------------------------------------------------------
    def target(self) -> float:
        """Replayed steps the ratio asks for now."""
        return self.samples_per_insert * max(self.inserted - self.min_size, 0)

    def sample_budget(self) -> float:
        """Replayed steps that may be sampled now (may be negative)."""
        if self.inserted < self.min_size:
            return 0.0
        return self.target() + self.error_buffer - self.sampled

    def can_sample(self, steps: int) -> bool:
        return self.inserted >= self.min_size and steps <= self.sample_budget()

    def can_insert(self, steps: int) -> bool:
        ahead = self.samples_per_insert * (self.inserted + steps - self.min_size)
        return ahead - self.error_buffer <= self.sampled

    def ratio(self) -> float:
        """Measured replay ratio ``sampled / (inserted - min_size)`` (0 before min_size)."""
        past = self.inserted - self.min_size
        return self.sampled / past if past > 0 else 0.0

    def record_insert(self, steps: int) -> None:
        self.inserted += int(steps)
        self._notify()

    def record_sample(self, steps: int) -> None:
        self.sampled += int(steps)
        self._notify()

    # -- async waits -----------------------------------------------------------------------
    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def _notify(self) -> None:
        cond = self._cond
        if cond is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.create_task(self._notify_async(cond))

    @staticmethod
    async def _notify_async(cond: asyncio.Condition) -> None:
        async with cond:
            cond.notify_all()

    async def _wait(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        cond = self._condition()
        full = lambda: self._closed or predicate()  # noqa: E731
        async with cond:
            try:
                await asyncio.wait_for(cond.wait_for(full), timeout)
            except asyncio.TimeoutError:
                return False
        return predicate()

    async def wait_for_insert(self, steps: int, timeout: float | None = None) -> bool:
        """Wait until inserting ``steps`` is allowed; ``False`` on timeout or :meth:`close`."""
        return await self._wait(lambda: self.can_insert(steps), timeout)

    async def wait_for_sample(self, steps: int, timeout: float | None = None,
                              ready: Callable[[], bool] | None = None) -> bool:
        """Wait until sampling ``steps`` is allowed (and ``ready()`` holds, e.g. "the buffer has
        a whole sequence"); ``False`` on timeout or :meth:`close`."""
        if ready is None:
            return await self._wait(lambda: self.can_sample(steps), timeout)
        return await self._wait(lambda: self.can_sample(steps) and ready(), timeout)

    def close(self) -> None:
        """Release every waiter (they return ``False`` unless their condition holds)."""
        self._closed = True
        self._notify()

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, float]:
        return {"inserted": self.inserted, "sampled": self.sampled,
                "samples_per_insert": self.samples_per_insert, "min_size": self.min_size,
                "error_buffer": self.error_buffer}

    def load_state_dict(self, state: dict) -> None:
        """Restore the counters (the limits stay this limiter's own)."""
        self.inserted = int(state["inserted"])
        self.sampled = int(state["sampled"])
        self._notify()

    def __repr__(self) -> str:
        return (f"RateLimiter(samples_per_insert={self.samples_per_insert}, "
                f"min_size={self.min_size}, error_buffer={self.error_buffer}, "
                f"inserted={self.inserted}, sampled={self.sampled})")
