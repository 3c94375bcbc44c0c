"""IRIS configuration (Micheli, Alonso & Fleuret 2023, "Transformers are Sample-Efficient World
Models", and its reference code's ``config/``): the defaults are the paper's Atari 100k setup.

* tokenizer: VQ with 512 codes of dim 512, 16 tokens per 64x64 frame, conv encoder/decoder with
  64 base channels, L1 + commitment (1.0) + codebook + perceptual loss, batches of 256 frames;
* world model: GPT, 10 layers, 4 heads, width 256, dropout 0.1, 20 steps of context, batches of
  64 sequences of 20 steps, AdamW weight decay 0.01;
* actor-critic: conv 32/32/64/64 + LSTMCell 512 on reconstructed frames, burn-in 20, horizon 20,
  gamma 0.995, lambda 0.95, entropy 0.001, batches of 64;
* all three: Adam(W) lr 1e-4, gradient clip 10, 200 training steps per 200-step epoch, starting
  after 5 / 25 / 50 epochs;
* Atari: frame skip 4 with a max-pool, no sticky actions, 30 no-op starts and life loss as
  episode end in training, 1 no-op and whole games in evaluation, acting with epsilon 0.01 at
  temperature 1 in training and temperature 0.5 in evaluation, 100k agent steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from distwm.configs.rl_config import RLConfig

__all__ = ["IRISConfig"]


def _atari100k_train() -> dict[str, Any]:
    return {"preprocessing": "atari100k", "max_noop": 30, "terminate_on_life_loss": True}


def _atari100k_eval() -> dict[str, Any]:
    return {"max_noop": 1, "terminate_on_life_loss": False}


@dataclass
class IRISConfig(RLConfig):
    """Configuration of an IRIS agent (module docstring for the paper's values).

    The schedule is in IRIS's epochs: an epoch collects ``steps_per_epoch`` env steps and then
    trains each started component ``updates_per_epoch`` steps, so the replay ratio is
    ``updates_per_epoch / steps_per_epoch`` updates per env step (every update carries the
    three named samples, :meth:`data_spec`). Training starts after
    ``tokenizer_start_epochs * steps_per_epoch`` env steps (the runtime's ``min_fill``); the
    world model and the actor-critic join ``(start - tokenizer_start) * updates_per_epoch``
    updates later.

    ``perceptual_weights``: a local file of LPIPS weights (``lpips`` package format, with the
    VGG16 feature weights beside it) or ``"lpips"`` for the weights an installed ``lpips``
    package ships; ``None`` trains without the perceptual term (said at start).
    """

    AGENT_CLASS: ClassVar[str] = "distwm.models.iris.core:IRISCore"

    env: str = "ALE/Pong-v5"
    env_backend: str = "atari"
    obs_type: Literal["auto", "state", "pixels", "both"] = "pixels"
    action_repeat: int = 1  # the Atari wrapper skips 4 frames per agent step
    time_limit: int = 27_000  # agent steps (108,000 frames)
    env_kwargs: dict[str, Any] = field(default_factory=_atari100k_train)
    eval_env_kwargs: dict[str, Any] = field(default_factory=_atari100k_eval)
    total_steps: int = 100_000
    exp_name: str = "iris"

    # -- tokenizer ----------------------------------------------------------------------------
    vocab_size: int = 512
    embed_dim: int = 512
    tokens_per_frame: int = 16
    encoder_channels: int = 64
    residual_blocks: int = 2
    perceptual_weights: str | None = None
    perceptual_weight: float = 1.0
    #: weight of a squared-error reconstruction term beside IRIS's L1 (IRIS: 0). L1 alone drives
    #: rare one-pixel objects to the background's colour (its optimum is the median); where the
    #: perceptual term is absent, a small preset can set this to keep them (README, IRIS)
    reconstruction_l2_weight: float = 0.0

    # -- world model --------------------------------------------------------------------------
    transformer_embed_dim: int = 256
    transformer_layers: int = 10
    transformer_heads: int = 4
    transformer_dropout: float = 0.1
    seq_len: int = 20
    world_model_weight_decay: float = 0.01

    # -- actor-critic -------------------------------------------------------------------------
    lstm_size: int = 512
    #: conv 3x3 + max-pool stages of the actor-critic (IRIS's 32/32/64/64); frames must be a
    #: multiple of 2 ** len(...) (a smaller preset on small frames takes fewer)
    actor_critic_channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64])
    burn_in: int = 20
    imagine_horizon: int = 20
    gamma: float = 0.995
    lambda_: float = 0.95
    entropy_weight: float = 0.001

    # -- learning -----------------------------------------------------------------------------
    tokenizer_batch_size: int = 256
    world_model_batch_size: int = 64
    actor_critic_batch_size: int = 64
    learning_rate: float = 1e-4
    grad_clip: float = 10.0
    steps_per_epoch: int = 200
    updates_per_epoch: int = 200
    tokenizer_start_epochs: int = 5
    world_model_start_epochs: int = 25
    actor_critic_start_epochs: int = 50
    max_nonfinite_updates: int = 10
    #: ``bf16``: every update and the rollouts under bf16 autocast (a CUDA device or a CPU with
    #: native bf16; the VQ's nearest-code search and the losses stay float32)
    autocast: str = "off"
    #: the tokenizer and the actor-critic's convolutions in channels-last memory format
    channels_last: bool = False

    # -- acting -------------------------------------------------------------------------------
    epsilon: float = 0.01
    temperature: float = 1.0
    eval_temperature: float = 0.5

    # -- single-process trainer (IRISTrainer) --------------------------------------------------
    buffer_size: int = 100_000
    num_epochs: int = 600

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vocab_size", "embed_dim", "tokens_per_frame", "encoder_channels", "transformer_embed_dim",
                     "transformer_layers", "transformer_heads", "seq_len", "lstm_size", "imagine_horizon",
                     "residual_blocks", "tokenizer_batch_size", "world_model_batch_size", "actor_critic_batch_size",
                     "steps_per_epoch", "updates_per_epoch", "max_nonfinite_updates", "buffer_size",
                     "num_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"IRISConfig.{name} must be a positive integer, got {value!r}")
        if self.imagine_horizon < 2:
            raise ValueError(f"IRISConfig.imagine_horizon must be >= 2 (the last step bootstraps), "
                             f"got {self.imagine_horizon!r}")
        if isinstance(self.burn_in, bool) or not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise ValueError(f"IRISConfig.burn_in must be an integer >= 0, got {self.burn_in!r}")
        if self.transformer_embed_dim % self.transformer_heads:
            raise ValueError(f"IRISConfig.transformer_embed_dim ({self.transformer_embed_dim}) must be "
                             f"divisible by transformer_heads ({self.transformer_heads})")
        channels = self.actor_critic_channels
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"IRISConfig.actor_critic_channels must be a non-empty list of positive integers, "
                             f"got {channels!r}")
        if self.image_size % 2 ** len(channels):
            raise ValueError(f"IRISConfig.image_size ({self.image_size}) must be a multiple of "
                             f"{2 ** len(channels)} for {len(channels)} actor_critic_channels stages (max-pools)")
        side = math.isqrt(self.tokens_per_frame)
        if side * side != self.tokens_per_frame:
            raise ValueError(f"IRISConfig.tokens_per_frame must be a square (16 = 4x4), got {self.tokens_per_frame}")
        starts = (self.tokenizer_start_epochs, self.world_model_start_epochs, self.actor_critic_start_epochs)
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in starts) or \
                not starts[0] <= starts[1] <= starts[2]:
            raise ValueError("IRISConfig: tokenizer_start_epochs <= world_model_start_epochs <= "
                             f"actor_critic_start_epochs, all integers >= 0; got {starts}")
        for name, low, high in (("gamma", 0.0, 1.0), ("lambda_", 0.0, 1.0), ("epsilon", 0.0, 1.0),
                                ("transformer_dropout", 0.0, 1.0)):
            value = float(getattr(self, name))
            if not low <= value <= high:
                raise ValueError(f"IRISConfig.{name} must lie in [{low}, {high}], got {value!r}")
        if self.autocast not in ("off", "bf16"):
            raise ValueError(f"IRISConfig.autocast {self.autocast!r} is not one of ('off', 'bf16')")
        if not isinstance(self.channels_last, bool):
            raise ValueError(f"IRISConfig.channels_last must be True or False, got {self.channels_last!r}")
        for name in ("learning_rate", "grad_clip", "temperature", "eval_temperature"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"IRISConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not float(self.reconstruction_l2_weight) >= 0:
            raise ValueError(f"IRISConfig.reconstruction_l2_weight must be >= 0, got {self.reconstruction_l2_weight!r}")

    # -- derived ------------------------------------------------------------------------------
    @property
    def updates_per_env_step(self) -> float:
        return self.updates_per_epoch / self.steps_per_epoch

    @property
    def prefill_steps(self) -> int:
        """Env steps collected before the first update (the tokenizer's start)."""
        return self.tokenizer_start_epochs * self.steps_per_epoch

    def start_update(self, component: str) -> int:
        """The agent update at which ``tokenizer`` / ``world_model`` / ``actor_critic`` starts."""
        epochs = getattr(self, f"{component}_start_epochs") - self.tokenizer_start_epochs
        return epochs * self.updates_per_epoch

    # -- the seed's accessors -----------------------------------------------------------------
    def get_frame_shape(self) -> tuple[int, int, int]:
        return (3, int(self.image_size), int(self.image_size))

    def get_autoencoder_config(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "tokens_per_frame": self.tokens_per_frame,
                "embedding_dim": self.embed_dim, "base_channels": self.encoder_channels,
                "frame_shape": self.get_frame_shape(), "num_residual_blocks": self.residual_blocks}

    def get_transformer_config(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "tokens_per_frame": self.tokens_per_frame,
                "embed_dim": self.transformer_embed_dim, "num_layers": self.transformer_layers,
                "num_heads": self.transformer_heads, "dropout": self.transformer_dropout,
                "max_blocks": self.seq_len}

    def get_rl_config(self) -> dict[str, Any]:
        return {"lstm_size": self.lstm_size, "burn_in": self.burn_in, "imagine_horizon": self.imagine_horizon,
                "gamma": self.gamma, "lambda_": self.lambda_, "entropy_weight": self.entropy_weight,
                "epsilon": self.epsilon, "temperature": self.temperature,
                "eval_temperature": self.eval_temperature}
