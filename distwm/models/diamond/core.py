"""DiamondCore: DIAMOND as a :class:`distwm.agent.Agent`, what the Ray runtime and the seed's
``DiamondAgent`` trainer both drive.

Its :meth:`~DiamondCore.data_spec` names three samples, as DIAMOND trains its three parts on
three segment shapes: ``diffusion`` (``num_conditioning_frames + 1`` = 5 frames: 4 to
condition on, 1 to denoise), ``reward`` (``num_conditioning_frames + imagination_horizon`` =
19 steps: 18 transitions for the reward/end LSTM) and ``actor`` (4 frames: the start of an
imagined rollout). Every update carries all three; the replay ratio is DIAMOND's 400 updates
per 100-step epoch, and the schedule (the actor-critic joins after 5,000 of the first epoch's
10,000 updates) is the update counter (:meth:`~distwm.configs.diamond_config.DiamondConfig.start_update`).

Acting (CPU, in env workers): the actor-critic on the real frame (reset where ``is_first``),
sampling its policy, with ``epsilon_greedy`` random actions when exploring and
``eval_epsilon`` when evaluating (the reference's collectors: 0.01 and 0).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from distwm.agent import DataSpec, SampleSpec
from distwm.blocks.layers import epsilon_greedy, sample_categorical
from distwm.models.diamond.batches import actor_critic_start, denoiser_windows, reward_end_steps
from distwm.models.diamond.model import DiamondModel, as_model_frames
from distwm.models.scheduled_parts import ScheduledPartsCore
from distwm.utils.checkpoint import checkpoint_format

__all__ = ["DiamondCore", "COMPONENTS"]

#: the three parts, with their sample names (DiamondConfig's component names)
COMPONENTS = ("diffusion", "reward", "actor")


class DiamondCore(ScheduledPartsCore):
    """DIAMOND agent (module docstring): a :class:`DiamondModel` and the update counter."""

    FAMILY = "DIAMOND"
    COMPONENTS = COMPONENTS
    ACTING = ("actor_critic",)  # env workers act with the actor-critic on real frames
    CHECKPOINT_FORMAT = checkpoint_format("diamond", 1)
    ARCHITECTURE_FIELDS = ("obs_size", "num_conditioning_frames", "diffusion_channels", "diffusion_res_blocks",
                           "diffusion_cond_dim", "reward_channels", "reward_res_blocks", "reward_cond_dim",
                           "reward_lstm_dim", "actor_channels", "actor_lstm_dim")

    def __init__(self, config, obs_shape, action_size: int, device: Any = "cpu"):
        expected = config.get_frame_shape()
        if tuple(obs_shape) != tuple(expected):
            raise ValueError(f"DIAMOND observes {tuple(expected)} RGB frames (obs_size {config.obs_size}), got "
                             f"observations of shape {tuple(obs_shape)}")
        super().__init__(config, device)
        self.agent = DiamondModel(config, action_size, self.device)

    @classmethod
    def tiny_test_config(cls, config):
        """A config small enough for the protocol suite (every part trains from update 0)."""
        return config.replace(diffusion_channels=[32, 32], diffusion_res_blocks=1, diffusion_cond_dim=32,
                              reward_channels=[32, 32], reward_res_blocks=1, reward_cond_dim=16, reward_lstm_dim=16,
                              actor_channels=[8, 8], actor_lstm_dim=16, num_conditioning_frames=2,
                              imagination_horizon=2, batch_size=2, actor_steps_first_epoch=10_000,
                              max_nonfinite_updates=3)

    # -- data ---------------------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        cfg = self.config
        # reward first: the runtime's report(batch) gets the first sample's batch (the longest)
        samples = (SampleSpec("reward", cfg.batch_size, cfg.reward_sequence_length),
                   SampleSpec("diffusion", cfg.batch_size, cfg.diffusion_sequence_length),
                   SampleSpec("actor", cfg.batch_size, cfg.num_conditioning_frames))
        steps = sum(s.steps for s in samples)
        return DataSpec(train_ratio=steps * cfg.updates_per_env_step, samples=samples)

    # -- acting -------------------------------------------------------------------------------
    def acting_frames(self, images: np.ndarray) -> torch.Tensor:
        return as_model_frames(images, self.device)  # DIAMOND acts on the real frames

    def choose_actions(self, logits: torch.Tensor, explore: bool) -> torch.Tensor:
        epsilon = self.config.epsilon_greedy if explore else self.config.eval_epsilon
        return epsilon_greedy(sample_categorical(logits), logits.shape[-1], epsilon)

    # -- learning -----------------------------------------------------------------------------
    def train_parts(self, batches: Mapping[str, Mapping[str, Any]], metrics: dict[str, float]) -> None:
        if self.started("diffusion"):
            window = denoiser_windows(batches["diffusion"], self.device)
            metrics.update(self.agent.update_denoiser(window["frames"], window["actions"]))
        if self.started("reward"):
            steps = reward_end_steps(batches["reward"], self.device)
            metrics.update(self.agent.update_reward_end(steps["frames"], steps["actions"], steps["next_frames"],
                                                        steps["rewards"], steps["ends"], steps["valid"]))
        if self.started("actor"):
            start = actor_critic_start(batches["actor"], self.device)
            rollout = self.agent.imagine(start["frames"], start["actions"], first=start["first"])
            metrics.update(self.agent.update_actor_critic(rollout))

    def report(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Real frames beside the world model's open-loop prediction from the real actions, and
        an imagined rollout under the policy (:mod:`.report`)."""
        from distwm.models.diamond.report import diamond_report

        return diamond_report(self, batch)
