"""The one single-process training loop: collect, insert, update at the replay ratio, publish
weights, and evaluate / checkpoint / log on a cadence.

It is the degenerate case of the Ray runtime (one env loop, one replay, the learner in
process) and uses the same arithmetic (:mod:`distwm.loop.schedule`). Every family's
single-process ``train()`` (``DreamerAgent.train``, ``Planet.train``, ...) drives a
:class:`TrainLoop`; the loop knows nothing about any algorithm: it talks to

* a :class:`~distwm.agent.Trainable` (``data_spec()``, ``update({name: batch})``),
* a *collector* with ``collect(random: bool) -> Collected`` (one round of env stepping;
  ``random`` during prefill),
* a *replay* with ``insert(data)``, ``can_sample(sample_spec) -> bool`` and
  ``sample(sample_spec) -> batch``,

and to optional callbacks for evaluation, checkpoints, logging and publishing weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from distwm.loop.schedule import Cadence, UpdateBudget

__all__ = ["Collected", "TrainLoop", "LoopResult"]


@dataclass
class Collected:
    """What one collection round produced.

    ``data``: what ``replay.insert`` takes; ``inserted``: env steps that went into replay
    (policy steps); ``env_steps``: env steps for the run's budget and cadences (frames, after
    action repeat); ``episodes``: ``(return, length)`` of the episodes that ended."""

    data: Any
    inserted: int
    env_steps: int
    episodes: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class LoopResult:
    env_steps: int
    inserted: int
    updates: int
    replayed: int
    wall_time_s: float
    eval_history: list[tuple[int, float]]
    episode_returns: list[tuple[int, float]]
    metrics: dict[str, float]


class TrainLoop:
    """Run ``trainable`` on data from ``collector`` until ``total_steps`` env steps.

    Args:
        trainable: the learner (its ``data_spec()`` gives the samples and the ratio).
        collector, replay: see the module docstring.
        total_steps: env steps (``Collected.env_steps`` units) to reach.
        start_steps: env steps already done (a resumed run).
        prefill_steps: env steps collected with ``random=True`` before training starts.
        train_ratio: overrides ``data_spec().train_ratio``.
        updates_per_collect: instead of a ratio, a fixed number of updates after every
            collection round (PlaNet's epochs).
        eval_interval, checkpoint_interval, log_interval: env steps between calls of
            ``evaluate(step) -> mean return``, ``checkpoint(step)``, ``log(metrics, step)``
            (``<= 0``: never). ``log`` also gets the evaluation results.
        publish: ``publish(trainable)`` every ``broadcast_interval`` updates (a separate
            acting copy); ``None`` when the trainable acts itself.
        on_update: ``on_update(metrics) -> bool`` after every update; True stops the run.
        progress: show a progress bar (steps/s and ETA) on stderr.
    """

    def __init__(self, trainable: Any, collector: Any, replay: Any, *, total_steps: int,
                 start_steps: int = 0, prefill_steps: int = 0, train_ratio: float | None = None,
                 updates_per_collect: int | None = None, eval_interval: int = 0,
                 checkpoint_interval: int = 0, log_interval: int = 0,
                 evaluate: Callable[[int], float] | None = None,
                 checkpoint: Callable[[int], Any] | None = None,
                 log: Callable[[Mapping[str, float], int], None] | None = None,
                 publish: Callable[[Any], None] | None = None, broadcast_interval: int = 1,
                 on_update: Callable[[Mapping[str, float]], bool] | None = None,
                 progress: bool = True, desc: str = "train"):
        if total_steps <= 0:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        if updates_per_collect is not None and updates_per_collect < 0:
            raise ValueError(f"updates_per_collect must be >= 0, got {updates_per_collect!r}")
        self.trainable, self.collector, self.replay = trainable, collector, replay
        self.spec = trainable.data_spec()
        ratio = self.spec.train_ratio if train_ratio is None else float(train_ratio)
        self.budget = UpdateBudget(ratio, self.spec.steps_per_update)
        self.total_steps = int(total_steps)
        self.env_steps = int(start_steps)
        self.prefill_steps = int(prefill_steps)
        self.updates_per_collect = updates_per_collect
        self.evaluate, self.checkpoint, self.log = evaluate, checkpoint, log
        self.publish, self.broadcast_interval = publish, max(int(broadcast_interval), 1)
        self.on_update = on_update
        self.eval_cadence = Cadence(eval_interval if evaluate else 0, start_steps)
        self.checkpoint_cadence = Cadence(checkpoint_interval if checkpoint else 0, start_steps)
        self.log_cadence = Cadence(log_interval if log else 0, start_steps)
        self.progress, self.desc = progress, desc
        self.inserted = 0
        self.trained_from: int | None = None  # inserted steps when training began
        self.updates = 0
        self.replayed = 0
        self.metrics: dict[str, float] = {}
        self.eval_history: list[tuple[int, float]] = []
        self.episode_returns: list[tuple[int, float]] = []
        self.stopped = False
        self._rate_steps, self._rate_time = self.env_steps, time.monotonic()

    # -- one update ------------------------------------------------------------------------
    def _can_train(self) -> bool:
        return all(self.replay.can_sample(s) for s in self.spec.samples)

    def update_once(self) -> dict[str, float]:
        """Sample the batches that update number ``updates`` carries and apply them."""
        names = self.spec.due(self.updates)
        batches = {n: self.replay.sample(self.spec.sample(n)) for n in names}
        self.metrics = dict(self.trainable.update(batches))
        take = getattr(self.trainable, "replay_updates", None)
        updates = take() if take is not None else None
        if updates:  # entries the update rewrote (Dreamer's latents for its replay context)
            self.replay.write_back(updates)
        self.updates += 1
        self.replayed += sum(self.spec.sample(n).steps for n in names)
        if self.publish is not None and self.updates % self.broadcast_interval == 0:
            self.publish(self.trainable)
        if self.on_update is not None and self.on_update(self.metrics):
            self.stopped = True
        return self.metrics

    def _train(self) -> None:
        if self.trained_from is None:
            if self.env_steps < self.prefill_steps or not self._can_train():
                return
            self.trained_from = self.inserted
        if self.updates_per_collect is not None:
            owed = self.updates_per_collect
        else:
            owed = self.budget.owed_updates(self.inserted - self.trained_from, self.replayed)
        for _ in range(owed):
            self.update_once()
            if self.stopped:
                return

    # -- cadences --------------------------------------------------------------------------
    def _cadences(self, final: bool = False) -> None:
        step = self.env_steps
        if self.eval_cadence.due(step) or (final and self.evaluate and not self._evaluated_at(step)):
            mean = float(self.evaluate(step))
            self.eval_history.append((step, mean))
            if self.log is not None:
                self.log({"eval_return": mean}, step)
        if self.checkpoint_cadence.due(step) or (final and self.checkpoint is not None):
            self.checkpoint(step)
        if self.log_cadence.due(step):
            self.log(self.log_record(), step)

    def _evaluated_at(self, step: int) -> bool:
        return bool(self.eval_history) and self.eval_history[-1][0] == step

    def log_record(self) -> dict[str, float]:
        now = time.monotonic()
        rate = (self.env_steps - self._rate_steps) / max(now - self._rate_time, 1e-9)
        self._rate_steps, self._rate_time = self.env_steps, now
        recent = [r for _, r in self.episode_returns[-10:]]
        rec = {**self.metrics, "env_steps_per_s": rate, "updates": float(self.updates),
               "replay_ratio": self.budget.ratio(self.inserted - (self.trained_from or 0),
                                                 self.replayed)}
        if recent:
            rec["train_return"] = sum(recent) / len(recent)
        return rec

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> LoopResult:
        start = time.monotonic()
        self._rate_steps, self._rate_time = self.env_steps, start
        bar = _progress_bar(self.total_steps, self.env_steps, self.desc) if self.progress else None
        try:
            while self.env_steps < self.total_steps and not self.stopped:
                got: Collected = self.collector.collect(random=self.env_steps < self.prefill_steps)
                self.replay.insert(got.data)
                self.inserted += got.inserted
                self.env_steps += got.env_steps
                for ret, _ in got.episodes:
                    self.episode_returns.append((self.env_steps, float(ret)))
                if bar is not None:
                    bar.update(got.env_steps)
                self._train()
                self._cadences()
                if bar is not None and self.eval_history:
                    bar.set_postfix(eval_return=f"{self.eval_history[-1][1]:.1f}", refresh=False)
            self._cadences(final=True)
        finally:
            if bar is not None:
                bar.close()
        return LoopResult(self.env_steps, self.inserted, self.updates, self.replayed,
                          time.monotonic() - start, list(self.eval_history),
                          list(self.episode_returns), dict(self.metrics))


def _progress_bar(total: int, done: int, desc: str):
    """A tqdm bar over env steps (stderr) that shows steps/s and the ETA."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="step", desc=desc, dynamic_ncols=True,
                mininterval=5.0, disable=None if math.isfinite(total) else True)
