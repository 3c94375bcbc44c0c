"""PlaNet configuration: environment, recurrent state-space model, CEM planner, training loop.

Defaults are those of the PlaNet paper (Hafner et al. 2019, arXiv:1811.04551): a 200-unit GRU
state, 30-dimensional Gaussian latents, 1024-wide embeddings, 5-bit images, free nats 3,
Adam 1e-3 (eps 1e-4), gradient clipping 1000, batches of 50 sequences of 50 steps, and CEM over
12 steps with 1000 candidates, 10 iterations and the top 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from distwm.configs.activations import check_activation
from distwm.configs.rl_config import RLConfig

__all__ = ["PlanetConfig"]

#: activation names the PlaNet networks accept (see ``distwm.blocks.layers``)


@dataclass
class PlanetConfig(RLConfig):
    """Configuration of a PlaNet agent (latent planning with CEM).

    ``batch_size`` sequences of ``train_seq_len`` steps make one update; ``train_ratio`` is
    replayed steps per env step (after action repeat): PlaNet's 100 updates of 50 x 50 steps
    after every 1000-step episode at action repeat 4 give 1000. How long a run lasts and how it
    is laid out on Ray is the runtime's config (``distwm.configs.runtime_config``);
    ``memory_size`` and ``seed_episodes`` are for the single-process :class:`~distwm.models.planet.Planet`.

    Its cadences are :class:`RLConfig`'s, in env steps: PlaNet collects one episode of
    ``time_limit`` env steps per epoch, so the defaults (an evaluation episode and a checkpoint
    every 25,000 steps, a log record every 1000) are the seed's ``save_every=25`` epochs and one
    record an epoch. ``max_nonfinite_updates`` consecutive skipped updates (non-finite loss or
    gradient) raise :class:`distwm.agent.NonFiniteLossError`.
    """

    #: import path of the class implementing :class:`distwm.agent.Agent` for this config
    AGENT_CLASS: ClassVar[str] = "distwm.models.planet.core:PlanetCore"

    env: str = "cartpole-swingup"
    action_repeat: int = 8
    exp_name: str = "planet"

    # -- learning (agent protocol: one replay sample, replay ratio) -------------------------
    batch_size: int = 50
    train_seq_len: int = 50
    train_ratio: float = 1000.0

    # -- model --------------------------------------------------------------------------------
    bit_depth: int = 5
    state_size: int = 200
    latent_size: int = 30
    hidden_size: int = 200
    embedding_size: int = 1024
    activation: str = "relu"
    min_std: float = 0.1

    # -- loss and optimiser -------------------------------------------------------------------
    free_nats: float = 3.0
    kl_beta: float = 1.0
    learning_rate: float = 1e-3
    adam_epsilon: float = 1e-4
    grad_clip_norm: float = 1000.0

    # -- CEM planner --------------------------------------------------------------------------
    planning_horizon: int = 12
    num_candidates: int = 1000
    num_iterations: int = 10
    top_candidates: int = 100
    action_noise: float = 0.3

    # -- single-process Planet (episode memory, cadences in env steps) -------------------------
    memory_size: int = 100
    seed_episodes: int = 5
    eval_interval: int = 25_000
    eval_episodes: int = 1
    checkpoint_interval: int = 25_000
    log_interval: int = 1000
    max_nonfinite_updates: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = ("action_repeat", "batch_size",
                    "train_seq_len", "state_size", "latent_size", "hidden_size", "embedding_size",
                    "planning_horizon", "num_candidates", "num_iterations", "top_candidates",
                    "memory_size", "image_size", "time_limit", "max_nonfinite_updates")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PlanetConfig.{name} must be a positive int, got {value!r}")
        for name in ("seed_episodes",):
            if getattr(self, name) < 0:
                raise ValueError(f"PlanetConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("train_ratio", "learning_rate", "adam_epsilon", "grad_clip_norm", "min_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PlanetConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("free_nats", "kl_beta", "action_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"PlanetConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 1 <= self.bit_depth <= 8:
            raise ValueError(f"PlanetConfig.bit_depth must be in 1..8, got {self.bit_depth!r}")
        # top_candidates <= num_candidates is checked when the planner is built (RSSMPolicy), so
        # that overrides applied one at a time (--set) may change both in either order.
        if self.obs_type in ("pixels", "both") and self.image_size != 64:
            raise ValueError(
                f"PlanetConfig.image_size must be 64 for pixel observations (PlaNet's conv "
                f"encoder and decoder), got {self.image_size}"
            )
        check_activation("PlanetConfig.activation", self.activation)
