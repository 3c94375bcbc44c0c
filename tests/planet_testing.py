"""Helpers shared by the PlaNet / RSSM tests (imported by tests/test_planet_*.py)."""

from __future__ import annotations

import torch

from distwm.configs.planet_config import PlanetConfig
from distwm.memory.planet_memory import Episode, Memory


def tiny_planet_config(**overrides) -> PlanetConfig:
    """A PlanetConfig with networks and a planner small enough for CPU tests."""
    fields = dict(state_size=16, latent_size=4, hidden_size=16, embedding_size=16, batch_size=4,
                  train_seq_len=8, train_ratio=32.0, planning_horizon=4, num_candidates=32,
                  num_iterations=2, top_candidates=4, device="cpu", seed_episodes=1)
    fields.update(overrides)
    return PlanetConfig(**fields)


def toy_memory(episodes: int = 4, length: int = 30, obs_dim: int = 4, seed: int = 0) -> Memory:
    """Episodes of a linear system driven by random actions; reward = first action value."""
    gen = torch.Generator().manual_seed(seed)
    memory = Memory(10)
    for _ in range(episodes):
        episode = Episode()
        x = torch.zeros(obs_dim)
        for _ in range(length):
            a = torch.rand(2, generator=gen) * 2 - 1
            episode.append(x.clone(), a, float(a[0]), False)
            x = 0.8 * x + 0.2 * torch.cat([a, -a])[:obs_dim]
        episode.terminate(x)
        memory.append([episode])
    return memory
