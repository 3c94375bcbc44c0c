"""A replay shard's snapshot + append-only log (no Ray): what a killed shard gets back."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from distwm.memory.replay import SequenceReplay
from distwm.runtime.rate_limiter import RateLimiter
from distwm.runtime.replay_shard import ReplayShard
from distwm.runtime.replay_store import ShardStore, read_records

L = 4


def chunk(rows: int, start: int) -> dict[str, np.ndarray]:
    steps = start + np.arange(L, dtype=np.float32)
    return {"state": np.stack([np.stack([steps, -steps], -1)] * rows) + np.arange(rows)[:, None, None],
            "is_first": np.zeros((rows, L), bool), "action": np.ones((rows, L, 2), np.float32)}


def shard(root: str, capacity: int = 64, snapshot_steps: int = 0) -> ReplayShard:
    return ReplayShard(0, capacity, L, 6, 1.0, 8, 1e9, seed=0, store_root=root,
                       snapshot_steps=snapshot_steps)


async def fill(s: ReplayShard, chunks: int, streams=("a", "b")) -> list[tuple[str, int]]:
    keys = []
    for k in range(chunks):
        await s.insert(list(streams), [k * L] * len(streams), chunk(len(streams), k * L))
        keys += [(name, k * L) for name in streams]
    return keys


def same_replay(a: SequenceReplay, b: SequenceReplay) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["__meta__"] == sb["__meta__"]
    for key in sa:
        if key != "__meta__":
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


@pytest.mark.parametrize("uri", [False, True])
def test_a_restored_shard_has_every_chunk_and_both_counters(tmp_path, uri):
    root = f"file://{tmp_path}/replay" if uri else str(tmp_path / "replay")

    async def scenario():
        first = shard(root)
        await first.open()
        keys = await fill(first, 5)
        batch, _ = await first.sample(2, seq_len=6)
        assert batch is not None
        before = first.stats()
        # the process dies here: nothing is closed or flushed by hand
        second = shard(root)
        info = await second.open()
        assert info["snapshot"] is None and info["log_steps"] == 5 * 2 * L
        assert info["log_samples"] == 12
        assert (info["inserted"], info["sampled"]) == (before["inserted"], before["sampled"])
        same_replay(first.replay, second.replay)
        assert set(await second.chunk_keys()) == set(keys)
        # the next incarnation appends a new part and a third one sees both
        await fill(second, 1, streams=("c",))
        third = shard(root)
        info = await third.open()
        assert info["log_parts"] == 2 and info["inserted"] == before["inserted"] + L
        same_replay(second.replay, third.replay)

    asyncio.run(scenario())


def test_compaction_writes_a_snapshot_and_prunes_the_log(tmp_path):
    root = str(tmp_path / "replay")

    async def scenario():
        s = shard(root, capacity=64, snapshot_steps=24)
        await s.open()
        await fill(s, 4)  # 32 steps: one compaction after 24
        files = sorted(os.listdir(tmp_path / "replay" / "shard_0"))
        assert files == ["log-000001-0000.bin", "snapshot-000001.npz"], files
        await fill(s, 9, streams=("z",))  # 36 more: the ring wraps, a second compaction, 20 logged
        files = sorted(os.listdir(tmp_path / "replay" / "shard_0"))
        assert "snapshot-000002.npz" in files and "snapshot-000001.npz" not in files
        assert not any(f.startswith("log-000001") for f in files)
        assert "log-000002-0000.bin" in files
        again = shard(root, capacity=64, snapshot_steps=24)
        info = await again.open()
        assert info["snapshot"].endswith("snapshot-000002.npz")
        same_replay(s.replay, again.replay)
        assert again.limiter.inserted == s.limiter.inserted == 68

    asyncio.run(scenario())


def test_a_record_cut_short_by_a_kill_is_ignored(tmp_path):
    root = str(tmp_path / "replay")

    async def scenario():
        s = shard(root)
        await s.open()
        await fill(s, 3)
        return s.stats()["inserted"]

    inserted = asyncio.run(scenario())
    log = tmp_path / "replay" / "shard_0" / "log-000000-0000.bin"
    data = log.read_bytes()
    log.write_bytes(data[:-10])  # the last insert was being written when the process died
    with open(log, "rb") as f:
        records = list(read_records(f))
    assert len(records) == 2
    replay, limiter = SequenceReplay(64, L, 6), RateLimiter(1.0, 8, 1e9)
    info = ShardStore(root, 0).restore(replay, limiter)
    assert info["log_steps"] == inserted - 2 * L and limiter.inserted == inserted - 2 * L


def test_the_log_refuses_object_arrays(tmp_path):
    store = ShardStore(str(tmp_path), 0)
    with pytest.raises(ValueError, match="dtype object"):
        store.append_insert(["a"], [0], {"state": np.array([[None] * L], dtype=object)}, L)


def test_the_object_store_path_uploads_log_parts_and_snapshots(tmp_path, monkeypatch):
    """Without appends (an object store: here file:// treated as one), records are uploaded as
    a new part every flush_seconds and at a compaction; a restore reads parts and snapshot."""
    from distwm.runtime import replay_store

    monkeypatch.setattr(replay_store.storage, "is_local", lambda location: False)
    root = f"file://{tmp_path}/bucket"

    async def scenario():
        s = ReplayShard(0, 64, L, 6, 1.0, 8, 1e9, store_root=root, snapshot_steps=40,
                        flush_seconds=0.0)
        await s.open()
        keys = await fill(s, 3)  # 24 steps, each insert uploaded as its own part
        names = sorted(os.listdir(tmp_path / "bucket" / "shard_0"))
        assert names == [f"log-000000-000{p}.bin" for p in range(3)], names
        await fill(s, 3, streams=("x", "y"))  # passes 40 steps: compacted into a snapshot
        names = sorted(os.listdir(tmp_path / "bucket" / "shard_0"))
        assert "snapshot-000001.npz" in names and not any(n.startswith("log-000000") for n in names)
        again = ReplayShard(0, 64, L, 6, 1.0, 8, 1e9, store_root=root, snapshot_steps=40)
        info = await again.open()
        assert info["snapshot"].endswith("snapshot-000001.npz") and info["inserted"] == 48
        same_replay(s.replay, again.replay)
        assert set(keys) <= set(await again.chunk_keys())

    asyncio.run(scenario())


def test_a_snapshot_without_the_limiter_state_is_named_not_a_key_error(tmp_path):
    from distwm.utils.checkpoint import CorruptFileError

    root = str(tmp_path / "replay")
    store = ShardStore(root, 0)
    location = store.snapshot(SequenceReplay(64, L, 6), {"not_the_limiter": 1})  # a foreign writer
    with pytest.raises(CorruptFileError, match=r"no rate-limiter state.*not_the_limiter"):
        ShardStore(root, 0).restore(SequenceReplay(64, L, 6), RateLimiter(1.0, 8, 1e9))
    assert os.path.exists(location)  # the error loses nothing: the file is still there
