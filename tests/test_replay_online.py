"""DreamerV3's online queue in the sequence replay: fresh sequences first, each once."""

from __future__ import annotations

import numpy as np

from distwm.agent import SampleSpec
from distwm.memory.replay import SequenceReplay

L, T = 4, 8


def insert(replay: SequenceReplay, streams: list[str], chunk_index: int) -> None:
    steps = chunk_index * L + np.arange(L, dtype=np.float32)
    rows = np.stack([steps + 1000 * i for i in range(len(streams))])
    replay.insert({"state": rows[..., None]}, streams, [chunk_index * L] * len(streams))


def starts(batch) -> list[float]:
    return sorted(float(x) for x in batch["state"][:, 0, 0])


def test_online_samples_take_each_fresh_sequence_once_then_uniform():
    replay = SequenceReplay(4096, L, T, seed=0)
    for k in range(4):  # 16 steps per stream: fresh sequences start at 0 and 8
        insert(replay, ["a", "b"], k)
    fresh = replay.sample(4, online=True)
    assert starts(fresh) == [0.0, 8.0, 1000.0, 1008.0]
    for row in fresh["state"][:, :, 0]:
        np.testing.assert_array_equal(np.diff(row), 1.0)  # whole, contiguous sequences
    assert replay.online_sampled == 4
    insert(replay, ["a", "b"], 4)
    insert(replay, ["a", "b"], 5)  # 24 steps: one more fresh sequence per stream (16..23)
    mixed = replay.sample(5, online=True)
    assert sorted(float(x) for x in mixed["state"][:2, 0, 0]) == [16.0, 1016.0]
    assert replay.online_sampled == 6
    uniform = replay.sample(64)  # a plain sample leaves the queue alone
    assert replay.online_sampled == 6 and len(set(starts(uniform))) > 4


def test_evicted_fresh_sequences_are_skipped():
    replay = SequenceReplay(8 * L, L, T, seed=0)  # 8 blocks
    for k in range(12):  # one stream: its first blocks are overwritten
        insert(replay, ["a"], k)
    batch = replay.sample(3, online=True)
    assert min(starts(batch)) >= 4 * L  # nothing from the evicted blocks
    assert replay.online_sampled >= 1


def test_sample_spec_declares_online():
    assert SampleSpec("sequences", 16, 64, online=True).online
    assert not SampleSpec("sequences", 16, 64).online


def test_dreamer_recipes_declare_their_replay():
    from distwm.configs.dreamer_config import DreamerConfig
    from distwm.models.dreamer import DreamerCore

    for version, online, context in (("v3", False, 0), ("v3-2024", True, 1)):
        cfg = DreamerConfig(version=version, model_size="tiny", batch_size=2, train_seq_len=6)
        (sample,) = DreamerCore(cfg, {"state": (3,)}, 2).data_spec().samples
        assert (sample.name, sample.batch_size, sample.seq_len, sample.online) == (
            "sequences", 2, 6 + context, online)
    off = DreamerConfig(version="v3-2024", model_size="tiny", replay_online=False)
    assert not DreamerCore(off, {"state": (3,)}, 2).data_spec().samples[0].online


def test_the_single_process_step_replay_serves_fresh_sequences_first():
    from distwm.loop.adapters import StepReplay
    from distwm.memory.dreamer_memory import ReplayBuffer

    buffer = ReplayBuffer(1000, {"state": (1,)}, 1, T, 4, seed=0)
    replay = StepReplay(buffer)
    for t in range(3 * T):  # three fresh non-overlapping sequences of the one stream
        buffer.add({"state": np.array([t], np.float32)}, np.zeros(1), 0.0, False, is_first=t == 0)
    fresh = replay.sample(SampleSpec("sequences", 3, T, online=True))
    assert starts(fresh) == [0.0, T, 2 * T]
    assert buffer.replay.online_sampled == 3
    replay.sample(SampleSpec("sequences", 3, T))  # a uniform sample leaves the queue alone
    assert buffer.replay.online_sampled == 3
