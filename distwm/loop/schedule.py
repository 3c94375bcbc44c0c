"""Replay-ratio and cadence arithmetic, shared by the single-process loop and the Ray runtime.

Pure Python: no torch, no Ray, no numpy. Counters are in env steps:

* ``inserted``: env steps that went into replay (policy steps, before action repeat);
* ``replayed``: env steps that the learner sampled (a sequence of ``T`` steps counts ``T``).

With ``train_ratio`` replayed steps per inserted step (DreamerV3's ``train_ratio``, Reverb's
samples-per-insert) and training starting once ``min_steps`` were inserted, the learner owes
``train_ratio * (inserted - min_steps) - replayed`` replayed steps.
"""

from __future__ import annotations

import math

__all__ = ["UpdateBudget", "Cadence", "replay_ratio"]


def replay_ratio(inserted: float, replayed: float, min_steps: float = 0) -> float:
    """The measured ratio ``replayed / (inserted - min_steps)`` (0 before ``min_steps``)."""
    past = inserted - min_steps
    return replayed / past if past > 0 else 0.0


class UpdateBudget:
    """How many learner updates the replay ratio allows.

    Args:
        train_ratio: replayed env steps per inserted env step (``>= 0``).
        steps_per_update: replayed env steps of one (average) update (``> 0``).
        min_steps: inserted env steps before the first update.
    """

    def __init__(self, train_ratio: float, steps_per_update: float, min_steps: float = 0):
        if not math.isfinite(train_ratio) or train_ratio < 0:
            raise ValueError(f"train_ratio must be finite and >= 0, got {train_ratio!r}")
        if not math.isfinite(steps_per_update) or steps_per_update <= 0:
            raise ValueError(f"steps_per_update must be > 0, got {steps_per_update!r}")
        if min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {min_steps!r}")
        self.train_ratio = float(train_ratio)
        self.steps_per_update = float(steps_per_update)
        self.min_steps = float(min_steps)

    def owed_replay(self, inserted: float, replayed: float) -> float:
        """Replayed steps still owed (negative when the learner is ahead)."""
        return self.train_ratio * max(inserted - self.min_steps, 0.0) - replayed

    def owed_updates(self, inserted: float, replayed: float) -> int:
        """Whole updates the learner may perform now."""
        return max(int(self.owed_replay(inserted, replayed) // self.steps_per_update), 0)

    def ratio(self, inserted: float, replayed: float) -> float:
        return replay_ratio(inserted, replayed, self.min_steps)


class Cadence:
    """Fires once every ``every`` units (env steps) after ``start``; ``every <= 0``: never.

    ``due(now)`` is True once per period that ``now`` reached, and moves the next firing past
    ``now`` (a long gap fires once, not once per missed period)."""

    def __init__(self, every: float, start: float = 0):
        self.every = every
        self.next = start + every if every > 0 else math.inf

    def due(self, now: float) -> bool:
        if self.every <= 0 or now < self.next:
            return False
        periods = math.floor((now - self.next) / self.every) + 1
        self.next += periods * self.every
        return True

    def state_dict(self) -> dict:
        return {"every": self.every, "next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.every, self.next = state["every"], state["next"]
