"""Dreamer replay invariants: wrap-around, episode boundaries, streams, counters, errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

from distwm.memory.dreamer_memory import Episode, Memory, ReplayBuffer


def fill(buffer: ReplayBuffer, steps: int, num_envs: int, seed: int = 0):
    """Add ``steps`` lockstep steps; ``state = [global step, episode id, env id]``.

    Episodes of random length 1..7 (ended by termination or truncation); the step after an
    ``is_last`` is the next episode's ``is_first``. Returns (episodes ended, is_last count).
    """
    rng = np.random.default_rng(seed)
    episode = np.arange(num_envs) * 1000
    remaining = rng.integers(1, 8, num_envs)
    first = np.ones(num_envs, bool)
    ended = 0
    for t in range(steps):
        last = (remaining == 0) & ~first
        terminal = last & (rng.random(num_envs) < 0.5)
        state = np.stack([np.full(num_envs, t), episode, np.arange(num_envs)], 1).astype(np.float32)
        buffer.add_batch({"state": state, "action": np.zeros((num_envs, 2), np.float32),
                          "reward": np.ones(num_envs, np.float32), "is_first": first.copy(),
                          "is_terminal": terminal, "is_last": last})
        ended += int(last.sum())
        first = last.copy()
        episode = np.where(last, episode + 1, episode)
        remaining = np.where(last, rng.integers(1, 8, num_envs), remaining - 1)
    return ended


@pytest.mark.parametrize("num_envs", [1, 3])
def test_sequences_are_consecutive_recent_and_cross_episodes_only_at_is_first(num_envs):
    buffer = ReplayBuffer(60 * num_envs, (3,), 2, seq_len=8, batch_size=64, num_envs=num_envs, seed=1)
    ended = fill(buffer, 250, num_envs)  # wraps the 60-step streams around four times
    assert buffer.steps == 250 * num_envs and buffer.episodes == ended
    assert len(buffer) <= buffer.capacity
    batch = buffer.sample_batch()
    state = batch["state"]
    assert state.shape == (64, 8, 3) and batch["is_first"].shape == (64, 8)
    step, episode, env = state[..., 0], state[..., 1], state[..., 2]
    assert np.all(np.diff(step, axis=1) == 1), "a sequence skipped or repeated a step"
    assert np.all(env == env[:, :1]), "a sequence mixed two env streams"
    assert step.min() >= 250 - 60, "a sequence used an overwritten (older than capacity) step"
    changed = np.diff(episode, axis=1) != 0
    assert np.all(batch["is_first"][:, 1:][changed]), "an episode change without is_first"
    assert np.all(changed[batch["is_first"][:, 1:]]), "is_first inside an episode"
    assert np.all(batch["is_last"][:, :-1][changed]), "a new episode started before is_last"
    assert np.all(batch["is_terminal"] <= batch["is_last"])


def test_single_env_add_and_counters():
    buffer = ReplayBuffer(20, {"state": (2,)}, 1, seq_len=3, batch_size=2)
    assert not buffer.can_sample()
    with pytest.raises(ValueError, match="no complete sequence"):
        buffer.sample_batch()
    for t in range(5):
        buffer.add({"state": np.full(2, t, np.float32)}, np.zeros(1), 1.0, done=t == 4,
                   is_first=t == 0)
    assert buffer.can_sample() and buffer.steps == 5 and buffer.episodes == 1
    batch = buffer.sample_batch()
    assert set(batch) == {"state", "action", "reward", "is_first", "is_terminal", "is_last"}


def test_image_steps_stay_uint8_and_chunks(tmp_path):
    buffer = ReplayBuffer(32, {"image": (3, 8, 8)}, 2, seq_len=4, batch_size=3, num_envs=2,
                          chunk_length=4)
    chunk = {"image": np.zeros((2, 4, 3, 8, 8), np.uint8), "action": np.zeros((2, 4, 2), np.float32),
             "reward": np.zeros((2, 4), np.float32), "is_first": np.zeros((2, 4), bool),
             "is_terminal": np.zeros((2, 4), bool), "is_last": np.zeros((2, 4), bool)}
    chunk["is_first"][:, 0] = True
    buffer.add_chunk(chunk)
    batch = buffer.sample_batch()
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (3, 4, 3, 8, 8)
    chunk["image"] = np.random.default_rng(0).integers(0, 256, (2, 4, 3, 8, 8), dtype=np.uint8)
    chunk["is_first"][:] = False
    chunk["is_last"][1, 3] = True
    buffer.add_chunk(chunk)
    path = buffer.save(tmp_path / "replay.npz")
    other = ReplayBuffer(32, {"image": (3, 8, 8)}, 2, seq_len=4, batch_size=3, num_envs=2,
                         chunk_length=4)
    other.load(path)
    assert len(other) == len(buffer) == 16 and other.steps == buffer.steps == 16
    assert other.episodes == buffer.episodes == 1
    assert_same_contents(other, buffer)
    np.testing.assert_array_equal(other.replay.state_dict()["data/image"][2:], chunk["image"])


def assert_same_contents(restored: ReplayBuffer, original: ReplayBuffer) -> None:
    """Every stored array equal element by element (and of the same dtype), and the same
    bookkeeping: streams, write position, counters."""
    mine, theirs = restored.replay.state_dict(), original.replay.state_dict()
    assert sorted(mine) == sorted(theirs)
    for key, value in theirs.items():
        if key == "__meta__":
            assert mine[key] == value
        else:
            assert mine[key].dtype == value.dtype, key
            np.testing.assert_array_equal(mine[key], value, err_msg=key)


@pytest.mark.parametrize("suffix", ["npz", "h5"])
def test_save_and_load_restore_every_step_and_continue_identically(tmp_path, suffix):
    if suffix == "h5":
        require_module("h5py")
    make = lambda: ReplayBuffer(60 * 3, (3,), 2, seq_len=8, batch_size=16, num_envs=3, seed=4)  # noqa: E731
    buffer = make()
    ended = fill(buffer, 250, 3)  # wrapped around: the oldest blocks were overwritten
    path = buffer.save(tmp_path / f"replay.{suffix}")
    other = make()
    other.load(path)
    assert (other.steps, other.episodes, len(other)) == (buffer.steps, ended, len(buffer))
    assert_same_contents(other, buffer)
    # the steps held are the newest 60 of each env, by hand: state = [step, episode, env]
    state = other.replay.state_dict()["data/state"].reshape(-1, 3)
    for env in range(3):
        steps = np.sort(state[state[:, 2] == env, 0])
        np.testing.assert_array_equal(steps, np.arange(190, 250))
    # both continue the same way: the same next steps, the same sequences from the same seed
    for b in (buffer, other):
        fill(b, 20, 3, seed=9)
    assert_same_contents(other, buffer)
    np.testing.assert_array_equal(other.sample_batch()["state"], buffer.sample_batch()["state"])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="size"):
        ReplayBuffer(4, (2,), 1, seq_len=8, batch_size=2)
    with pytest.raises(ValueError, match="obs_shape"):
        ReplayBuffer(40, (2, 2), 1, seq_len=8, batch_size=2)
    with pytest.raises(ValueError, match="seq_len"):
        ReplayBuffer(40, (2,), 1, seq_len=0, batch_size=2)
    buffer = ReplayBuffer(40, (2,), 1, seq_len=4, batch_size=2, num_envs=2)
    with pytest.raises(ValueError, match="add_batch"):
        buffer.add({"state": np.zeros(2)}, np.zeros(1), 0.0, 0.0)
    with pytest.raises(ValueError, match="lacks keys"):
        buffer.add_batch({"state": np.zeros((2, 2))})
    good = {"state": np.zeros((2, 2), np.float32), "action": np.zeros((2, 1), np.float32),
            "reward": np.zeros(2, np.float32), "is_first": np.zeros(2, bool),
            "is_terminal": np.zeros(2, bool), "is_last": np.zeros(2, bool)}
    with pytest.raises(ValueError, match="'action' has shape"):
        buffer.add_batch({**good, "action": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="sequences of 4"):
        buffer.sample_batch(seq_len=5)


def test_seed_memory_and_episode():
    memory = Memory(capacity=3)
    for i in range(5):
        memory.append(i, i * 2)
    assert len(memory) == 3 and all(t[0] >= 2 for t in memory.sample(3))
    with pytest.raises(ValueError, match="cannot sample"):
        memory.sample(4)
    episode = Episode(np.zeros(2))
    episode.append(np.ones(1), np.ones(2), 1.5, False)
    episode.append(np.ones(1), np.ones(2), 2.0, True)
    assert len(episode) == 2 and episode.total_reward == 3.5


def test_sample_is_the_seeds_time_major_tuple():
    """``sample()`` keeps the seed's contract: ``(obs (T, B, C, H, W), actions (T, B, A),
    rewards (T, B), terminals (T, B))``, terminals 1.0 where the episode ended."""
    buffer = ReplayBuffer(40, (3, 4, 4), 2, seq_len=5, batch_size=3, seed=0)
    for t in range(12):
        buffer.add({"image": np.full((3, 4, 4), t, np.uint8)}, np.full(2, t, np.float32),
                   float(t), done=t == 11, is_first=t == 0)
    obs, actions, rewards, terminals = buffer.sample()
    assert obs.shape == (5, 3, 3, 4, 4) and obs.dtype == np.uint8
    assert actions.shape == (5, 3, 2) and rewards.shape == (5, 3) and terminals.shape == (5, 3)
    assert terminals.dtype == np.float32
    # time-major: consecutive rows of one column are consecutive steps of one sequence
    np.testing.assert_array_equal(np.diff(rewards, axis=0), np.ones((4, 3)))
    np.testing.assert_array_equal(obs[:, :, 0, 0, 0], rewards.astype(np.uint8))
    np.testing.assert_array_equal(terminals, (rewards == 11).astype(np.float32))
