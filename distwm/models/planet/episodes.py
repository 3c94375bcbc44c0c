"""PlaNet's episodes in the one training loop (:class:`distwm.loop.TrainLoop`).

The single-process PlaNet (and ``train_rssm``) collects whole episodes with a
:class:`~distwm.controller.rollout_generator.RolloutGenerator` into an episodic
:class:`~distwm.memory.planet_memory.Memory` and takes a fixed number of updates after each
(the seed's epochs). :class:`EpisodeCollector` and :class:`EpisodeReplay` are that collector
and that replay; :class:`EpochHook` is the loop's ``on_update`` that closes an epoch after its
last update.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from distwm.loop.train_loop import Collected
from distwm.models.planet.losses import memory_sequences

__all__ = ["EpisodeCollector", "EpisodeReplay", "EpochHook", "mean_update_metrics"]


class EpisodeCollector:
    """One episode a round: the rollout generator's policy with exploration noise, or random
    actions while the loop prefills (or always, with ``random_policy``). ``action_repeat``
    turns the episode's policy steps into env steps (frames). ``last_episode`` is the newest."""

    def __init__(self, rollout_gen: Any, action_repeat: int = 1, random_policy: bool = False):
        self.rollout_gen = rollout_gen
        self.action_repeat = int(action_repeat)
        self.random_policy = random_policy
        self.last_episode: Any = None

    def collect(self, random: bool) -> Collected:
        episode = self.rollout_gen.rollout_once(random_policy=random or self.random_policy, explore=True)
        self.last_episode = episode
        return Collected([episode], episode.size, episode.size * self.action_repeat,
                         [(float(episode.info["return"]), episode.size)])


class EpisodeReplay:
    """An episodic :class:`~distwm.memory.planet_memory.Memory` as the loop's replay.

    ``sample`` draws ``batch_size`` sequences of ``seq_len`` transitions (``seq_len + 1``
    steps, see :func:`~distwm.models.planet.losses.memory_sequences`), the sizes its owner
    trains with, whatever the trainable's data spec says; the observation is stored under
    ``obs_key``."""

    def __init__(self, memory: Any, batch_size: int, seq_len: int, obs_key: str = "obs"):
        self.memory = memory
        self.batch_size, self.seq_len, self.obs_key = int(batch_size), int(seq_len), obs_key

    def insert(self, episodes: Sequence[Any]) -> None:
        self.memory.append(list(episodes))

    def can_sample(self, sample: Any = None) -> bool:
        return self.memory.size > 0

    def sample(self, sample: Any = None) -> dict[str, np.ndarray]:
        return memory_sequences(self.memory, self.batch_size, self.seq_len, self.obs_key)


def mean_update_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the updates that were not skipped (all of them when every
    one was); ``skipped`` counts the skipped ones, counters (``updates``, ...) keep the last value."""
    if not rows:
        return {}
    kept = [r for r in rows if not r.get("skipped")] or list(rows)
    out = {k: float(np.mean([r[k] for r in kept if k in r])) for k in kept[0]}
    out["skipped"] = float(sum(r.get("skipped", 0.0) for r in rows))
    for counter in ("updates", "nonfinite_updates"):
        if counter in rows[-1]:
            out[counter] = float(rows[-1][counter])
    return out


class EpochHook:
    """``TrainLoop(on_update=...)`` for ``updates_per_collect=updates_per_epoch``: after the
    last update of each round calls ``end_epoch(mean metrics)``; a True result stops the loop."""

    def __init__(self, updates_per_epoch: int, end_epoch: Callable[[dict[str, float]], bool]):
        self.updates_per_epoch = int(updates_per_epoch)
        self.end_epoch = end_epoch
        self.rows: list[Mapping[str, float]] = []

    def __call__(self, metrics: Mapping[str, float]) -> bool:
        self.rows.append(dict(metrics))
        if len(self.rows) < self.updates_per_epoch:
            return False
        rows, self.rows = self.rows, []
        return bool(self.end_epoch(mean_update_metrics(rows)))
