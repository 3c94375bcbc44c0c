"""The collector and replay that :class:`~distwm.loop.train_loop.TrainLoop` drives when a
family trains from a vector of envs into a step replay (Dreamer, and IRIS / DIAMOND next)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from distwm.loop.env_loop import RandomActor, make_runner
from distwm.loop.train_loop import Collected

__all__ = ["RunnerCollector", "StepReplay"]


class StepReplay:
    """A :class:`~distwm.memory.dreamer_memory.ReplayBuffer` (or anything with ``add_batch``,
    ``can_sample()`` and ``sample_batch(batch_size, seq_len)``) as the loop's replay."""

    def __init__(self, buffer: Any):
        self.buffer = buffer

    def insert(self, records) -> None:
        self.buffer.add_batch(records)

    def can_sample(self, sample) -> bool:
        return self.buffer.can_sample()

    def sample(self, sample) -> dict[str, np.ndarray]:
        flags = {k: True for k in ("stepids", "online") if getattr(sample, k, False)}
        return self.buffer.sample_batch(sample.batch_size, sample.seq_len, **flags)

    def write_back(self, updates) -> None:
        """Apply ``Trainable.replay_updates()``: ``{sample: {"stepid": ..., key: ...}}``."""
        for values in updates.values():
            values = dict(values)
            self.buffer.update(values.pop("stepid"), values)


class RunnerCollector:
    """One lockstep step of every env per round, with ``policy`` (or uniform random actions
    while the loop prefills). ``action_repeat`` converts policy steps to env steps (frames).

    ``on_step(records, stepped)`` (optional) sees each round's records and the number of envs
    that stepped (an env whose episode ended resets instead of stepping)."""

    def __init__(self, envs: Sequence[Any], policy: Any, seed: int = 0, action_repeat: int = 1,
                 on_step=None):
        self.envs = list(envs)
        self.policy = policy
        self.action_repeat = int(action_repeat)
        self.on_step = on_step
        spec = policy.data_spec() if hasattr(policy, "data_spec") else None
        self.runner = make_runner(self.envs, RandomActor(self.envs), seed,
                                  entries=spec.entry_specs if spec is not None else {})
        self._random = True

    def collect(self, random: bool) -> Collected:
        if random != self._random:
            # the policy takes over (or gives back) with fresh recurrent states
            self.runner.set_agent(RandomActor(self.envs) if random else self.policy)
            self._random = random
        records, finished = self.runner.step(explore=True)
        stepped = int((~records["is_last"]).sum())
        if self.on_step is not None:
            self.on_step(records, stepped)
        return Collected(records, stepped, stepped * self.action_repeat,
                         [(ret, length) for _, ret, length in finished])
