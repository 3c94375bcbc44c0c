"""DIAMOND's actor-critic and its RL loss (Alonso et al. 2024), after the reference code
(eloialonso/diamond ``src/models/actor_critic.py``, ``src/coroutines/env_loop.py``).

* :class:`ActorCriticNetwork`: frames in ``[-1, 1]`` -> a 3x3 conv, then per stage a small
  residual block (``GroupNorm -> SiLU -> conv3x3`` plus a skip) and a 2x2 max-pool
  (channels ``(32, 32, 64, 64)``, every stage down) -> ``LSTMCell(512)`` on the flattened
  features -> linear policy logits and value. Both heads start at zero (a uniform policy and a
  zero value) and the LSTM uses the reference's ``init_lstm``. The recurrence (``step``,
  ``burn_in``, ``unroll``) is IRIS's :class:`~distwm.controller.iris_policy.IRISActorCritic`,
  whose network has the same topology; only the encoder and the initialisation differ.
* :class:`RLLoss`: REINFORCE with the lambda-return advantage (the value detached as
  baseline), a value regression onto the lambda-returns and an entropy bonus
  (``gamma = 0.985``, ``lambda = 0.95``, entropy weight ``0.001``, value weight 1). The
  lambda-returns clip the rewards to their sign and bootstrap through truncation: a step that
  ends the episode returns its reward alone, a truncated step ``r + gamma * V(final obs)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from distwm.blocks.returns import compute_lambda_return
from distwm.controller.iris_policy import IRISActorCritic
from distwm.models.diamond.reward_termination import (
    check_positive_int,
    check_positive_ints,
    init_lstm,
)
from distwm.models.diamond.unet import GROUP_NORM_EPS, reference_num_groups

__all__ = ["ActorCriticEncoder", "ActorCriticNetwork", "RLLoss", "SmallResBlock"]

State = tuple[Tensor, Tensor]


class SmallResBlock(nn.Module):
    """``skip(x) + conv3x3(silu(group_norm(x)))`` (the reference's ``SmallResBlock``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.residual = nn.Sequential(nn.GroupNorm(reference_num_groups(in_channels), in_channels, eps=GROUP_NORM_EPS),
                                      nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.residual(x)


class ActorCriticEncoder(nn.Module):
    """The reference's ``ActorCriticEncoder`` with every stage down: frames ``(..., C, H, W)``
    in ``[-1, 1]`` -> flattened features ``(..., output_size)``."""

    def __init__(self, obs_channels: int, channels: tuple[int, ...], image_size: int):
        super().__init__()
        scale = 2 ** len(channels)
        if image_size % scale:
            raise ValueError(f"image_size must be a multiple of {scale} ({len(channels)} max-pools of 2), "
                             f"got {image_size!r}")
        self.frame_shape = (obs_channels, image_size, image_size)
        layers: list[nn.Module] = [nn.Conv2d(obs_channels, channels[0], 3, padding=1)]
        for stage, width in enumerate(channels):
            layers += [SmallResBlock(channels[max(0, stage - 1)], width), nn.MaxPool2d(2)]
        self.layers = nn.Sequential(*layers, nn.Flatten())
        self.output_size = channels[-1] * (image_size // scale) ** 2

    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() < 4 or tuple(frames.shape[-3:]) != self.frame_shape:
            raise ValueError(f"frames must be (..., {', '.join(map(str, self.frame_shape))}), got {tuple(frames.shape)}")
        return self.layers(frames.flatten(0, -4)).reshape(*frames.shape[:-3], self.output_size)


class ActorCriticNetwork(IRISActorCritic):
    """DIAMOND's actor-critic (module docstring); ``image_size`` is the frames' side (64 on Atari).

    The state is ``(h, c)``, each ``(B, lstm_dim)``. Inherited from IRIS's network:
    ``step(frames (B, C, H, W), state) -> (logits (B, A), values (B,), state)`` (the
    reference's ``predict_act_value``), ``burn_in(frames (B, T, C, H, W), is_first=None,
    state=None) -> state`` (no gradient; ``is_first`` zeroes the state where an episode
    starts) and ``unroll(frames, state) -> (logits (B, T, A), values (B, T), state)``.
    """

    def __init__(self, obs_channels: int = 3, action_dim: int = 18, channels: tuple[int, ...] = (32, 32, 64, 64),
                 lstm_dim: int = 512, image_size: int = 64):
        channels = check_positive_ints("channels", channels)
        for name, value in (("obs_channels", obs_channels), ("action_dim", action_dim), ("lstm_dim", lstm_dim),
                            ("image_size", image_size)):
            check_positive_int(name, value)
        encoder = ActorCriticEncoder(obs_channels, channels, image_size)  # validates image_size first
        super().__init__(action_dim, encoder.frame_shape, lstm_dim, channels)
        self.features = encoder  # same output size as IRIS's trunk: the LSTM and heads fit
        for head in (self.actor, self.critic):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        init_lstm(self.lstm)

    def init_hidden(self, batch_size: int, device=None) -> State:
        return self.initial_state(batch_size, device)

    def get_hidden_size(self) -> int:
        return self.lstm_size

    def _state(self, obs: Tensor, hidden_state: State | None) -> State:
        return self.initial_state(obs.shape[0], obs.device) if hidden_state is None else hidden_state

    def forward(self, obs: Tensor, hidden_state: State | None = None) -> tuple[Tensor, Tensor, State]:
        """Over frames ``(B, T, C, H, W)``: policy logits ``(B, T, A)``, values ``(B, T, 1)``
        and the last state (zeros where ``hidden_state`` is ``None``)."""
        if obs.dim() != 5:
            raise ValueError(f"obs must be (B, T, C, H, W), got {tuple(obs.shape)}")
        logits, values, state = self.unroll(obs, self._state(obs, hidden_state))
        return logits, values.unsqueeze(-1), state

    @torch.no_grad()
    def get_action(self, obs: Tensor, hidden_state: State | None = None,
                   deterministic: bool = False) -> tuple[Tensor, State]:
        """Frames ``(B, C, H, W)`` -> actions ``(B,)`` (sampled, or the argmax) and the state."""
        logits, _, state = self.step(obs, self._state(obs, hidden_state))
        actions = logits.argmax(-1) if deterministic else Categorical(logits=logits).sample()
        return actions, state

    get_actions = get_action  # the seed's batched name: the same call

    @torch.no_grad()
    def get_value(self, obs: Tensor, hidden_state: State | None = None) -> tuple[Tensor, State]:
        """Frames ``(B, C, H, W)`` -> values ``(B, 1)`` and the state."""
        _, values, state = self.step(obs, self._state(obs, hidden_state))
        return values.unsqueeze(-1), state


def _as_steps(values: Tensor, horizon: int, who: str) -> Tensor:
    """Values ``(B, T)``, ``(B, T + 1)`` or either with a trailing 1 -> ``(B, T)`` or ``(B, T + 1)``."""
    if values.dim() == 3 and values.shape[-1] == 1:
        values = values.squeeze(-1)
    if values.dim() != 2 or values.shape[1] not in (horizon, horizon + 1):
        raise ValueError(f"{who}: values must be (B, T) or (B, T + 1) with T = {horizon}, got {tuple(values.shape)}")
    return values


class RLLoss(nn.Module):
    """DIAMOND's actor-critic loss (module docstring); ``value_weight`` (1) and
    ``clip_rewards`` (True: rewards -> their sign) are the reference's
    ``weight_value_loss`` and its clipping in ``compute_lambda_returns``."""

    def __init__(self, discount_factor: float = 0.985, lambda_returns: float = 0.95, entropy_weight: float = 0.001,
                 value_weight: float = 1.0, clip_rewards: bool = True):
        super().__init__()
        checks = (("discount_factor", discount_factor, "in (0, 1]", lambda v: 0.0 < v <= 1.0),
                  ("lambda_returns", lambda_returns, "in [0, 1]", lambda v: 0.0 <= v <= 1.0),
                  ("entropy_weight", entropy_weight, ">= 0", lambda v: v >= 0.0),
                  ("value_weight", value_weight, ">= 0", lambda v: v >= 0.0))
        for name, value, valid, ok in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise ValueError(f"{name} must be a finite number {valid}, got {value!r}")
        self.discount_factor, self.lambda_coef = float(discount_factor), float(lambda_returns)
        self.entropy_weight, self.value_weight = float(entropy_weight), float(value_weight)
        self.clip_rewards = bool(clip_rewards)

    @torch.no_grad()
    def compute_lambda_returns(self, rewards: Tensor, values: Tensor, dones: Tensor,
                               truncated: Tensor | None = None) -> Tensor:
        """lambda-returns ``(B, T)`` (no gradient), the reference's recursion:
        ``R_t = r_t + gamma (1 - end_t) [(1 - lambda (1 - trunc_t)) V'_t + lambda (1 - trunc_t) R_{t+1}]``
        with ``R_T = V'_{T-1}``, where ``V'_t`` is the value after step ``t``.

        ``values``: ``(B, T + 1)`` the values of states ``0..T`` (the seed's layout,
        ``V'_t = values[:, t + 1]``), or ``(B, T)`` the reference's ``val_bootstrap``
        (``V'_t`` directly: the value of the final observation where step ``t`` ended the
        episode, which the first layout cannot hold when the sequence runs on past a reset).
        ``dones`` ``(B, T)``: the episode terminated after step ``t`` (no bootstrap);
        ``truncated`` ``(B, T)``: it was cut by a time limit (bootstrap from ``V'_t``; a step
        that is both counts as terminated).
        """
        if rewards.dim() != 2:
            raise ValueError(f"rewards must be (B, T), got {tuple(rewards.shape)}")
        horizon = rewards.shape[1]
        values = _as_steps(values, horizon, "compute_lambda_returns")
        for name, flags in (("dones", dones), ("truncated", truncated)):
            if flags is not None and tuple(flags.shape) != tuple(rewards.shape):
                raise ValueError(f"{name} must be (B, T) = {tuple(rewards.shape)}, got {tuple(flags.shape)}")
        rewards = rewards.float().sign() if self.clip_rewards else rewards.float()
        next_values = (values[:, 1:] if values.shape[1] == horizon + 1 else values).float()
        ended = dones.float()
        cut = torch.zeros_like(ended) if truncated is None else truncated.float() * (1.0 - ended)
        # a truncated step's return is r + gamma V'(final obs): folded into its reward, and the
        # discount is cut at both kinds of episode boundary (no lambda-mixing across them)
        gamma = self.discount_factor
        returns = compute_lambda_return(rewards + gamma * cut * next_values,
                                        torch.cat([next_values[:, :1], next_values], dim=1),
                                        gamma * (1.0 - ended) * (1.0 - cut), self.lambda_coef)
        return returns

    def _policy_terms(self, policy_logits: Tensor, actions: Tensor, lambda_returns: Tensor,
                      values: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(REINFORCE loss, mean entropy)`` with the advantage ``R_t - V_t`` (detached),
        means over the steps where ``mask`` ``(B, T)`` is true (all when ``None``)."""
        if policy_logits.dim() != 3 or tuple(policy_logits.shape[:2]) != tuple(lambda_returns.shape):
            raise ValueError(f"policy_logits must be (B, T, A) with (B, T) = {tuple(lambda_returns.shape)}, "
                             f"got {tuple(policy_logits.shape)}")
        if tuple(actions.shape) != tuple(lambda_returns.shape):
            raise ValueError(f"actions must be (B, T) = {tuple(lambda_returns.shape)}, got {tuple(actions.shape)}")
        baseline = _as_steps(values, lambda_returns.shape[1], "policy_loss")[:, : lambda_returns.shape[1]]
        policy = Categorical(logits=policy_logits)
        advantages = (lambda_returns - baseline).detach()
        return (_masked_mean(-(policy.log_prob(actions.long()) * advantages), mask),
                _masked_mean(policy.entropy(), mask))

    def policy_loss(self, policy_logits: Tensor, actions: Tensor, lambda_returns: Tensor, values: Tensor) -> Tensor:
        """REINFORCE with the lambda-return advantage minus ``entropy_weight`` times the entropy:
        ``policy_logits`` ``(B, T, A)``, ``actions`` and ``lambda_returns`` ``(B, T)``,
        ``values`` ``(B, T + 1)`` or ``(B, T)`` (the baseline is ``values[:, :T]``)."""
        actions_loss, entropy = self._policy_terms(policy_logits, actions, lambda_returns, values)
        return actions_loss - self.entropy_weight * entropy

    def value_loss(self, values: Tensor, lambda_returns: Tensor, mask: Tensor | None = None) -> Tensor:
        """``value_weight * MSE(values[:, :T], lambda_returns)`` (over the ``mask``ed steps)."""
        horizon = lambda_returns.shape[-1]
        errors = (_as_steps(values, horizon, "value_loss")[:, :horizon] - lambda_returns.detach()).pow(2)
        return self.value_weight * _masked_mean(errors, mask)

    def forward(self, policy_logits: Tensor, actions: Tensor, rewards: Tensor, values: Tensor, dones: Tensor,
                truncated: Tensor | None = None, bootstrap_values: Tensor | None = None,
                mask: Tensor | None = None) -> dict[str, Tensor]:
        """The whole loss of one imagined segment (the reference's ``ActorCritic.forward``).

        ``values``: the values the policy saw, with gradient, ``(B, T)`` or ``(B, T + 1)``;
        the lambda-returns bootstrap from ``bootstrap_values`` ``(B, T)`` (the reference's
        ``val_bootstrap``) where given, else from ``values[:, 1:]`` (which must then be
        ``(B, T + 1)``). ``mask`` ``(B, T)``: the steps that count (an imagined episode that ended
        leaves the rest of the segment out). Returns ``loss``, ``loss_actions``, ``loss_values``, ``loss_entropy``,
        ``entropy`` and the ``lambda_returns``.
        """
        horizon = rewards.shape[-1]
        values = _as_steps(values, horizon, "RLLoss")
        if bootstrap_values is None and values.shape[1] != horizon + 1:
            raise ValueError(f"values of shape {tuple(values.shape)} hold no bootstrap value: pass values "
                             f"(B, T + 1) or bootstrap_values (B, T) with T = {horizon}")
        targets = values if bootstrap_values is None else bootstrap_values
        lambda_returns = self.compute_lambda_returns(rewards, targets.detach(), dones, truncated)
        actions_loss, entropy = self._policy_terms(policy_logits, actions, lambda_returns, values, mask)
        losses = {"loss_actions": actions_loss, "loss_entropy": -self.entropy_weight * entropy,
                  "loss_values": self.value_loss(values, lambda_returns, mask)}
        losses["loss"] = losses["loss_actions"] + losses["loss_entropy"] + losses["loss_values"]
        return {**losses, "entropy": entropy.detach(), "lambda_returns": lambda_returns}


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return values.mean()
    if tuple(mask.shape) != tuple(values.shape):
        raise ValueError(f"mask must be (B, T) = {tuple(values.shape)}, got {tuple(mask.shape)}")
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)
