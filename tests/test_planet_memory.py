"""Episode and Memory of PlaNet's episode replay."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from distwm.memory.planet_memory import Episode, Memory
from distwm.utils.utils import postprocess_img


def _episode(length: int, obs_dim: int = 3, start: float = 0.0) -> Episode:
    episode = Episode()
    for t in range(length):
        episode.append(np.full(obs_dim, start + t, np.float32), [t, -t], float(t), t == length - 1)
    episode.terminate(np.full(obs_dim, start + length, np.float32))
    return episode


def test_episode_records_and_terminates_into_arrays():
    episode = _episode(4)
    assert episode.size == 4
    assert episode.x.shape == (5, 3) and episode.u.shape == (4, 2) and episode.u.dtype == np.float32
    np.testing.assert_array_equal(episode.r, [0, 1, 2, 3])
    np.testing.assert_array_equal(episode.t, [0, 0, 0, 1])
    with pytest.raises(RuntimeError, match="after terminate"):
        episode.append(np.zeros(3), [0, 0], 0.0, False)


def test_episode_postprocess_fn_stores_uint8_images():
    episode = Episode(postprocess_fn=lambda obs: postprocess_img(obs, 5))
    image = torch.rand(3, 8, 8) - 0.5
    episode.append(image, torch.zeros(1, 2), torch.tensor(1.0), False)
    episode.terminate(image)
    assert episode.x.dtype == np.uint8 and episode.x.shape == (2, 3, 8, 8)
    assert episode.u.shape == (1, 2)


def test_sample_returns_contiguous_windows():
    memory = Memory(10)
    memory.append([_episode(20, start=100.0 * i) for i in range(3)])
    assert len(memory) == 3 and memory.size == 60 and list(memory.eps_lengths) == [20, 20, 20]
    obs, actions, rewards, terminals, lengths = memory.sample(16, tracelen=5)
    assert obs.shape == (16, 6, 3) and actions.shape == (16, 5, 2)
    assert rewards.shape == terminals.shape == (16, 5)
    np.testing.assert_array_equal(lengths, 5)
    # consecutive observations, rewards that match the observation they followed
    np.testing.assert_allclose(np.diff(obs[..., 0], axis=1), 1.0)
    np.testing.assert_allclose(rewards, obs[:, :-1, 0] % 100)
    obs_t, actions_t, *_ = memory.sample(4, tracelen=5, time_first=True)
    assert obs_t.shape == (6, 4, 3) and actions_t.shape == (5, 4, 2)


def test_short_episodes_are_zero_padded_with_their_length():
    memory = Memory()
    memory.append(_episode(3))
    obs, actions, rewards, _, lengths = memory.sample(2, tracelen=6)
    np.testing.assert_array_equal(lengths, 3)
    np.testing.assert_array_equal(obs[:, 4:], 0)
    np.testing.assert_array_equal(rewards[:, :3], [[0, 1, 2]] * 2)


def test_capacity_evicts_the_oldest_episodes():
    memory = Memory(2)
    for i in range(3):
        memory.append([_episode(2 + i)])
    assert list(memory.eps_lengths) == [3, 4] and memory.size == 7
    assert memory.episodes is memory


def test_memory_pickles_with_its_lengths():
    memory = Memory(5)
    memory.append([_episode(3), _episode(4)])
    copy = pickle.loads(pickle.dumps(memory))
    assert copy.maxlen == 5 and list(copy.eps_lengths) == [3, 4] and copy.size == 7


def test_sample_errors():
    memory = Memory()
    with pytest.raises(ValueError, match="empty"):
        memory.sample(2, 3)
    memory.append(_episode(0))
    with pytest.raises(ValueError, match="at least one transition"):
        memory.sample(2, 3)
    memory.append(_episode(3))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        memory.sample(0, 3)
    with pytest.raises(MemoryError, match="MiB"):
        big = Memory()
        episode = Episode()
        episode.append(np.zeros((3, 64, 64), np.uint8), [0.0], 0.0, False)
        episode.terminate(np.zeros((3, 64, 64), np.uint8))
        big.append(episode)
        big.sample(500, tracelen=50)
    with pytest.raises(ValueError, match="terminated"):
        memory.append(Episode())
    with pytest.raises(TypeError, match="Episode objects"):
        memory.append([object()])
