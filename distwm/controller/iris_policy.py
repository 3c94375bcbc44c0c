"""IRIS's policy: frames in ``[0, 1]`` -> conv features -> LSTM -> action logits and values.

:class:`IRISActorCritic` is the network of the IRIS reference code (Micheli et al. 2023,
``src/models/actor_critic.py``), which :class:`~distwm.models.iris.agent.IRISAgent` trains:
four (conv 3x3 -> max-pool 2 -> ReLU) stages of 32 / 32 / 64 / 64 channels on frames mapped to
``[-1, 1]``, an ``LSTMCell`` of 512 units on the flattened features (1024 for 64x64), and linear
actor and critic heads on the LSTM output. The seed's :class:`IRISActor`, :class:`IRISCritic`
and :class:`IRISPolicy` (separate actor and critic, ``num_layers`` stacked LSTM layers) are
built from the same :class:`CNNFeatureExtractor`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CNNFeatureExtractor", "IRISActor", "IRISActorCritic", "IRISCritic", "IRISPolicy"]

#: IRIS's conv stages (output channels of each conv 3x3 + max-pool)
IRIS_CHANNELS = (32, 32, 64, 64)

State = tuple[Tensor, Tensor]


def _check_frames(frames: Tensor, frame_shape, who: str) -> None:
    if tuple(frames.shape[-3:]) != tuple(frame_shape):
        raise ValueError(f"{who}: frames must end in {tuple(frame_shape)} (C, H, W), got {tuple(frames.shape)}")


class CNNFeatureExtractor(nn.Module):
    """IRIS's conv trunk on frames ``(B, C, H, W)`` in ``[0, 1]``.

    ``output_size=None`` returns the flattened conv features (``64 * H/16 * W/16``: what IRIS
    feeds its LSTM); an int adds ``Linear -> ReLU`` to that size (the seed's 512 default)."""

    def __init__(self, frame_shape=(3, 64, 64), output_size: int | None = 512,
                 channels: tuple[int, ...] = IRIS_CHANNELS):
        super().__init__()
        c, h, w = (int(x) for x in frame_shape)
        scale = 2 ** len(channels)
        if h % scale or w % scale:
            raise ValueError(f"CNNFeatureExtractor: frame height and width must be multiples of {scale} "
                             f"({len(channels)} max-pools), got frame_shape {tuple(frame_shape)}")
        self.frame_shape = (c, h, w)
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, 1, 1), nn.MaxPool2d(2, 2), nn.ReLU()]
            c = out
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.conv_size = c * (h // scale) * (w // scale)
        self.project = None if output_size is None else nn.Sequential(nn.Linear(self.conv_size, output_size), nn.ReLU())
        self.output_size = self.conv_size if output_size is None else int(output_size)

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(..., output_size)`` of frames ``x`` ``(..., C, H, W)`` in [0, 1]."""
        _check_frames(x, self.frame_shape, type(self).__name__)
        features = self.convs(x.flatten(0, -4) * 2.0 - 1.0)
        features = features if self.project is None else self.project(features)
        return features.reshape(*x.shape[:-3], self.output_size)


class IRISActorCritic(nn.Module):
    """IRIS's actor-critic (module docstring): one conv trunk and ``LSTMCell`` shared by a
    linear actor (``action_size`` logits) and a linear critic (a value)."""

    def __init__(self, action_size: int, frame_shape=(3, 64, 64), lstm_size: int = 512,
                 channels: tuple[int, ...] = IRIS_CHANNELS):
        super().__init__()
        if int(action_size) < 1:
            raise ValueError(f"action_size must be >= 1, got {action_size!r}")
        self.action_size, self.lstm_size = int(action_size), int(lstm_size)
        self.features = CNNFeatureExtractor(frame_shape, None, channels)
        self.lstm = nn.LSTMCell(self.features.output_size, self.lstm_size)
        self.actor = nn.Linear(self.lstm_size, self.action_size)
        self.critic = nn.Linear(self.lstm_size, 1)

    def initial_state(self, batch_size: int, device=None) -> State:
        zeros = torch.zeros(batch_size, self.lstm_size, device=device)
        return zeros, zeros.clone()

    def step(self, frames: Tensor, state: State) -> tuple[Tensor, Tensor, State]:
        """One step on frames ``(B, C, H, W)``: ``(logits (B, A), values (B,), new state)``."""
        h, c = self.lstm(self.features(frames), state)
        return self.actor(h), self.critic(h).squeeze(-1), (h, c)

    def burn_in(self, frames: Tensor, is_first: Tensor | None = None, state: State | None = None) -> State:
        """The LSTM state after frames ``(B, T, C, H, W)`` (no gradient, as IRIS's burn-in);
        ``is_first`` ``(B, T)`` zeroes the state before the steps where a new episode starts."""
        b, t = frames.shape[:2]
        state = self.initial_state(b, frames.device) if state is None else state
        with torch.no_grad():
            features = self.features(frames)
            for i in range(t):
                if is_first is not None:
                    keep = (~is_first[:, i].bool()).float().unsqueeze(-1)
                    state = (state[0] * keep, state[1] * keep)
                state = self.lstm(features[:, i], state)
        return state

    def unroll(self, frames: Tensor, state: State) -> tuple[Tensor, Tensor, State]:
        """Steps over frames ``(B, T, C, H, W)`` from ``state`` (with gradient): logits
        ``(B, T, A)``, values ``(B, T)`` and the last state. The conv trunk runs once on all
        ``B * T`` frames."""
        features = self.features(frames)
        hs = []
        for i in range(frames.shape[1]):
            state = self.lstm(features[:, i], state)
            hs.append(state[0])
        h = torch.stack(hs, 1)
        return self.actor(h), self.critic(h).squeeze(-1), state


class _Recurrent(nn.Module):
    """CNN features -> ``num_layers`` stacked LSTM layers, over ``(B, T, C, H, W)`` or ``(B, C, H, W)``."""

    def __init__(self, hidden_size: int, num_layers: int, frame_shape):
        super().__init__()
        if int(num_layers) < 1 or int(hidden_size) < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1, got {hidden_size!r}, {num_layers!r}")
        self.hidden_size, self.num_layers, self.frame_shape = int(hidden_size), int(num_layers), tuple(frame_shape)
        self.features = CNNFeatureExtractor(frame_shape, 512)
        self.lstm = nn.LSTM(self.features.output_size, self.hidden_size, self.num_layers, batch_first=True)

    def init_hidden_state(self, batch_size: int, device=None) -> State:
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def _run(self, frames: Tensor, hidden_state: State | None) -> tuple[Tensor, State, bool]:
        single = frames.dim() == 4
        frames = frames.unsqueeze(1) if single else frames
        if frames.dim() != 5:
            raise ValueError(f"{type(self).__name__}: frames must be (B, T, C, H, W) or (B, C, H, W), "
                             f"got {tuple(frames.shape)}")
        if hidden_state is None:
            hidden_state = self.init_hidden_state(frames.shape[0], frames.device)
        out, hidden_state = self.lstm(self.features(frames), hidden_state)
        return out, hidden_state, single


class IRISActor(_Recurrent):
    """The seed's IRIS actor: :class:`CNNFeatureExtractor` -> ``num_layers``-layer LSTM ->
    linear action logits; ``burn_in_frames`` ``(B, T, C, H, W)`` warm the state first."""

    def __init__(self, action_size: int, hidden_size: int = 512, num_layers: int = 4, frame_shape=(3, 64, 64)):
        super().__init__(hidden_size, num_layers, frame_shape)
        self.action_size = int(action_size)
        self.head = nn.Linear(self.hidden_size, self.action_size)

    def forward(self, frames: Tensor, hidden_state: State | None = None,
                burn_in_frames: Tensor | None = None) -> tuple[Tensor, State]:
        if burn_in_frames is not None:
            with torch.no_grad():
                _, hidden_state, _ = self._run(burn_in_frames, hidden_state)
        out, hidden_state, single = self._run(frames, hidden_state)
        logits = self.head(out)
        return (logits[:, 0] if single else logits), hidden_state

    @torch.no_grad()
    def get_action(self, frame: Tensor, temperature: float = 1.0, deterministic: bool = False) -> Tensor:
        logits, _ = self(frame)
        return _choose(logits, temperature, deterministic)


class IRISCritic(_Recurrent):
    """The seed's IRIS critic: the actor's architecture with a scalar value head."""

    def __init__(self, hidden_size: int = 512, num_layers: int = 4, frame_shape=(3, 64, 64)):
        super().__init__(hidden_size, num_layers, frame_shape)
        self.head = nn.Linear(self.hidden_size, 1)

    def forward(self, frames: Tensor, hidden_state: State | None = None) -> tuple[Tensor, State]:
        out, hidden_state, single = self._run(frames, hidden_state)
        values = self.head(out).squeeze(-1)
        return (values[:, 0] if single else values), hidden_state


def _choose(logits: Tensor, temperature: float, deterministic: bool) -> Tensor:
    if deterministic:
        return logits.argmax(-1)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return torch.distributions.Categorical(logits=logits / temperature).sample()


class IRISPolicy(nn.Module):
    """The seed's combined IRIS policy: an :class:`IRISActor` (``actor``) that keeps its LSTM
    state between :meth:`act` calls (:meth:`init_hidden` resets it)."""

    def __init__(self, action_size: int, hidden_size: int = 512, num_layers: int = 4, frame_shape=(3, 64, 64)):
        super().__init__()
        self.actor = IRISActor(action_size, hidden_size, num_layers, frame_shape)
        self.hidden_size, self.num_layers, self.frame_shape = int(hidden_size), int(num_layers), tuple(frame_shape)
        self.hidden: State | None = None

    def forward(self, frames: Tensor) -> Tensor:
        logits, _ = self.actor(frames)
        return logits

    @torch.no_grad()
    def act(self, frame: Tensor, temperature: float = 1.0, deterministic: bool = False) -> Tensor:
        if self.hidden is not None and self.hidden[0].shape[1] != frame.shape[0]:
            raise ValueError(f"IRISPolicy.act: the hidden state is for {self.hidden[0].shape[1]} envs, "
                             f"got {frame.shape[0]} frames; call init_hidden({frame.shape[0]}, device)")
        logits, self.hidden = self.actor(frame, self.hidden)
        return _choose(logits, temperature, deterministic)

    def init_hidden(self, batch_size: int, device=None) -> State:
        self.hidden = self.actor.init_hidden_state(batch_size, device)
        return self.hidden
