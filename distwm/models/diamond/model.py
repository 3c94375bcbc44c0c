"""DiamondModel: DIAMOND's three networks with their optimisers and one training step each, as
the reference code (eloialonso/diamond) trains them. Frames are ``[-1, 1]`` floats inside;
every entry point takes uint8 or ``[-1, 1]``-scaled floats.

* :meth:`DiamondModel.update_denoiser`: EDM loss of the next frame given the last
  ``num_conditioning_frames`` frames and actions (frames before an episode start are zero
  padding, as the reference's segments pad).
* :meth:`DiamondModel.update_reward_end`: cross-entropies of the reward sign and the end over
  sequences of transitions ``(frame, action, next frame)``, padding masked.
* :meth:`DiamondModel.imagine` + :meth:`DiamondModel.update_actor_critic`: the reference's
  ``WorldModelEnv``: from 4 real frames and their actions, the reward/end LSTM burns in on
  their 3 transitions and the actor-critic on the first 3 frames; then ``imagination_horizon``
  steps: the policy acts on the last frame, the denoiser samples the next frame (3 Euler steps
  from sigma 5), the reward/end model samples the reward sign and the end. The lambda-returns
  (gamma 0.985, lambda 0.95) bootstrap from the last frame's value at the horizon (truncation)
  and stop at an imagined end; REINFORCE + value MSE + entropy 0.001.

Where the reference resets an imagined episode that ended before the horizon from a new real
start and goes on, the steps after an end are left out of the loss here (a test checks the
mask); the policy keeps its graph through the rollout, as the reference's env loop does.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from distwm.blocks.layers import sample_categorical
from distwm.models.diamond.actor_critic import ActorCriticNetwork, RLLoss
from distwm.models.diamond.denoiser import DiamondDenoiser
from distwm.models.diamond.reward_termination import RewardTerminationLoss, RewardTerminationModel
from distwm.models.diamond.unet import DiffusionUNet
from distwm.utils import precision

__all__ = ["DiamondModel", "as_model_frames", "PARTS"]

#: the networks, with their optimiser's config prefix
PARTS = {"denoiser": "diffusion", "reward_end": "reward", "actor_critic": "actor"}


def as_model_frames(frames: Any, device) -> Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]`` on ``device`` (floats are taken as ``[-1, 1]``)."""
    frames = torch.as_tensor(frames, device=device)
    return frames.float() / 127.5 - 1.0 if frames.dtype == torch.uint8 else frames.float()


def _warmup(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The reference's linear learning-rate warm-up over ``steps`` updates."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / max(1, steps)))


class DiamondModel(nn.Module):
    """``DiamondModel(config, action_size, device)`` with a
    :class:`~distwm.configs.diamond_config.DiamondConfig` (module docstring). Every
    ``update_*`` returns its losses as floats with ``grad_norm`` and ``skipped`` (1.0 when a
    non-finite loss or gradient skipped the optimiser step)."""

    def __init__(self, config, action_size: int, device: Any = "cpu"):
        super().__init__()
        if isinstance(action_size, bool) or int(action_size) < 1:
            raise ValueError(f"DiamondModel: action_size must be a positive int (discrete actions), got {action_size!r}")
        self.config, self.action_size, self.device = config, int(action_size), torch.device(device)
        cfg, n = config, self.action_size
        channels = list(cfg.diffusion_channels)
        unet = DiffusionUNet(3, cfg.num_conditioning_frames, channels[0], tuple(c // channels[0] for c in channels),
                             cfg.diffusion_res_blocks, cfg.diffusion_cond_dim, n, sigma_data=cfg.sigma_data)
        self.denoiser = DiamondDenoiser(unet, p_mean=cfg.p_mean, p_std=cfg.p_std, train_sigma_min=cfg.train_sigma_min,
                                        train_sigma_max=cfg.train_sigma_max, sigma_offset_noise=cfg.sigma_offset_noise,
                                        sampling_sigma_min=cfg.sigma_min, sampling_sigma_max=cfg.sigma_max,
                                        rho=cfg.rho, num_sampling_steps=cfg.num_sampling_steps)
        self.reward_end = RewardTerminationModel(3, n, tuple(cfg.reward_channels), cfg.reward_lstm_dim,
                                                 cfg.reward_cond_dim, image_size=cfg.obs_size,
                                                 blocks_per_stage=cfg.reward_res_blocks)
        self.actor_critic = ActorCriticNetwork(3, n, tuple(cfg.actor_channels), cfg.actor_lstm_dim, cfg.obs_size)
        self.reward_end_loss = RewardTerminationLoss()
        self.rl_loss = RLLoss(cfg.discount_factor, cfg.lambda_returns, cfg.entropy_weight, cfg.weight_value_loss)
        self.to(self.device)
        self.optimizers, self.schedulers = {}, {}
        for part, prefix in PARTS.items():
            optimizer = torch.optim.AdamW(getattr(self, part).parameters(), lr=cfg.learning_rate,
                                          eps=cfg.adam_epsilon, weight_decay=getattr(cfg, f"weight_decay_{prefix}"))
            self.optimizers[part], self.schedulers[part] = optimizer, _warmup(optimizer, cfg.lr_warmup_steps)

    def precision(self):
        """The autocast context of ``config.autocast`` (a no-op for ``"off"``)."""
        return precision.autocast(self.config.autocast, self.device.type, "DiamondConfig.autocast")

    def _step(self, part: str, loss: Tensor) -> tuple[float, bool]:
        """Backward, clip to the part's ``max_grad_norm``, step; no step when not finite."""
        optimizer = self.optimizers[part]
        optimizer.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(loss)):
            return float("nan"), False
        loss.backward()
        limit = getattr(self.config, f"{PARTS[part]}_max_grad_norm")
        norm = float(nn.utils.clip_grad_norm_(getattr(self, part).parameters(), limit))
        if norm != norm or norm == float("inf"):
            optimizer.zero_grad(set_to_none=True)
            return norm, False
        optimizer.step()
        self.schedulers[part].step()
        return norm, True

    @staticmethod
    def _metrics(prefix: str, losses: Mapping[str, Tensor], norm: float, ok: bool) -> dict[str, float]:
        out = {f"{prefix}/{k}": float(v.detach()) for k, v in losses.items()}
        out.update({f"{prefix}/grad_norm": norm, f"{prefix}/skipped": 0.0 if ok else 1.0})
        return out

    # -- denoiser -----------------------------------------------------------------------------
    def update_denoiser(self, frames: Tensor, actions: Tensor) -> dict[str, float]:
        """One denoiser step: frames ``(B, L + 1, C, H, W)`` (``L`` conditioning frames, then
        the target) and the actions taken in the first ``L`` ``(B, L)`` (indices)."""
        frames = as_model_frames(frames, self.device)
        actions = torch.as_tensor(actions, device=self.device).long()
        self.denoiser.train()
        with self.precision():
            loss = self.denoiser.loss(frames[:, -1], frames[:, :-1], actions).float()
        norm, ok = self._step("denoiser", loss)
        self.denoiser.eval()
        return self._metrics("diffusion", {"loss": loss}, norm, ok)

    # -- reward / end -------------------------------------------------------------------------
    def update_reward_end(self, frames: Tensor, actions: Tensor, next_frames: Tensor, rewards: Tensor,
                          ends: Tensor, valid: Tensor | None = None) -> dict[str, float]:
        """One reward/end step on transitions ``(B, T)``: frames and next frames
        ``(B, T, C, H, W)``, actions (indices), the rewards and ends that followed; ``valid``
        masks padding."""
        args = [as_model_frames(frames, self.device), torch.as_tensor(actions, device=self.device).long(),
                as_model_frames(next_frames, self.device)]
        self.reward_end.train()
        with self.precision():
            reward_logits, end_logits, _ = self.reward_end(args[0], args[1], None, args[2])
        reward_logits, end_logits = reward_logits.float(), end_logits.float()
        total, reward_loss, end_loss = self.reward_end_loss(
            reward_logits, end_logits, torch.as_tensor(rewards, device=self.device).float(),
            torch.as_tensor(ends, device=self.device), None if valid is None else torch.as_tensor(valid, device=self.device))
        norm, ok = self._step("reward_end", total)
        self.reward_end.eval()
        return self._metrics("reward", {"loss": total, "loss_rewards": reward_loss, "loss_ends": end_loss}, norm, ok)

    # -- imagination and the actor-critic -----------------------------------------------------
    def imagine(self, frames: Tensor, actions: Tensor, horizon: int | None = None, *,
                first: Tensor | None = None) -> dict[str, Tensor]:
        """A rollout from real frames ``(B, L, C, H, W)`` and the actions taken in the first
        ``L - 1`` (``actions`` ``(B, L - 1)`` or ``(B, L)``; the last is the policy's). ``first``
        ``(B, L)`` marks episode starts: the actor-critic's burn-in resets there. Returns
        ``frames`` ``(B, H + 1, ...)`` (the start, then imagined), ``actions``, ``rewards``,
        ``ends`` ``(B, H)``, ``logits`` ``(B, H, A)`` and ``values`` ``(B, H + 1)`` (with the
        policy's graph; the last bootstraps), ``mask`` ``(B, H)`` (steps before an end)."""
        with self.precision():
            rollout = self._imagine(frames, actions, horizon, first)
        for key in ("frames", "logits", "values"):
            rollout[key] = rollout[key].float()
        return rollout

    def _imagine(self, frames: Tensor, actions: Tensor, horizon: int | None, first: Tensor | None):
        horizon = int(self.config.imagination_horizon if horizon is None else horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon!r}")
        obs = as_model_frames(frames, self.device)
        length = self.config.num_conditioning_frames
        if obs.dim() != 5 or obs.shape[1] != length:
            raise ValueError(f"imagine needs {length} real frames (B, {length}, C, H, W), got {tuple(obs.shape)}")
        act = torch.zeros(obs.shape[0], length, dtype=torch.long, device=self.device)
        given = torch.as_tensor(actions, device=self.device).long()[:, : length - 1]
        act[:, : given.shape[1]] = given
        with torch.no_grad():
            reward_state = self.reward_end.burn_in(obs[:, :-1], act[:, :-1], obs[:, 1:])
            ac_state = self.actor_critic.burn_in(obs[:, :-1], None if first is None else first[:, :-1])
            if first is not None:  # the start frame itself begins an episode: nothing to carry
                keep = (~torch.as_tensor(first[:, -1], device=self.device).bool()).float().unsqueeze(-1)
                ac_state = (ac_state[0] * keep, ac_state[1] * keep)
        out = {k: [] for k in ("frames", "actions", "rewards", "ends", "logits", "values")}
        out["frames"].append(obs[:, -1])
        for _ in range(horizon):
            logits, value, ac_state = self.actor_critic.step(obs[:, -1], ac_state)
            action = sample_categorical(logits.detach())
            with torch.no_grad():
                act = torch.cat([act[:, :-1], action.unsqueeze(1)], 1)
                next_frame = self.denoiser.sample(obs, act).to(obs.dtype)
                reward, end, reward_state = self.reward_end.predict(obs[:, -1], action, reward_state, next_frame)
            obs = torch.cat([obs[:, 1:], next_frame.unsqueeze(1)], 1)
            act = torch.cat([act[:, 1:], torch.zeros_like(act[:, :1])], 1)
            for key, value_ in (("frames", next_frame), ("actions", action), ("rewards", reward), ("ends", end),
                                ("logits", logits), ("values", value)):
                out[key].append(value_)
        with torch.no_grad():
            out["values"].append(self.actor_critic.step(obs[:, -1], ac_state)[1])
        rollout = {key: torch.stack(values, 1) for key, values in out.items()}
        ended = rollout["ends"].long()
        rollout["mask"] = (torch.cumsum(ended, 1) - ended) == 0  # no end before the step
        return rollout

    def update_actor_critic(self, rollout: Mapping[str, Tensor]) -> dict[str, float]:
        """One actor-critic step on a rollout of :meth:`imagine` (with its graph)."""
        ends = rollout["ends"].long()
        truncated = torch.zeros_like(ends)
        truncated[:, -1] = 1 - ends[:, -1]  # the horizon cuts every episode still running
        losses = self.rl_loss(rollout["logits"], rollout["actions"], rollout["rewards"], rollout["values"], ends,
                              truncated, mask=rollout["mask"])
        returns, entropy = losses.pop("lambda_returns"), losses.pop("entropy")
        norm, ok = self._step("actor_critic", losses["loss"])
        metrics = self._metrics("actor", losses, norm, ok)
        metrics.update({"actor/entropy": float(entropy), "actor/imagined_return": float(returns[:, 0].mean()),
                        "actor/imagined_reward": float(rollout["rewards"][rollout["mask"]].mean()),
                        "actor/imagined_end": float(rollout["ends"].float().mean())})
        return metrics

    # -- files ---------------------------------------------------------------------------------
    def optimizer_states(self) -> dict[str, Any]:
        return {part: {"optimizer": self.optimizers[part].state_dict(), "scheduler": self.schedulers[part].state_dict()}
                for part in PARTS}

    def load_optimizer_states(self, states: Mapping[str, Any]) -> None:
        for part in PARTS:
            self.optimizers[part].load_state_dict(states[part]["optimizer"])
            self.schedulers[part].load_state_dict(states[part]["scheduler"])
