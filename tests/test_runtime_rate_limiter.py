"""RateLimiter and ReplayShard without Ray: blocking, releasing, the ratio guarantee."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from distwm.runtime.batch_fetcher import split_by_budget
from distwm.runtime.rate_limiter import RateLimiter, min_error_buffer
from distwm.runtime.replay_shard import ReplayShard


def test_predicates_follow_the_samples_per_insert_band():
    lim = RateLimiter(samples_per_insert=4.0, min_size=10, error_buffer=20.0)
    assert not lim.can_sample(1)  # below min_size
    lim.record_insert(10)
    assert lim.sample_budget() == 20.0  # only the error buffer so far
    assert lim.can_sample(20) and not lim.can_sample(21)
    lim.record_insert(5)  # 5 steps past min_size -> 20 replayed steps owed
    assert lim.target() == 20.0 and lim.sample_budget() == 40.0
    # workers are error_buffer / spi = 5 steps ahead of the learner: no more inserts
    assert lim.can_insert(0) and not lim.can_insert(1)
    lim.record_sample(40)
    assert not lim.can_sample(1)
    assert lim.can_insert(10) and not lim.can_insert(11)  # (25 - 10) * 4 - 20 = 40 <= 40
    assert lim.ratio() == pytest.approx(40 / 5)


def test_zero_ratio_never_blocks_inserts():
    lim = RateLimiter(0.0, min_size=0, error_buffer=0.0)
    lim.record_insert(10 ** 9)
    assert lim.can_insert(10 ** 9) and not lim.can_sample(1)


@pytest.mark.parametrize("bad", [dict(samples_per_insert=-1.0), dict(min_size=-1),
                                 dict(error_buffer=float("nan"))])
def test_bad_arguments_fail(bad):
    kwargs = {"samples_per_insert": 1.0, "min_size": 0, "error_buffer": 1.0, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        RateLimiter(**kwargs)


@pytest.mark.parametrize("spi,insert,sample", [(512.0, 128, 1024), (1.0, 64, 16), (0.25, 32, 64)])
def test_min_error_buffer_never_deadlocks(spi, insert, sample):
    """With the minimum buffer, at every reachable state an insert or a sample is allowed, and
    the ratio holds: |sampled - spi * (inserted - min_size)| <= buffer."""
    lim = RateLimiter.from_tolerance(spi, min_size=100, tolerance=0.0, max_insert=insert,
                                     max_sample=sample)
    assert lim.error_buffer == min_error_buffer(spi, insert, sample)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        can_i, can_s = lim.can_insert(insert), lim.can_sample(sample)
        assert can_i or can_s
        if can_i and (not can_s or rng.random() < 0.5):
            lim.record_insert(insert)
        else:
            lim.record_sample(sample)
        if lim.inserted >= lim.min_size:
            assert abs(lim.sampled - lim.target()) <= lim.error_buffer
    assert lim.ratio() == pytest.approx(spi, rel=0.2)


def test_async_waits_block_and_release():
    async def scenario():
        lim = RateLimiter(samples_per_insert=2.0, min_size=4, error_buffer=4.0)
        log = []

        async def learner():
            ok = await lim.wait_for_sample(8, timeout=5)
            log.append(("sampled", ok, lim.inserted))
            lim.record_sample(8)

        task = asyncio.create_task(learner())
        await asyncio.sleep(0.05)
        assert not task.done()  # waits for data
        lim.record_insert(4)  # min_size reached, budget 4 < 8: still waits
        await asyncio.sleep(0.05)
        assert not task.done()
        lim.record_insert(2)  # budget 2 * 2 + 4 = 8: released
        await asyncio.wait_for(task, 1)
        assert log == [("sampled", True, 6)]

        assert lim.can_insert(4) and not lim.can_insert(5)  # (6 + 5 - 4) * 2 - 4 > 8 sampled
        waiting = asyncio.create_task(lim.wait_for_insert(5, timeout=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the learner is behind: the worker waits
        lim.record_sample(2)
        assert await asyncio.wait_for(waiting, 1) is True

        assert await lim.wait_for_sample(100, timeout=0.05) is False  # timeout
        closing = asyncio.create_task(lim.wait_for_sample(100))
        await asyncio.sleep(0.01)
        lim.close()
        assert await asyncio.wait_for(closing, 1) is False  # released, not allowed

    asyncio.run(scenario())


def _chunk(n, length, start):
    steps = np.arange(start, start + length, dtype=np.float32)
    return {"state": np.broadcast_to(steps[None, :, None], (n, length, 1)).copy(),
            "is_first": np.zeros((n, length), bool)}


def test_replay_shard_holds_the_learner_and_the_workers():
    async def scenario():
        shard = ReplayShard(0, capacity=256, chunk_length=8, seq_len=4, samples_per_insert=1.0,
                            min_size=16, error_buffer=16.0)
        batch, stats = await shard.sample(2, timeout=0.05)
        assert batch is None and stats["inserted"] == 0  # learner waits: no data
        await shard.insert(["a", "b"], [0, 0], _chunk(2, 8, 0))
        sample_task = asyncio.create_task(shard.sample(8, timeout=5))  # 32 steps > budget 16
        await asyncio.sleep(0.05)
        assert not sample_task.done()
        await shard.insert(["a", "b"], [8, 8], _chunk(2, 8, 8))  # budget 16 + 16 = 32
        batch, stats = await asyncio.wait_for(sample_task, 1)
        assert batch["state"].shape == (8, 4, 1) and stats["sampled"] == 32
        assert (np.diff(batch["state"][..., 0], axis=1) == 1).all()
        # workers may run error_buffer / ratio = 16 steps ahead of the target, then wait
        await shard.insert(["a", "b"], [16, 16], _chunk(2, 8, 16))
        await shard.insert(["a", "b"], [24, 24], _chunk(2, 8, 24))
        insert_task = asyncio.create_task(shard.insert(["a", "b"], [32, 32], _chunk(2, 8, 32)))
        await asyncio.sleep(0.05)
        assert not insert_task.done()
        await shard.sample(8, timeout=1)
        stats = await asyncio.wait_for(insert_task, 1)
        assert stats["inserted"] == 80 and stats["insert_wait"] > 0.04

    asyncio.run(scenario())


def _assert_same_contents(restored, original):
    """Both replays hold the same steps: every array of their state, element by element, and
    the same block bookkeeping (streams, write position, counters)."""
    mine, theirs = restored.replay.state_dict(), original.replay.state_dict()
    assert sorted(mine) == sorted(theirs)
    for key in theirs:
        if key == "__meta__":
            assert mine[key] == theirs[key]
        else:
            assert mine[key].dtype == theirs[key].dtype, key
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)


def test_replay_shard_snapshot_restores_contents_and_counters(tmp_path):
    async def scenario():
        kwargs = dict(capacity=128, chunk_length=8, seq_len=4, samples_per_insert=1.0,
                      min_size=8, error_buffer=64.0, store_root=str(tmp_path / "replay"))
        shard = ReplayShard(0, **kwargs)
        await shard.open()
        for start in (0, 8, 16):  # streams a and b: state = the step number
            await shard.insert(["a", "b"], [start, start], _chunk(2, 8, start))
        await shard.sample(2, timeout=1)
        assert (await shard.snapshot()).endswith("snapshot-000001.npz")
        await shard.insert(["a", "b"], [24, 24], _chunk(2, 8, 24))  # only in the log
        await shard.sample(3, timeout=1)
        shard.store.close()
        other = ReplayShard(0, **kwargs)
        stats = await other.open()
        assert stats["snapshot"].endswith("snapshot-000001.npz")
        assert (stats["log_steps"], stats["log_samples"]) == (16, 12)  # 2 x 8 steps, 3 x 4
        assert (stats["inserted"], stats["sampled"], stats["size"]) == (64, 20, 64)
        assert other.limiter.state_dict() == shard.limiter.state_dict()
        _assert_same_contents(other, shard)
        # what was inserted, by hand: each stream holds steps 0..31 in order, nothing else
        state = other.replay.state_dict()
        held = {(stream, int(start)): state["data/state"][block, :, 0]
                for block, (stream, start) in enumerate(zip(state["__meta__"]["block_stream"],
                                                            state["blocks/block_start"]))}
        assert sorted(held) == [(s, t) for s in "ab" for t in (0, 8, 16, 24)]
        for (_, start), steps in held.items():
            np.testing.assert_array_equal(steps, np.arange(start, start + 8))
        assert not state["data/is_first"].any()
        batch, _ = await other.sample(4, timeout=1)  # restored sequences are whole and in order
        assert (np.diff(batch["state"][..., 0], axis=1) == 1).all()

    asyncio.run(scenario())


def test_split_by_budget_favours_the_shard_with_more_budget():
    assert split_by_budget(4, [0.0, 0.0], 8) == [2, 2]
    assert split_by_budget(4, [100.0, 0.0], 8) == [4, 0]
    assert split_by_budget(6, [40.0, 16.0, float("-inf")], 8) == [5, 1, 0]
    for budgets in itertools.product([0.0, 10.0, 30.0], repeat=3):
        assert sum(split_by_budget(5, budgets, 4)) == 5
