"""IRISCore: IRIS as a :class:`distwm.agent.Agent`, what the Ray runtime and
:class:`~distwm.training.train_iris.IRISTrainer` both drive.

Its :meth:`~IRISCore.data_spec` names three samples, as IRIS trains its three parts on three
batch shapes: ``tokenizer`` (single frames), ``world_model`` (``seq_len + 1`` steps: ``seq_len``
IRIS steps, each a frame, its action and what followed) and ``actor_critic`` (``burn_in + 1``
frames: the burn-in and the start of imagination). Every update carries all three; the
schedule (IRIS's start after 5 / 25 / 50 epochs) is the agent's update counter
(:meth:`~distwm.configs.iris_config.IRISConfig.start_update`): a part trains from its start
on, and the batches of parts not started yet are not used.

Acting (CPU, in env workers): reconstruct each frame with the tokenizer, step the LSTM
(reset where ``is_first``), sample at ``temperature`` with ``epsilon`` random actions when
exploring, at ``eval_temperature`` otherwise (IRIS's test collector samples at 0.5).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from distwm.agent import DataSpec, SampleSpec
from distwm.models.iris.agent import IRISAgent
from distwm.models.step_batches import actor_critic_batch, frame_steps
from distwm.models.scheduled_parts import ScheduledPartsCore
from distwm.utils.checkpoint import checkpoint_format

__all__ = ["IRISCore", "COMPONENTS"]

#: the three parts, in IRIS's start order, with their sample names
COMPONENTS = ("tokenizer", "world_model", "actor_critic")


class IRISCore(ScheduledPartsCore):
    """IRIS agent (module docstring): an :class:`IRISAgent` and the update counter."""

    FAMILY = "IRIS"
    COMPONENTS = COMPONENTS
    ACTING = ("tokenizer", "actor_critic")  # what acting needs (the transformer stays on the learner)
    CHECKPOINT_FORMAT = checkpoint_format("iris", 1)
    ARCHITECTURE_FIELDS = ("vocab_size", "embed_dim", "tokens_per_frame", "encoder_channels", "residual_blocks",
                           "image_size", "transformer_embed_dim", "transformer_layers", "transformer_heads",
                           "seq_len", "lstm_size")

    def __init__(self, config, obs_shape, action_size: int, device: Any = "cpu"):
        if tuple(obs_shape) != config.get_frame_shape():
            raise ValueError(f"IRIS observes {config.get_frame_shape()} RGB frames (image_size "
                             f"{config.image_size}), got observations of shape {tuple(obs_shape)}")
        super().__init__(config, device)
        self.agent = IRISAgent(config, action_size, self.device)

    @classmethod
    def tiny_test_config(cls, config):
        """A config small enough for the protocol suite (every part trains from update 0)."""
        return config.replace(vocab_size=16, embed_dim=8, tokens_per_frame=4, encoder_channels=32, residual_blocks=1,
                              transformer_embed_dim=16, transformer_layers=1, transformer_heads=2,
                              seq_len=3, lstm_size=16, burn_in=2, imagine_horizon=3, tokenizer_batch_size=4,
                              world_model_batch_size=2, actor_critic_batch_size=2,
                              world_model_start_epochs=config.tokenizer_start_epochs,
                              actor_critic_start_epochs=config.tokenizer_start_epochs, max_nonfinite_updates=3)

    # -- data ---------------------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        cfg = self.config
        # world_model first: the runtime's report(batch) gets the first sample's batch
        samples = (SampleSpec("world_model", cfg.world_model_batch_size, cfg.seq_len + 1),
                   SampleSpec("tokenizer", cfg.tokenizer_batch_size, 1),
                   SampleSpec("actor_critic", cfg.actor_critic_batch_size, cfg.burn_in + 1))
        steps = sum(s.steps for s in samples)
        return DataSpec(train_ratio=steps * cfg.updates_per_env_step, samples=samples)

    # -- acting -------------------------------------------------------------------------------
    def acting_frames(self, images: np.ndarray) -> torch.Tensor:
        return self.agent.reconstruct(images)  # IRIS acts on the tokenizer's reconstructions

    def choose_actions(self, logits: torch.Tensor, explore: bool) -> torch.Tensor:
        cfg = self.config
        return (self.agent.choose(logits, cfg.epsilon, cfg.temperature) if explore
                else self.agent.choose(logits, 0.0, cfg.eval_temperature))

    # -- learning -----------------------------------------------------------------------------
    def train_parts(self, batches: Mapping[str, Mapping[str, Any]], metrics: dict[str, float]) -> None:
        if self.started("tokenizer"):
            frames = np.asarray(batches["tokenizer"]["image"])
            metrics.update(self.agent.update_autoencoder(frames.reshape(-1, *frames.shape[2:])))
        if self.started("world_model"):
            steps = frame_steps(batches["world_model"], self.device)
            metrics.update(self.agent.update_transformer(steps["frames"], steps["actions"], steps["rewards"],
                                                         steps["ends"], steps["valid"]))
        if self.started("actor_critic"):
            start = actor_critic_batch(batches["actor_critic"], self.device)
            rollout = self.agent.imagine_rollout(start["start"], self.config.imagine_horizon,
                                                 burn_in_frames=start["burn_in"],
                                                 burn_in_first=start["burn_in_first"],
                                                 start_first=start["start_first"])
            metrics.update(self.agent.update_actor_critic(rollout))

    def report(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Real frames beside their reconstructions and an imagined rollout (:mod:`.report`)."""
        from distwm.models.iris.report import iris_report

        return iris_report(self, batch)
