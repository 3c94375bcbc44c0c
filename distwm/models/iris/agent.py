"""IRISAgent: the tokenizer, the transformer world model and the actor-critic with their
optimisers and one training step each, as the IRIS reference code trains them.

* :meth:`IRISAgent.update_autoencoder`: frames -> L1 + commitment + codebook (+ perceptual).
* :meth:`IRISAgent.update_transformer`: tokens of 20-step sequences (tokenizer frozen) ->
  cross-entropies of the next token, the reward sign and the episode end.
* :meth:`IRISAgent.imagine_rollout` + :meth:`IRISAgent.update_actor_critic`: burn-in on the
  reconstructions of 20 real frames, a rollout in the world model from the last one with a
  key/value cache, then REINFORCE with lambda-return advantages, a value loss and an entropy
  bonus. IRIS's horizon of 20 is 20 policy steps: 19 imagined transitions, the 20th value
  bootstraps the lambda-returns (``compute_lambda_returns(...)[:, :-1]`` in the reference).

The rollout runs without gradient; :meth:`update_actor_critic` re-runs the actor-critic over
the imagined frames from the burn-in state with gradient. The LSTM sees the same inputs, so
the logits and values are those the rollout acted on and the gradient is the reference's
(which keeps the graph through the rollout).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from distwm.blocks.layers import epsilon_greedy
from distwm.blocks.returns import compute_lambda_return
from distwm.controller.iris_policy import IRISActorCritic
from distwm.models.iris.transformer import IRISTransformer
from distwm.models.iris.world_model import IRISWorldModel
from distwm.utils import precision
from distwm.vision.iris_decoder import DiscreteAutoencoder
from distwm.vision.perceptual import load_perceptual

__all__ = ["IRISAgent", "compute_lambda_return"]

log = logging.getLogger(__name__)


def _world_model_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the Linear weights only (IRIS's ``configure_optimizer``)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def _as_frames(frames: Tensor, device) -> Tensor:
    """uint8 ``[0, 255]`` or float ``[0, 1]`` frames -> float ``[0, 1]`` on ``device``."""
    frames = torch.as_tensor(frames, device=device)
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


class IRISAgent(nn.Module):
    """``IRISAgent(config, action_size, device)``: an :class:`~distwm.configs.iris_config.IRISConfig`
    and a discrete action count. Every ``update_*`` takes frames as uint8 or ``[0, 1]`` floats
    and returns its losses as floats, with ``grad_norm`` and ``skipped`` (1.0 when a
    non-finite loss or gradient skipped the optimiser step)."""

    def __init__(self, config, action_size: int, device: Any = "cpu"):
        super().__init__()
        if isinstance(action_size, bool) or int(action_size) < 1:
            raise ValueError(f"IRISAgent: action_size must be a positive int (discrete actions), got {action_size!r}")
        self.config, self.action_size = config, int(action_size)
        self.device = torch.device(device)
        frame_shape = config.get_frame_shape()
        self.tokenizer = DiscreteAutoencoder(**config.get_autoencoder_config(),
                                             perceptual=load_perceptual(config.perceptual_weights,
                                                                        config.perceptual_weight),
                                             l2_weight=config.reconstruction_l2_weight)
        self.transformer = IRISTransformer(action_size=self.action_size, **config.get_transformer_config())
        self.actor_critic = IRISActorCritic(self.action_size, frame_shape, config.lstm_size,
                                            tuple(config.actor_critic_channels))
        self.to(self.device)
        if config.channels_last:
            self.tokenizer.to(memory_format=torch.channels_last)
            self.actor_critic.to(memory_format=torch.channels_last)
        # the world model holds the tokenizer's and the transformer's modules: not registered
        # a second time (one copy of each weight in state_dict)
        object.__setattr__(self, "world_model",
                           IRISWorldModel(self.tokenizer.encoder, self.tokenizer.decoder, self.transformer))
        lr = config.learning_rate
        self.tokenizer_optimizer = torch.optim.Adam(self._trainable(self.tokenizer), lr=lr)
        self.world_model_optimizer = _world_model_optimizer(self.transformer, lr, config.world_model_weight_decay)
        self.actor_critic_optimizer = torch.optim.Adam(self.actor_critic.parameters(), lr=lr)
        self.hidden: tuple[Tensor, Tensor] | None = None

    def precision(self):
        """The autocast context of ``config.autocast`` (a no-op for ``"off"``)."""
        return precision.autocast(self.config.autocast, self.device.type, "IRISConfig.autocast")

    @staticmethod
    def _trainable(module: nn.Module) -> list[nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    def _step(self, optimizer: torch.optim.Optimizer, loss: Tensor, params) -> tuple[float, bool]:
        """Backward, clip to ``grad_clip``, step; no step when the loss or gradient is not finite."""
        optimizer.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(loss)):
            return float("nan"), False
        loss.backward()
        norm = float(nn.utils.clip_grad_norm_(params, self.config.grad_clip))
        if norm != norm or norm == float("inf"):
            optimizer.zero_grad(set_to_none=True)
            return norm, False
        optimizer.step()
        return norm, True

    @staticmethod
    def _metrics(prefix: str, losses: Mapping[str, Tensor], norm: float, ok: bool) -> dict[str, float]:
        out = {f"{prefix}/{k}": float(v.detach()) for k, v in losses.items()}
        out.update({f"{prefix}/grad_norm": norm, f"{prefix}/skipped": 0.0 if ok else 1.0})
        return out

    # -- tokenizer ----------------------------------------------------------------------------
    def reconstruct(self, frames: Tensor) -> Tensor:
        """Frames ``(..., C, H, W)`` -> their tokenizer reconstructions in ``[0, 1]`` (no grad)."""
        frames = _as_frames(frames, self.device)
        with torch.no_grad(), self.precision():
            flat = frames.flatten(0, -4)
            out = self.tokenizer.decode(self.tokenizer.encode(flat))
        return out.float().reshape(frames.shape)

    def update_autoencoder(self, frames: Tensor) -> dict[str, float]:
        """One tokenizer step on frames ``(B, C, H, W)``."""
        self.tokenizer.train()
        with self.precision():
            _, _, losses = self.tokenizer(_as_frames(frames, self.device))
        norm, ok = self._step(self.tokenizer_optimizer, losses["loss"], self._trainable(self.tokenizer))
        self.tokenizer.eval()
        return self._metrics("tokenizer", losses, norm, ok)

    # -- world model --------------------------------------------------------------------------
    def update_transformer(self, frames: Tensor, actions: Tensor, rewards: Tensor, terminals: Tensor,
                           valid: Tensor | None = None) -> dict[str, float]:
        """One world-model step on IRIS's step format: frames ``(B, T, C, H, W)``, the action
        taken in each (``(B, T)`` indices or ``(B, T, A)`` one-hot), the reward and the episode
        end that followed ``(B, T)``; ``valid`` ``(B, T)`` leaves padding out."""
        frames = _as_frames(frames, self.device)
        actions = torch.as_tensor(actions, device=self.device)
        if actions.dim() == 3:
            actions = actions.argmax(-1)
        self.tokenizer.eval()
        with self.precision():
            tokens = self.world_model.tokenize(frames)
            self.transformer.train()
            losses = self.transformer.loss(tokens, actions.long(),
                                           torch.as_tensor(rewards, device=self.device).float(),
                                           torch.as_tensor(terminals, device=self.device),
                                           None if valid is None else torch.as_tensor(valid, device=self.device))
        losses["loss"] = losses["loss_obs"] + losses["loss_rewards"] + losses["loss_ends"]
        norm, ok = self._step(self.world_model_optimizer, losses["loss"], self.transformer.parameters())
        self.transformer.eval()
        return self._metrics("world_model", losses, norm, ok)

    # -- actor-critic -------------------------------------------------------------------------
    def forward_actor_critic(self, frames: Tensor, hidden: tuple[Tensor, Tensor] | None = None):
        """``(action_logits (B, T, A), values (B, T), (h, c))`` of frames ``(B, T, C, H, W)``."""
        frames = _as_frames(frames, self.device)
        if hidden is None:
            hidden = self.actor_critic.initial_state(frames.shape[0], self.device)
        return self.actor_critic.unroll(frames, hidden)

    @torch.no_grad()
    def act(self, frame: Tensor, epsilon: float = 0.0, temperature: float = 1.0) -> Tensor:
        """Actions ``(B,)`` for frames ``(B, C, H, W)`` (their reconstructions, as IRIS acts),
        keeping the LSTM state between calls (:meth:`reset_hidden` starts new episodes)."""
        frames = self.reconstruct(frame)
        if self.hidden is None or self.hidden[0].shape[0] != frames.shape[0]:
            self.reset_hidden(frames.shape[0])
        with self.precision():
            logits, _, self.hidden = self.actor_critic.step(frames, self.hidden)
        return self.choose(logits, epsilon, temperature)

    def reset_hidden(self, batch_size: int) -> None:
        self.hidden = self.actor_critic.initial_state(int(batch_size), self.device)

    @staticmethod
    def choose(logits: Tensor, epsilon: float, temperature: float) -> Tensor:
        """Sample at ``temperature``; with probability ``epsilon`` a uniform action instead."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        return epsilon_greedy(torch.distributions.Categorical(logits=logits / temperature).sample(),
                              logits.shape[-1], epsilon)

    @torch.no_grad()
    def imagine_rollout(self, initial_frame: Tensor, horizon: int = 20, *, burn_in_frames: Tensor | None = None,
                        burn_in_first: Tensor | None = None, start_first: Tensor | None = None) -> dict[str, Tensor]:
        """``horizon`` policy steps in the world model from frames ``(B, C, H, W)``.

        ``burn_in_frames`` ``(B, T, C, H, W)`` (real frames before the start; their
        reconstructions warm the LSTM, reset where ``burn_in_first`` ``(B, T)`` marks an
        episode start; ``start_first`` ``(B,)``: the start frame begins an episode). Returns
        ``frames`` ``(B, horizon, C, H, W)`` (reconstruction of the start, then imagined),
        ``actions``, ``rewards``, ``ends`` ``(B, horizon - 1)``, the burn-in state ``hidden``,
        and the ``logits`` / ``values`` the rollout acted on ``(B, horizon, ...)``."""
        if int(horizon) < 2:
            raise ValueError(f"horizon must be >= 2 policy steps (the last bootstraps), got {horizon!r}")
        with self.precision():
            return self._imagine_rollout(_as_frames(initial_frame, self.device), int(horizon), burn_in_frames,
                                         burn_in_first, start_first)

    def _imagine_rollout(self, start: Tensor, horizon: int, burn_in_frames, burn_in_first, start_first):
        b = start.shape[0]
        state = self.actor_critic.initial_state(b, self.device)
        if burn_in_frames is not None and burn_in_frames.shape[1] > 0:
            first = None if burn_in_first is None else torch.as_tensor(burn_in_first, device=self.device)
            state = self.actor_critic.burn_in(self.reconstruct(burn_in_frames), first, state)
        if start_first is not None:
            keep = (~torch.as_tensor(start_first, device=self.device).bool()).float().unsqueeze(-1)
            state = (state[0] * keep, state[1] * keep)
        hidden = state
        logits, values = [], []

        def policy(frames: Tensor) -> Tensor:
            nonlocal state
            step_logits, step_values, state = self.actor_critic.step(frames, state)
            logits.append(step_logits)
            values.append(step_values)
            return step_logits

        self.transformer.eval()
        tokens = self.world_model.tokenize(start.unsqueeze(1))[:, 0]
        out = self.world_model.imagine(tokens, policy, horizon - 1)
        policy(out["frames"][:, -1])  # the last frame's value bootstraps
        return {"frames": out["frames"].float(), "actions": out["actions"], "rewards": out["rewards"],
                "ends": out["ends"], "hidden": hidden, "logits": torch.stack(logits, 1).float(),
                "values": torch.stack(values, 1).float()}

    def update_actor_critic(self, imagined_trajectory: Mapping[str, Tensor]) -> dict[str, float]:
        """One actor-critic step on a rollout from :meth:`imagine_rollout`."""
        traj = imagined_trajectory
        cfg = self.config
        self.actor_critic.train()
        with self.precision():
            logits, values, _ = self.actor_critic.unroll(traj["frames"], traj["hidden"])
        logits, values = logits.float(), values.float()
        with torch.no_grad():
            discounts = cfg.gamma * (1.0 - traj["ends"].float())
            returns = compute_lambda_return(traj["rewards"], values.detach(), discounts, cfg.lambda_)
        dist = torch.distributions.Categorical(logits=logits[:, :-1])
        advantages = returns - values[:, :-1].detach()
        losses = {"loss_actions": -(dist.log_prob(traj["actions"]) * advantages).mean(),
                  "loss_entropy": -cfg.entropy_weight * dist.entropy().mean(),
                  "loss_values": nn.functional.mse_loss(values[:, :-1], returns)}
        losses["loss"] = losses["loss_actions"] + losses["loss_entropy"] + losses["loss_values"]
        norm, ok = self._step(self.actor_critic_optimizer, losses["loss"], self.actor_critic.parameters())
        self.actor_critic.eval()
        metrics = self._metrics("actor_critic", losses, norm, ok)
        metrics.update({"actor_critic/imagined_return": float(returns[:, 0].mean()),
                        "actor_critic/imagined_reward": float(traj["rewards"].mean()),
                        "actor_critic/entropy": float(dist.entropy().mean().detach())})
        return metrics

    # -- files ---------------------------------------------------------------------------------
    def optimizer_states(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer_optimizer.state_dict(),
                "world_model": self.world_model_optimizer.state_dict(),
                "actor_critic": self.actor_critic_optimizer.state_dict()}

    def load_optimizer_states(self, states: Mapping[str, Any]) -> None:
        self.tokenizer_optimizer.load_state_dict(states["tokenizer"])
        self.world_model_optimizer.load_state_dict(states["world_model"])
        self.actor_critic_optimizer.load_state_dict(states["actor_critic"])

    def save(self, path: str) -> None:
        """Networks and optimisers, loadable with ``torch.load(path, weights_only=True)``."""
        torch.save({"format": "distwm.iris_agent/1", "action_size": self.action_size,
                    "networks": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                    "optimizers": self.optimizer_states()}, path)

    def load(self, path: str) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        if not isinstance(state, Mapping) or state.get("format") != "distwm.iris_agent/1":
            raise ValueError(f"{path}: not an IRISAgent.save file (format "
                             f"{state.get('format') if isinstance(state, Mapping) else type(state).__name__!r})")
        if int(state["action_size"]) != self.action_size:
            raise ValueError(f"{path} is for {state['action_size']} actions, this agent has {self.action_size}")
        self.load_state_dict(state["networks"])
        self.load_optimizer_states(state["optimizers"])
