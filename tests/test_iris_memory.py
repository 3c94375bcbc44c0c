"""IRIS replay invariants: ring wrap, episode ends, the write point, shapes, counters, errors."""

from __future__ import annotations

import numpy as np
import pytest

from distwm.memory.iris_memory import IRISOnPolicyBuffer, IRISReplayBuffer

OBS_SHAPE = (2, 1, 1)  # two channels: the step counter in base 256


def counter_obs(t: int) -> np.ndarray:
    return np.array([t % 256, t // 256], np.uint8).reshape(OBS_SHAPE)


def obs_steps(obs: np.ndarray) -> np.ndarray:
    """The step counter stored in observations ``(..., 2, 1, 1)``."""
    return obs[..., 0, 0, 0].astype(np.int64) + 256 * obs[..., 1, 0, 0].astype(np.int64)


def fill(buffer: IRISReplayBuffer, steps: int, terminal_at=(), start: int = 0) -> None:
    """Add steps ``start .. start + steps - 1``; action = [t, -t], reward = t."""
    for t in range(start, start + steps):
        buffer.add(counter_obs(t), np.array([t, -t], np.float32), float(t), t in terminal_at)


def valid_first_steps(steps: int, size: int, seq_len: int, terminal_at) -> set[int]:
    """Brute force: first steps of windows of ``seq_len`` transitions (+1 observation) that lie
    in the stored (most recent ``size``) steps and have no terminal before their last transition."""
    oldest = max(0, steps - size)
    return {s for s in range(oldest, steps - seq_len)
            if not any(s + k in terminal_at for k in range(seq_len - 1))}


def test_shapes_dtypes_and_contents_line_up():
    buffer = IRISReplayBuffer(50, (3, 4, 5), action_size=2, seq_len=6, batch_size=8)
    rng = np.random.default_rng(0)
    for t in range(30):
        buffer.add(rng.integers(0, 256, (3, 4, 5), dtype=np.uint8), [t, -t], t, False)
    obs, actions, rewards, terminals = buffer.sample_sequence()
    assert obs.shape == (8, 7, 3, 4, 5) and obs.dtype == np.uint8
    assert actions.shape == (8, 6, 2) and actions.dtype == np.float32
    assert rewards.shape == (8, 6) and rewards.dtype == np.float32
    assert terminals.shape == (8, 6) and terminals.dtype == np.float32
    first = rewards[:, 0].astype(int)
    np.testing.assert_array_equal(obs[:, 0], buffer.observations[first])
    np.testing.assert_array_equal(actions[..., 0], rewards)
    assert np.all(np.diff(rewards, axis=1) == 1)
    # a different seq_len per call
    obs, actions, rewards, terminals = buffer.sample_sequence(seq_len=3)
    assert obs.shape == (8, 4, 3, 4, 5) and actions.shape == (8, 3, 2) and terminals.shape == (8, 3)


def test_ring_wraps_fifo_and_counts():
    buffer = IRISReplayBuffer(10, OBS_SHAPE, action_size=2, seq_len=3, batch_size=4)
    assert len(buffer) == 0 and buffer.buffer_capacity == 10
    fill(buffer, 25, terminal_at={4, 13, 20})
    assert buffer.steps == 25 and buffer.episodes == 3
    assert len(buffer) == 10 and buffer.buffer_capacity == 10 and buffer.full
    assert buffer.idx == 5
    # steps 15..24 are held, overwritten in place: ring slot i holds the newest step = i (mod 10)
    assert sorted(obs_steps(buffer.observations).tolist()) == list(range(15, 25))
    np.testing.assert_array_equal(obs_steps(buffer.observations) % 10, np.arange(10))
    assert buffer.terminals.sum() == 1.0 and buffer.terminals[0] == 1.0  # only step 20 left
    for _ in range(20):
        obs, action, reward, terminal = buffer.sample_single()
        t = int(obs_steps(obs))
        assert 15 <= t < 25 and reward == t and action.tolist() == [t, -t]
        assert terminal == float(t == 20)
        assert isinstance(reward, float) and isinstance(terminal, float)


@pytest.mark.parametrize("steps,size,seq_len", [(9, 40, 4), (40, 40, 4), (137, 40, 5), (61, 12, 1)])
def test_sequences_stay_in_an_episode_and_before_the_write_point(steps, size, seq_len):
    terminal_at = {3, 10, 11, 24, 30, 52, 57, 60, 90, 100, 101, 102, 120, 135}
    buffer = IRISReplayBuffer(size, OBS_SHAPE, action_size=2, seq_len=seq_len, batch_size=4000)
    fill(buffer, steps, terminal_at)
    obs, actions, rewards, terminals = buffer.sample_sequence()
    t = obs_steps(obs)
    assert np.all(np.diff(t, axis=1) == 1), "a sequence jumped (crossed the ring's write point)"
    assert t.min() >= max(0, steps - size) and t.max() <= steps - 1, "read an overwritten/unwritten slot"
    np.testing.assert_array_equal(rewards, t[:, :-1])  # transitions belong to the observations
    np.testing.assert_array_equal(actions[..., 1], -t[:, :-1])
    expected_terms = np.isin(t[:, :-1], list(terminal_at)).astype(np.float32)
    np.testing.assert_array_equal(terminals, expected_terms)
    assert not terminals[:, :-1].any(), "a terminal inside a sequence (crossed an episode end)"
    # every allowed window, and only those, is drawn (incl. the one ending at the newest frame)
    valid = valid_first_steps(steps, size, seq_len, terminal_at)
    assert set(t[:, 0].tolist()) == valid
    assert steps - seq_len - 1 in valid


def test_a_terminal_may_end_a_sequence():
    buffer = IRISReplayBuffer(30, OBS_SHAPE, action_size=2, seq_len=4, batch_size=500)
    fill(buffer, 20, terminal_at={7})
    _, _, rewards, terminals = buffer.sample_sequence()
    ending = terminals[:, -1] == 1
    assert ending.any() and np.all(rewards[ending, -1] == 7)
    assert set(rewards[:, 0].astype(int).tolist()) == valid_first_steps(20, 30, 4, {7})


def test_new_steps_become_sampleable():
    buffer = IRISReplayBuffer(20, OBS_SHAPE, action_size=2, seq_len=5, batch_size=200)
    fill(buffer, 6)  # exactly one window
    obs = buffer.sample_sequence()[0]
    np.testing.assert_array_equal(obs_steps(obs), np.tile(np.arange(6), (200, 1)))
    fill(buffer, 1, start=6)
    assert set(obs_steps(buffer.sample_sequence()[0])[:, 0].tolist()) == {0, 1}


def test_not_enough_data_errors():
    buffer = IRISReplayBuffer(20, OBS_SHAPE, action_size=2, seq_len=5, batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample_single()
    with pytest.raises(ValueError, match="holds 0 transitions.*seq_len=5 needs at least 6"):
        buffer.sample_sequence()
    fill(buffer, 5)
    with pytest.raises(ValueError, match="holds 5 transitions.*at least 6"):
        buffer.sample_sequence()
    assert buffer.sample_sequence(seq_len=4)[0].shape == (2, 5, *OBS_SHAPE)
    short = IRISReplayBuffer(20, OBS_SHAPE, action_size=2, seq_len=5, batch_size=2)
    fill(short, 15, terminal_at={2, 5, 8, 11})  # episodes of 3 transitions
    with pytest.raises(ValueError, match="no 5 consecutive stored transitions lie inside one episode"):
        short.sample_sequence()
    assert short.sample_sequence(seq_len=3)[2].shape == (2, 3)


@pytest.mark.parametrize("kwargs,match", [
    ({"size": 0}, "size must be a positive int, got 0"),
    ({"size": 5}, "size=5 cannot hold a sequence of seq_len=5.*size >= 6"),
    ({"obs_shape": (64, 64)}, r"obs_shape must be \(C, H, W\).*\(64, 64\)"),
    ({"obs_shape": (3, 0, 64)}, r"obs_shape must be \(C, H, W\)"),
    ({"action_size": -1}, "action_size must be a positive int, got -1"),
    ({"seq_len": 2.5}, "seq_len must be a positive int, got 2.5"),
    ({"batch_size": True}, "batch_size must be a positive int, got True"),
])
def test_constructor_errors(kwargs, match):
    args = {"size": 100, "obs_shape": OBS_SHAPE, "action_size": 2, "seq_len": 5, "batch_size": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        IRISReplayBuffer(**args)


def test_add_and_sample_argument_errors():
    buffer = IRISReplayBuffer(10, (3, 4, 4), action_size=2, seq_len=3)
    action = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match=r"obs has shape \(4, 4, 3\), expected obs_shape=\(3, 4, 4\)"):
        buffer.add(np.zeros((4, 4, 3), np.uint8), action, 0.0, False)
    with pytest.raises(ValueError, match="obs must be uint8 pixels.*float32"):
        buffer.add(np.zeros((3, 4, 4), np.float32), action, 0.0, False)
    with pytest.raises(ValueError, match="obs must be uint8 pixels.*int64"):
        buffer.add(np.full((3, 4, 4), 256), action, 0.0, False)
    with pytest.raises(ValueError, match=r"action has shape \(3,\), expected \(action_size,\) = \(2,\)"):
        buffer.add(np.zeros((3, 4, 4), np.uint8), np.zeros(3), 0.0, False)
    assert buffer.steps == 0 and len(buffer) == 0
    buffer.add(np.full((3, 4, 4), 200), action, 0.0, False)  # integer pixels in range are fine
    assert buffer.observations[0].max() == 200 and buffer.observations.dtype == np.uint8
    with pytest.raises(ValueError, match=r"seq_len=10 does not fit.*size=10.*1 <= seq_len <= 9"):
        buffer.sample_sequence(seq_len=10)
    with pytest.raises(ValueError, match="seq_len must be a positive int, got 0"):
        buffer.sample_sequence(seq_len=0)


def test_on_policy_buffer_collects_and_clears():
    buffer = IRISOnPolicyBuffer(max_steps=3)
    assert buffer.max_steps == 3 and len(buffer) == 0
    obs, actions, rewards, terminals = buffer.get_arrays()
    assert obs.shape == (0,) and actions.shape == (0, 0) and rewards.shape == terminals.shape == (0,)
    frame = np.zeros((3, 2, 2), np.uint8)
    for t in range(3):
        frame[0, 0, 0] = t
        buffer.add(frame, [t, 1.0], t * 0.5, t == 2)
    assert buffer.observations[0][0, 0, 0] == 0, "add must copy the observation"
    assert buffer.terminals == [0.0, 0.0, 1.0] and buffer.rewards == [0.0, 0.5, 1.0]
    obs, actions, rewards, terminals = buffer.get_arrays()
    assert obs.shape == (3, 3, 2, 2) and obs.dtype == np.uint8 and obs[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert actions.shape == (3, 2) and actions.dtype == np.float32 and actions[:, 0].tolist() == [0, 1, 2]
    assert rewards.dtype == terminals.dtype == np.float32 and terminals.tolist() == [0, 0, 1]
    with pytest.raises(RuntimeError, match=r"full \(max_steps=3\)"):
        buffer.add(frame, [0.0, 0.0], 0.0, False)
    buffer.clear()
    assert len(buffer) == 0 and buffer.observations == buffer.actions == buffer.rewards == buffer.terminals == []
    buffer.add(frame, [0.0, 0.0], 0.0, False)
    with pytest.raises(ValueError, match=r"obs \(3, 4, 4\) / action \(2,\) differ.*\(3, 2, 2\)"):
        buffer.add(np.zeros((3, 4, 4), np.uint8), [0.0, 0.0], 0.0, False)
    with pytest.raises(ValueError, match="max_steps must be a positive int, got 0"):
        IRISOnPolicyBuffer(max_steps=0)


def test_an_episode_moves_from_the_on_policy_buffer_to_replay():
    episode = IRISOnPolicyBuffer()
    replay = IRISReplayBuffer(100, OBS_SHAPE, action_size=2, seq_len=4, batch_size=3)
    for t in range(8):
        episode.add(counter_obs(t), [t, -t], float(t), t == 7)
    for step in zip(*episode.get_arrays()):
        replay.add(*step)
    episode.clear()
    assert replay.steps == 8 and replay.episodes == 1 and len(episode) == 0
    assert np.all(np.diff(obs_steps(replay.sample_sequence()[0]), axis=1) == 1)
