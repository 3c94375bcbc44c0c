"""DIAMOND's reward / termination model (Alonso et al. 2024), after the reference code
(eloialonso/diamond ``src/models/rew_end_model.py`` and ``src/models/blocks.py``).

* Input: a transition, the frame ``o_t`` and the next frame ``o_{t+1}`` stacked along the
  channels (``2 * obs_channels``), conditioned on an embedding of the action ``a_t``.
* Encoder (``RewEndEncoder``): a 3x3 conv, then per stage ``blocks_per_stage`` residual blocks
  (:class:`ConvBlock`: adaptive group norm on the action embedding, SiLU, 3x3 convs; the
  blocks of the U-Net, :mod:`distwm.models.diamond.unet`, as the reference shares
  ``blocks.py``), every stage after the first opening with a stride-2 conv; then two
  residual blocks with self-attention. Channels ``(32, 32, 32, 32)``, an action embedding of
  128, two blocks a stage.
* ``nn.LSTM(512)`` over the flattened features of the sequence, a head
  ``Linear -> SiLU -> Linear(3 + 2, no bias)``: logits of the reward's sign (classes
  ``-1, 0, +1``) and of the end (``0, 1``).
* :class:`RewardTerminationLoss`: the cross-entropies of both heads over the valid steps of
  burn-in + horizon segments (``mask`` marks padding out, as ``mask_padding`` there).

Frames are floats in ``[-1, 1]`` (the diffusion model's range) of ``image_size`` square pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.models.diamond.unet import AttentionBlock, ResBlock

__all__ = ["ConvBlock", "RewardTerminationLoss", "RewardTerminationModel", "init_lstm"]

State = tuple[Tensor, Tensor]

#: the ConvBlock strides: 1 keeps the resolution, 2 halves it (the reference's ``Downsample``)
STRIDES = (1, 2)


def init_lstm(lstm: nn.Module) -> None:
    """The reference's ``init_lstm``: Xavier-uniform input weights, orthogonal recurrent
    weights, zero biases but a forget-gate bias of 1."""
    for name, param in lstm.named_parameters():
        if "weight_ih" in name:
            nn.init.xavier_uniform_(param.data)
        elif "weight_hh" in name:
            nn.init.orthogonal_(param.data)
        elif "bias" in name:
            param.data.zero_()
            if "bias_ih" in name:
                quarter = param.shape[0] // 4
                param.data[quarter: 2 * quarter] = 1.0


def check_positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    """``values`` as a non-empty tuple of ints >= 1, else a ValueError naming ``name``."""
    if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)):
        raise ValueError(f"{name} must be a non-empty sequence of integers >= 1, got {values!r}")
    return tuple(values)


def check_positive_int(name: str, value) -> int:
    """``value`` if it is an int >= 1, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class ConvBlock(nn.Module):
    """The seed's conv block with adaptive group norm: the reference's ``Downsample`` (a stride-2
    3x3 conv, orthogonal init) where ``stride=2``, then its ``ResBlock`` (the U-Net's
    :class:`~distwm.models.diamond.unet.ResBlock`: adaptive group norms on ``cond``, SiLU, two
    3x3 convs, the second zero-initialised, a 1x1-projected skip where the channels change),
    with ``attention=True`` followed by self-attention
    (:class:`~distwm.models.diamond.unet.AttentionBlock`, the reference's ``attn``).
    ``forward(x (B, in, H, W), cond (B, cond_dim)) -> (B, out, H / stride, W / stride)``."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, stride: int = 2,
                 attention: bool = False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("cond_dim", cond_dim)):
            check_positive_int(name, value)
        if stride not in STRIDES:
            raise ValueError(f"ConvBlock stride must be one of {STRIDES}, got {stride!r}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.downsample: nn.Module = nn.Identity()
        if stride == 2:
            self.downsample = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1)
            nn.init.orthogonal_(self.downsample.weight)
        self.residual = ResBlock(in_channels, out_channels, cond_dim)
        self.attention = AttentionBlock(out_channels, cond_dim) if attention else None

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvBlock expects x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = self.residual(self.downsample(x), cond)
        return x if self.attention is None else self.attention(x)


class RewardTerminationModel(nn.Module):
    """DIAMOND's reward / termination model (module docstring).

    ``image_size`` (the frames' side, 64 on Atari) sizes the LSTM input; ``blocks_per_stage``
    is the reference's ``depths`` (2 each). The LSTM state is ``(h, c)``, each
    ``(1, B, lstm_dim)`` (``nn.LSTM``'s layout).
    """

    def __init__(self, obs_channels: int = 3, action_dim: int = 18, channels: tuple[int, ...] = (32, 32, 32, 32),
                 lstm_dim: int = 512, cond_dim: int = 128, image_size: int = 64, blocks_per_stage: int = 2):
        super().__init__()
        channels = check_positive_ints("channels", channels)
        for name, value in (("obs_channels", obs_channels), ("action_dim", action_dim), ("lstm_dim", lstm_dim),
                            ("cond_dim", cond_dim), ("image_size", image_size),
                            ("blocks_per_stage", blocks_per_stage)):
            check_positive_int(name, value)
        self.obs_channels, self.action_dim, self.lstm_dim = obs_channels, action_dim, lstm_dim
        self.image_size, self.channels = image_size, channels
        self.action_embedding = nn.Embedding(action_dim, cond_dim)
        self.conv_in = nn.Conv2d(2 * obs_channels, channels[0], 3, padding=1)
        blocks, previous, side = [], channels[0], image_size
        for stage, width in enumerate(channels):
            blocks.append(ConvBlock(previous, width, cond_dim, stride=2 if stage else 1))
            blocks += [ConvBlock(width, width, cond_dim, stride=1) for _ in range(blocks_per_stage - 1)]
            side = (side + 1) // 2 if stage else side
            previous = width
        blocks += [ConvBlock(previous, previous, cond_dim, stride=1, attention=True) for _ in range(2)]
        self.blocks = nn.ModuleList(blocks)
        self.lstm = nn.LSTM(previous * side * side, lstm_dim, batch_first=True)
        self.head = nn.Sequential(nn.Linear(lstm_dim, lstm_dim), nn.SiLU(), nn.Linear(lstm_dim, 3 + 2, bias=False))
        init_lstm(self.lstm)

    def init_hidden(self, batch_size: int, device=None) -> State:
        zeros = torch.zeros(1, batch_size, self.lstm_dim, device=device)
        return zeros, zeros.clone()

    def _check(self, obs: Tensor, actions: Tensor, next_obs: Tensor | None) -> None:
        frame = (self.obs_channels, self.image_size, self.image_size)
        if obs.dim() != 5 or tuple(obs.shape[2:]) != frame:
            raise ValueError(f"obs must be (B, T, {', '.join(map(str, frame))}), got {tuple(obs.shape)}")
        if tuple(actions.shape) != tuple(obs.shape[:2]):
            raise ValueError(f"actions must be (B, T) = {tuple(obs.shape[:2])}, got {tuple(actions.shape)}")
        if next_obs is not None and next_obs.shape != obs.shape:
            raise ValueError(f"next_obs must have obs's shape {tuple(obs.shape)}, got {tuple(next_obs.shape)}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.action_dim):
            bad = int(actions.min()) if int(actions.min()) < 0 else int(actions.max())
            raise ValueError(f"actions must be in [0, {self.action_dim - 1}] (action_dim={self.action_dim}), got {bad}")

    def forward(self, obs: Tensor, actions: Tensor, hidden_state: State | None = None,
                next_obs: Tensor | None = None) -> tuple[Tensor, Tensor, State]:
        """Logits over the transitions ``(obs[:, t], actions[:, t], next_obs[:, t])``.

        ``obs`` / ``next_obs`` ``(B, T, C, H, W)`` in ``[-1, 1]``, ``actions`` ``(B, T)``
        integers. Returns reward logits ``(B, T, 3)`` (classes ``-1, 0, +1``), termination
        logits ``(B, T, 2)`` and the LSTM state. The reference always passes ``next_obs``;
        the seed's call without it uses ``obs`` for both frames of the pair.
        """
        actions = actions.long()
        self._check(obs, actions, next_obs)
        b, t = actions.shape
        pair = torch.cat([obs, obs if next_obs is None else next_obs], dim=2).flatten(0, 1)
        cond = self.action_embedding(actions.flatten())
        x = self.conv_in(pair)
        for block in self.blocks:
            x = block(x, cond)
        x, hidden_state = self.lstm(x.reshape(b, t, -1), hidden_state)
        logits = self.head(x)
        return logits[..., :3], logits[..., 3:], hidden_state

    @torch.no_grad()
    def burn_in(self, obs: Tensor, actions: Tensor, next_obs: Tensor | None = None,
                hidden_state: State | None = None) -> State:
        """The LSTM state after the transitions of real frames, without gradient (the reference
        burns the model in on the conditioning frames before imagining from them)."""
        return self(obs, actions, hidden_state, next_obs)[2]

    @torch.no_grad()
    def predict(self, obs: Tensor, actions: Tensor, hidden_state: State | None = None,
                next_obs: Tensor | None = None, sample: bool = True) -> tuple[Tensor, Tensor, State]:
        """One step: ``obs`` / ``next_obs`` ``(B, C, H, W)``, ``actions`` ``(B,)`` ->
        ``(reward (B,) float in {-1, 0, 1}, terminated (B,) bool, state)``. ``sample=True``
        draws both from their categoricals as the reference's world-model env does; ``False``
        takes the most likely class."""
        reward_logits, end_logits, hidden_state = self(
            obs.unsqueeze(1), actions.unsqueeze(1), hidden_state, None if next_obs is None else next_obs.unsqueeze(1))
        reward_logits, end_logits = reward_logits[:, 0], end_logits[:, 0]
        if sample:
            reward = torch.distributions.Categorical(logits=reward_logits).sample()
            end = torch.distributions.Categorical(logits=end_logits).sample()
        else:
            reward, end = reward_logits.argmax(-1), end_logits.argmax(-1)
        return reward.float() - 1.0, end.bool(), hidden_state


class RewardTerminationLoss(nn.Module):
    """Cross-entropy of the reward-sign and termination logits (the reference's
    ``RewEndModel.forward``): ``total = reward CE + termination CE``, each a mean over the
    valid steps."""

    @staticmethod
    def reward_classes(rewards: Tensor) -> Tensor:
        """Reward -> class index: ``sign(reward) + 1`` (``-1, 0, +1`` -> ``0, 1, 2``)."""
        return torch.sign(rewards).long() + 1

    def forward(self, reward_logits: Tensor, termination_logits: Tensor, rewards: Tensor, terminated: Tensor,
                mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``reward_logits`` ``(B, T, 3)``, ``termination_logits`` ``(B, T, 2)``; ``rewards``
        ``(B, T)`` real rewards (their sign is the target class), ``terminated`` ``(B, T)``;
        ``mask`` ``(B, T)`` true on the valid steps (padding false). Returns
        ``(total_loss, reward_loss, termination_loss)``."""
        steps = tuple(rewards.shape)
        if tuple(reward_logits.shape) != steps + (3,) or tuple(termination_logits.shape) != steps + (2,):
            raise ValueError(f"logits must be (B, T, 3) and (B, T, 2) for rewards {steps}, got "
                             f"{tuple(reward_logits.shape)} and {tuple(termination_logits.shape)}")
        if tuple(terminated.shape) != steps or (mask is not None and tuple(mask.shape) != steps):
            raise ValueError(f"terminated and mask must be (B, T) = {steps}, got {tuple(terminated.shape)} "
                             f"and {None if mask is None else tuple(mask.shape)}")
        valid = torch.ones(steps, dtype=torch.bool, device=rewards.device) if mask is None else mask.bool()
        if not valid.any():  # nothing to learn from: a zero that keeps the graph
            zero = (reward_logits.sum() + termination_logits.sum()) * 0.0
            return zero, zero, zero
        reward_loss = F.cross_entropy(reward_logits[valid], self.reward_classes(rewards[valid]))
        termination_loss = F.cross_entropy(termination_logits[valid], terminated[valid].long())
        return reward_loss + termination_loss, reward_loss, termination_loss
