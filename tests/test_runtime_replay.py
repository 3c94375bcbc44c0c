"""SequenceReplay invariants: contiguity, episode boundaries, stream separation, ring eviction,
uniform sampling, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from distwm.memory.replay import SequenceReplay


class Streams:
    """Synthetic env streams: ``state = [stream, step, episode]``; an episode starts with
    probability 0.15 a step."""

    def __init__(self, num: int, seed: int = 0, image: bool = False):
        self.num = num
        self.rng = np.random.default_rng(seed)
        self.step = np.zeros(num, np.int64)
        self.episode = np.zeros(num, np.int64)
        self.image = image

    def chunk(self, length: int, rows=None):
        rows = list(range(self.num)) if rows is None else rows
        n = len(rows)
        state = np.zeros((n, length, 3), np.float32)
        first = np.zeros((n, length), bool)
        for j, i in enumerate(rows):
            for t in range(length):
                first[j, t] = self.step[i] == 0 or self.rng.random() < 0.15
                self.episode[i] += first[j, t]
                state[j, t] = (i, self.step[i], self.episode[i])
                self.step[i] += 1
        out = {"state": state, "is_first": first, "reward": np.ones((n, length), np.float32),
               "action": np.zeros((n, length, 2), np.float32)}
        if self.image:
            out["image"] = np.full((n, length, 3, 4, 4), 7, np.uint8)
        return out


def assert_contiguous(batch):
    state = batch["state"]
    stream, step, episode = state[..., 0], state[..., 1], state[..., 2]
    assert (stream == stream[:, :1]).all(), "a sequence mixed streams"
    assert (np.diff(step, axis=1) == 1).all(), "a sequence skipped or repeated steps"
    new_episode = np.diff(episode, axis=1) != 0
    assert (new_episode == batch["is_first"][:, 1:]).all(), "crossed an episode start without is_first"


@pytest.mark.parametrize("chunk_length,seq_len", [(8, 5), (8, 8), (4, 11)])
def test_sequences_are_contiguous_within_one_stream(chunk_length, seq_len):
    replay = SequenceReplay(capacity=40 * chunk_length, chunk_length=chunk_length, seq_len=seq_len, seed=1)
    streams = Streams(3)
    ids = ["a", "b", "c"]
    for _ in range(30):  # wraps the ring: 90 chunks into 40 blocks
        replay.insert(streams.chunk(chunk_length), ids)
        if replay.num_valid_starts:
            batch = replay.sample(64)
            assert batch["state"].shape == (64, seq_len, 3)
            assert batch["action"].shape == (64, seq_len, 2)
            assert_contiguous(batch)
    assert replay.size == replay.capacity == 40 * chunk_length
    assert replay.total_inserted == 90 * chunk_length


def test_valid_start_count_and_wraparound_eviction():
    L, T = 8, 5
    replay = SequenceReplay(capacity=4 * L, chunk_length=L, seq_len=T)
    streams = Streams(1)
    assert replay.num_valid_starts == 0
    replay.insert(streams.chunk(L), ["s"])
    assert replay.num_valid_starts == L - T + 1
    replay.insert(streams.chunk(L), ["s"])
    assert replay.num_valid_starts == 2 * L - T + 1  # sequences run across the chunk boundary
    for _ in range(6):
        replay.insert(streams.chunk(L), ["s"])
    # only the newest 4 chunks remain: steps 32..63
    assert replay.num_valid_starts == 4 * L - T + 1
    batch = replay.sample(500)
    assert batch["state"][..., 1].min() >= 4 * L
    assert_contiguous(batch)


def test_lost_chunk_breaks_the_chain():
    L, T = 4, 6
    replay = SequenceReplay(capacity=64, chunk_length=L, seq_len=T)
    streams = Streams(1)
    replay.insert(streams.chunk(L), ["s"], [0])
    streams.chunk(L)  # steps 4..7 never arrive
    replay.insert(streams.chunk(L), ["s"], [8])
    assert replay.num_valid_starts == 0  # 4 + 4 steps, but not contiguous
    replay.insert(streams.chunk(L), ["s"], [12])
    assert replay.num_valid_starts == 2 * L - T + 1
    assert_contiguous(replay.sample(100))


def test_sampling_is_uniform_over_valid_starts():
    L, T = 5, 3
    replay = SequenceReplay(capacity=100, chunk_length=L, seq_len=T, seed=3)
    streams = Streams(2)
    for _ in range(3):
        replay.insert(streams.chunk(L), ["x", "y"])
    starts = replay.num_valid_starts
    assert starts == 2 * (3 * L - T + 1)
    batch = replay.sample(20000)
    keys = batch["state"][:, 0, 0] * 1000 + batch["state"][:, 0, 1]
    _, counts = np.unique(keys, return_counts=True)
    assert len(counts) == starts  # every valid start is reachable
    expected = 20000 / starts
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_images_stay_uint8_and_bad_inputs_fail():
    replay = SequenceReplay(capacity=64, chunk_length=4, seq_len=4)
    streams = Streams(2, image=True)
    replay.insert(streams.chunk(4), ["a", "b"])
    assert replay.sample(3)["image"].dtype == np.uint8
    with pytest.raises(ValueError, match="keys"):
        replay.insert({"state": np.zeros((1, 4, 3), np.float32)}, ["a"])
    chunk = streams.chunk(4)
    with pytest.raises(ValueError, match=r"expected \(2, 4, \.\.\.\)"):
        replay.insert({k: v[:, :3] for k, v in chunk.items()}, ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        replay.insert(chunk, ["a", "a"])
    with pytest.raises(ValueError, match="strings"):
        replay.insert(chunk, [1, 2])
    with pytest.raises(ValueError, match="chunk_length"):
        SequenceReplay(capacity=3, chunk_length=4, seq_len=2)
    with pytest.raises(ValueError, match="seq_len"):
        SequenceReplay(capacity=8, chunk_length=4, seq_len=0)
    with pytest.raises(ValueError, match="no sequence"):
        SequenceReplay(capacity=8, chunk_length=4, seq_len=5).sample(1)


@pytest.mark.parametrize("suffix", ["npz", "h5"])
def test_save_and_load_round_trip(tmp_path, suffix):
    L, T = 4, 6
    replay = SequenceReplay(capacity=10 * L, chunk_length=L, seq_len=T, seed=0)
    streams = Streams(2, image=True)
    for _ in range(7):  # wraps: 14 chunks into 10 blocks
        replay.insert(streams.chunk(L), ["a", "b"])
    path = replay.save(tmp_path / f"shard.{suffix}", extra={"limiter": {"inserted": 56}})
    other = SequenceReplay(capacity=10 * L, chunk_length=L, seq_len=T, seed=0)
    assert other.load(path) == {"limiter": {"inserted": 56}}
    assert other.num_valid_starts == replay.num_valid_starts and other.size == replay.size
    a = replay.sample(50, rng=np.random.default_rng(5))
    b = other.sample(50, rng=np.random.default_rng(5))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # the restored buffer keeps linking the streams' next chunks
    chunk = streams.chunk(L)
    replay.insert(chunk, ["a", "b"])
    other.insert(chunk, ["a", "b"])
    assert other.num_valid_starts == replay.num_valid_starts
    assert_contiguous(other.sample(200))
    with pytest.raises(ValueError, match="capacity, chunk_length, seq_len"):
        SequenceReplay(capacity=20 * L, chunk_length=L, seq_len=T).load(path)
