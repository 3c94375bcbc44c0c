"""Modular RSSM with swappable encoder/decoder/backbone components.

This module provides a flexible architecture for world model research, allowing researchers
to swap encoder, decoder and backbone implementations for ablations:

* encoders (:class:`EncoderBase`): :class:`ConvEncoder`, :class:`MLPEncoder`, :class:`ViTEncoder`;
* decoders (:class:`DecoderBase`): :class:`ConvDecoder`, :class:`MLPDecoder`;
* backbones (:class:`BackboneBase`): :class:`GRUBackbone`, :class:`LSTMBackbone`,
  :class:`TransformerBackbone`.

A latent state is a dict of tensors with a leading batch axis: ``mean``, ``std``, ``stoch``
(the stochastic sample) and ``deter`` (the deterministic state), plus whatever a backbone
carries (``cell`` for the LSTM, ``context`` and ``context_mask`` for the transformer). Features
for decoders and actors are ``cat([stoch, deter], -1)``.

Rollouts are time-major: ``obs`` (T, B, ...), ``actions`` (T, B, A), ``nonterms`` (T, B).
Step ``t`` applies ``actions[t]`` to the previous state and observes ``obs[t]``;
``nonterms[t] == 0`` marks an episode start at ``t`` (the previous state and action are
zeroed before the step).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, distributions, nn

from distwm.blocks.layers import activation_module, build_mlp, gaussian_params

__all__ = [
    "EncoderBase",
    "DecoderBase",
    "BackboneBase",
    "ConvEncoder",
    "MLPEncoder",
    "ViTEncoder",
    "TransformerBlock",
    "ConvDecoder",
    "MLPDecoder",
    "GRUBackbone",
    "LSTMBackbone",
    "TransformerBackbone",
    "ModularRSSM",
    "create_modular_rssm",
    "ENCODER_TYPES",
    "DECODER_TYPES",
    "BACKBONE_TYPES",
]

MIN_STD = 0.1


def _positive_int(owner: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


def _image_shape(owner: str, shape: Sequence[int]) -> Tuple[int, int, int]:
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3:
        raise ValueError(f"{owner} needs an image shape (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def _flatten_batch(x: Tensor, trailing: int) -> Tuple[Tensor, Tuple[int, ...]]:
    lead = tuple(x.shape[: x.dim() - trailing])
    return x.reshape(-1, *x.shape[x.dim() - trailing:]), lead


# -- abstract bases ----------------------------------------------------------------------------
class EncoderBase(nn.Module, ABC):
    """Abstract base class for observation encoders: ``forward(obs) -> (..., embed_size)``."""

    embed_size: int

    @abstractmethod
    def forward(self, obs: Tensor) -> Tensor:
        """Encode observations to embeddings."""

    def get_embed_size(self) -> int:
        """Return the embedding size."""
        return self.embed_size


class DecoderBase(nn.Module, ABC):
    """Abstract base class for observation decoders: ``forward(features)`` returns a
    distribution over observations (or a tensor, for ``dist='none'``)."""

    @abstractmethod
    def forward(self, features: Tensor) -> Any:
        """Decode latent features to observation distributions."""


class BackboneBase(nn.Module, ABC):
    """Abstract base class for recurrent dynamics backbones."""

    stoch_size: int
    deter_size: int

    @abstractmethod
    def forward(
        self,
        state: Dict[str, Tensor],
        action: Tensor,
        obs_embed: Optional[Tensor] = None,
        nonterm: Union[float, Tensor] = 1.0,
    ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """Process one step of dynamics. Returns ``(prior, posterior)``; without
        ``obs_embed`` the posterior is the prior."""

    @abstractmethod
    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Tensor]:
        """Initialize hidden state."""

    @property
    def embedding_size(self) -> int:
        return self.embed_size  # type: ignore[attr-defined]


def _nonterm_column(nonterm: Union[float, Tensor], like: Tensor) -> Union[float, Tensor]:
    """``nonterm`` as a float or a ``(B, 1)`` tensor that broadcasts over features."""
    if not torch.is_tensor(nonterm):
        return float(nonterm)
    nonterm = nonterm.to(like.dtype)
    if nonterm.dim() == 0:
        return nonterm
    return nonterm.reshape(like.shape[0], 1)


# -- encoders ---------------------------------------------------------------------------------
def _conv_out(size: int, kernel: int = 4, stride: int = 2) -> int:
    return (size - kernel) // stride + 1


class ConvEncoder(EncoderBase):
    """Convolutional encoder from Dreamer (image observations).

    Four 4x4 stride-2 convolutions with ``depth x (1, 2, 4, 8)`` channels, then a linear layer
    to ``embed_size``. Inputs ``(..., C, H, W)`` in ``[-0.5, 0.5]``; H and W at least 47.
    """

    def __init__(self, input_shape: Tuple[int, int, int], embed_size: int, activation: str = "elu", depth: int = 32):
        super().__init__()
        self.input_shape = _image_shape("ConvEncoder", input_shape)
        self.embed_size = _positive_int("ConvEncoder", "embed_size", embed_size)
        _positive_int("ConvEncoder", "depth", depth)
        channels, height, width = self.input_shape
        layers: List[nn.Module] = []
        for mult in (1, 2, 4, 8):
            layers += [nn.Conv2d(channels, depth * mult, 4, stride=2), activation_module(activation)]
            channels = depth * mult
            height, width = _conv_out(height), _conv_out(width)
        if height < 1 or width < 1:
            raise ValueError(
                f"ConvEncoder: input {self.input_shape} is too small for four stride-2 convolutions "
                "(H and W must be at least 47)"
            )
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * height * width, embed_size)

    def forward(self, obs: Tensor) -> Tensor:
        if tuple(obs.shape[-3:]) != self.input_shape:
            raise ValueError(f"ConvEncoder expects (..., {self.input_shape}), got {tuple(obs.shape)}")
        flat, lead = _flatten_batch(obs, 3)
        return self.fc(self.convs(flat).flatten(1)).reshape(*lead, self.embed_size)


class MLPEncoder(EncoderBase):
    """MLP encoder for state-based observations.

    With ``input_shape`` (say an image ``(C, H, W)`` whose size is ``input_dim``) the trailing
    axes of that shape are flattened first.
    """

    def __init__(
        self,
        input_dim: int,
        embed_size: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "elu",
        input_shape: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        self.input_dim = _positive_int("MLPEncoder", "input_dim", input_dim)
        self.embed_size = _positive_int("MLPEncoder", "embed_size", embed_size)
        self.input_shape = tuple(input_shape) if input_shape is not None else (input_dim,)
        if math.prod(self.input_shape) != input_dim:
            raise ValueError(f"MLPEncoder: input_shape {self.input_shape} does not hold {input_dim} values")
        self.net = build_mlp(input_dim, list(hidden_sizes), embed_size, activation)

    def forward(self, obs: Tensor) -> Tensor:
        n = len(self.input_shape)
        if tuple(obs.shape[obs.dim() - n:]) != self.input_shape:
            raise ValueError(f"MLPEncoder expects (..., {self.input_shape}), got {tuple(obs.shape)}")
        lead = obs.shape[: obs.dim() - n]
        return self.net(obs.reshape(*lead, self.input_dim).float())


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (self-attention and MLP, both residual) for the ViT encoder."""

    def __init__(self, embed_size: int, num_heads: int, mlp_ratio: float, activation: str):
        super().__init__()
        if embed_size % num_heads:
            raise ValueError(
                f"TransformerBlock: embed_size ({embed_size}) must be divisible by num_heads ({num_heads})"
            )
        hidden = max(1, int(embed_size * mlp_ratio))
        self.norm1 = nn.LayerNorm(embed_size)
        self.attn = nn.MultiheadAttention(embed_size, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(embed_size)
        self.mlp = nn.Sequential(
            nn.Linear(embed_size, hidden), activation_module(activation), nn.Linear(hidden, embed_size)
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViTEncoder(EncoderBase):
    """Vision Transformer encoder for image observations.

    Non-overlapping ``patch_size`` patches are embedded, a class token and learned position
    embeddings are added, ``depth`` :class:`TransformerBlock` layers run, and the normalised
    class token is the embedding (width ``embed_size``).
    """

    def __init__(
        self,
        input_shape: Tuple[int, int, int],
        embed_size: int,
        patch_size: int = 8,
        depth: int = 6,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
    ):
        super().__init__()
        self.input_shape = _image_shape("ViTEncoder", input_shape)
        self.embed_size = _positive_int("ViTEncoder", "embed_size", embed_size)
        _positive_int("ViTEncoder", "patch_size", patch_size)
        _positive_int("ViTEncoder", "depth", depth)
        channels, height, width = self.input_shape
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"ViTEncoder: image size {height}x{width} is not divisible by patch_size {patch_size}"
            )
        if embed_size % num_heads:
            raise ValueError(
                f"ViTEncoder: embed_size ({embed_size}) must be divisible by num_heads ({num_heads})"
            )
        num_patches = (height // patch_size) * (width // patch_size)
        self.patch_embed = nn.Conv2d(channels, embed_size, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_size))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, embed_size) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_size, num_heads, mlp_ratio, activation) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_size)

    def forward(self, obs: Tensor) -> Tensor:
        if tuple(obs.shape[-3:]) != self.input_shape:
            raise ValueError(f"ViTEncoder expects (..., {self.input_shape}), got {tuple(obs.shape)}")
        flat, lead = _flatten_batch(obs, 3)
        tokens = self.patch_embed(flat).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens[:, 0]).reshape(*lead, self.embed_size)


# -- decoders ---------------------------------------------------------------------------------
class ConvDecoder(DecoderBase):
    """Convolutional decoder for image observations (Dreamer's layout, 64x64 output).

    ``features`` (..., stoch + deter) -> linear to ``32 * depth`` -> four transposed
    convolutions (1 -> 5 -> 13 -> 30 -> 64 pixels). Returns
    ``Independent(Normal(mean, 1), 3)`` over ``output_shape``.
    """

    def __init__(
        self,
        stoch_size: int,
        deter_size: int,
        output_shape: Tuple[int, int, int],
        activation: str = "elu",
        depth: int = 32,
    ):
        super().__init__()
        self.output_shape = _image_shape("ConvDecoder", output_shape)
        if self.output_shape[1:] != (64, 64):
            raise ValueError(f"ConvDecoder produces 64x64 images; output_shape {self.output_shape} is not (C, 64, 64)")
        self.stoch_size = _positive_int("ConvDecoder", "stoch_size", stoch_size)
        self.deter_size = _positive_int("ConvDecoder", "deter_size", deter_size)
        _positive_int("ConvDecoder", "depth", depth)
        self.bottleneck = 32 * depth
        self.fc = nn.Linear(stoch_size + deter_size, self.bottleneck)
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(self.bottleneck, 4 * depth, 5, stride=2), activation_module(activation),
            nn.ConvTranspose2d(4 * depth, 2 * depth, 5, stride=2), activation_module(activation),
            nn.ConvTranspose2d(2 * depth, depth, 6, stride=2), activation_module(activation),
            nn.ConvTranspose2d(depth, self.output_shape[0], 6, stride=2),
        )

    def forward(self, features: Tensor) -> Any:
        flat, lead = _flatten_batch(features, 1)
        mean = self.deconvs(self.fc(flat).reshape(-1, self.bottleneck, 1, 1))
        mean = mean.reshape(*lead, *self.output_shape)
        return distributions.Independent(distributions.Normal(mean, 1.0), 3)


class MLPDecoder(DecoderBase):
    """MLP decoder for state-based observations (and rewards).

    ``output_dim`` is an int or a shape (for instance an image shape: the output is reshaped to
    it). ``dist``: ``'normal'`` (unit-variance Gaussian), ``'binary'`` (Bernoulli logits) or
    ``'none'`` (the raw tensor); distributions are ``Independent`` over the output axes.
    """

    DISTS = ("normal", "binary", "none")

    def __init__(
        self,
        stoch_size: int,
        deter_size: int,
        output_dim: Union[int, Sequence[int]],
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "elu",
        dist: str = "normal",
    ):
        super().__init__()
        if dist not in self.DISTS:
            raise ValueError(f"MLPDecoder: unknown dist {dist!r}; valid: {', '.join(self.DISTS)}")
        self.output_shape = (output_dim,) if isinstance(output_dim, int) else tuple(int(d) for d in output_dim)
        self.stoch_size = _positive_int("MLPDecoder", "stoch_size", stoch_size)
        self.deter_size = _positive_int("MLPDecoder", "deter_size", deter_size)
        self.dist = dist
        self.net = build_mlp(stoch_size + deter_size, list(hidden_sizes), math.prod(self.output_shape), activation)

    def forward(self, features: Tensor) -> Any:
        out = self.net(features)
        out = out.reshape(*out.shape[:-1], *self.output_shape)
        if self.dist == "none":
            return out
        base = distributions.Normal(out, 1.0) if self.dist == "normal" else distributions.Bernoulli(logits=out)
        return distributions.Independent(base, len(self.output_shape))


# -- backbones --------------------------------------------------------------------------------
class _RecurrentBackbone(BackboneBase):
    """Shared structure of the GRU and LSTM backbones: ``[stoch, action] -> cell -> deter``,
    prior from ``deter``, posterior from ``[deter, obs_embed]``."""

    def __init__(self, action_size, stoch_size, deter_size, hidden_size, embed_size, activation):
        super().__init__()
        owner = type(self).__name__
        self.action_size = _positive_int(owner, "action_size", action_size)
        self.stoch_size = _positive_int(owner, "stoch_size", stoch_size)
        self.deter_size = _positive_int(owner, "deter_size", deter_size)
        self.hidden_size = _positive_int(owner, "hidden_size", hidden_size)
        self.embed_size = _positive_int(owner, "embed_size", embed_size)
        self.fc_state_action = nn.Sequential(
            nn.Linear(stoch_size + action_size, deter_size), activation_module(activation)
        )
        self.fc_prior = build_mlp(deter_size, [hidden_size], 2 * stoch_size, activation)
        self.fc_posterior = build_mlp(deter_size + embed_size, [hidden_size], 2 * stoch_size, activation)

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Tensor]:
        zeros = lambda n: torch.zeros(batch_size, n, device=device)  # noqa: E731
        return {"mean": zeros(self.stoch_size), "std": zeros(self.stoch_size),
                "stoch": zeros(self.stoch_size), "deter": zeros(self.deter_size)}

    @abstractmethod
    def _recur(self, hidden: Tensor, state: Dict[str, Tensor], nonterm) -> Dict[str, Tensor]:
        """The cell step: ``hidden`` and the previous state -> ``{"deter": ...}`` (+ cell state)."""

    def _stochastic(self, raw: Tensor) -> Dict[str, Tensor]:
        mean, std = gaussian_params(raw, MIN_STD)
        return {"mean": mean, "std": std, "stoch": mean + std * torch.randn_like(std)}

    def forward(self, state, action, obs_embed=None, nonterm=1.0):
        nonterm = _nonterm_column(nonterm, state["deter"])
        hidden = self.fc_state_action(torch.cat([state["stoch"] * nonterm, action * nonterm], dim=-1))
        recurrent = self._recur(hidden, state, nonterm)
        prior = {**self._stochastic(self.fc_prior(recurrent["deter"])), **recurrent}
        if obs_embed is None:
            return prior, prior
        raw = self.fc_posterior(torch.cat([recurrent["deter"], obs_embed], dim=-1))
        return prior, {**self._stochastic(raw), **recurrent}


class GRUBackbone(_RecurrentBackbone):
    """GRU-based recurrent dynamics backbone (standard RSSM)."""

    def __init__(self, action_size: int, stoch_size: int, deter_size: int, hidden_size: int,
                 embed_size: int, activation: str = "elu"):
        super().__init__(action_size, stoch_size, deter_size, hidden_size, embed_size, activation)
        self.rnn = nn.GRUCell(deter_size, deter_size)

    def _recur(self, hidden, state, nonterm):
        return {"deter": self.rnn(hidden, state["deter"] * nonterm)}


class LSTMBackbone(_RecurrentBackbone):
    """LSTM-based recurrent dynamics backbone (the cell state travels as ``state['cell']``)."""

    def __init__(self, action_size: int, stoch_size: int, deter_size: int, hidden_size: int,
                 embed_size: int, activation: str = "elu"):
        super().__init__(action_size, stoch_size, deter_size, hidden_size, embed_size, activation)
        self.rnn = nn.LSTMCell(deter_size, deter_size)

    def init_state(self, batch_size, device):
        state = super().init_state(batch_size, device)
        state["cell"] = torch.zeros(batch_size, self.deter_size, device=device)
        return state

    def _recur(self, hidden, state, nonterm):
        cell = state.get("cell", torch.zeros_like(state["deter"]))
        deter, cell = self.rnn(hidden, (state["deter"] * nonterm, cell * nonterm))
        return {"deter": deter, "cell": cell}


class TransformerBackbone(BackboneBase):
    """Transformer-based dynamics backbone for long-range dependencies.

    Each step embeds ``(stoch, action)`` as a token and appends it to a sliding window of the
    last ``context_length`` tokens (``state['context']`` (B, W, embed_size) with validity
    ``state['context_mask']`` (B, W); an episode start clears it). ``num_layers`` transformer
    layers attend over the window; the newest token's output, projected to ``deter_size``,
    is ``deter``. ``embed_size`` is both the token width and the observation embedding size.
    """

    def __init__(
        self,
        action_size: int,
        stoch_size: int,
        deter_size: int,
        embed_size: int,
        num_heads: int = 4,
        num_layers: int = 2,
        activation: str = "gelu",
        context_length: int = 8,
    ):
        super().__init__()
        owner = "TransformerBackbone"
        self.action_size = _positive_int(owner, "action_size", action_size)
        self.stoch_size = _positive_int(owner, "stoch_size", stoch_size)
        self.deter_size = _positive_int(owner, "deter_size", deter_size)
        self.embed_size = _positive_int(owner, "embed_size", embed_size)
        self.context_length = _positive_int(owner, "context_length", context_length)
        _positive_int(owner, "num_layers", num_layers)
        if embed_size % num_heads:
            raise ValueError(f"{owner}: embed_size ({embed_size}) must be divisible by num_heads ({num_heads})")
        self.token = nn.Linear(stoch_size + action_size, embed_size)
        self.pos_embed = nn.Parameter(torch.randn(1, context_length, embed_size) * 0.02)
        layer = nn.TransformerEncoderLayer(
            embed_size, num_heads, dim_feedforward=4 * embed_size, dropout=0.0,
            activation=activation_module(activation), batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.fc_deter = nn.Sequential(nn.LayerNorm(embed_size), nn.Linear(embed_size, deter_size))
        self.fc_prior = build_mlp(deter_size, [deter_size], 2 * stoch_size, activation)
        self.fc_posterior = build_mlp(deter_size + embed_size, [deter_size], 2 * stoch_size, activation)

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Tensor]:
        zeros = lambda *shape: torch.zeros(batch_size, *shape, device=device)  # noqa: E731
        return {"mean": zeros(self.stoch_size), "std": zeros(self.stoch_size),
                "stoch": zeros(self.stoch_size), "deter": zeros(self.deter_size),
                "context": zeros(self.context_length, self.embed_size),
                "context_mask": zeros(self.context_length)}

    def _stochastic(self, raw: Tensor) -> Dict[str, Tensor]:
        mean, std = gaussian_params(raw, MIN_STD)
        return {"mean": mean, "std": std, "stoch": mean + std * torch.randn_like(std)}

    def forward(self, state, action, obs_embed=None, nonterm=1.0):
        stoch = state["stoch"]
        batch = stoch.shape[0]
        context = state.get("context")
        mask = state.get("context_mask")
        if context is None or mask is None:
            empty = self.init_state(batch, stoch.device)
            context, mask = empty["context"], empty["context_mask"]
        nonterm = _nonterm_column(nonterm, stoch)
        token = self.token(torch.cat([stoch * nonterm, action * nonterm], dim=-1))
        mask = torch.cat([mask[:, 1:] * nonterm, torch.ones_like(mask[:, :1])], dim=1)
        context = torch.cat([context[:, 1:], token.unsqueeze(1)], dim=1)
        hidden = self.transformer(context + self.pos_embed, src_key_padding_mask=mask < 0.5)
        deter = self.fc_deter(hidden[:, -1])
        carried = {"deter": deter, "context": context, "context_mask": mask}
        prior = {**self._stochastic(self.fc_prior(deter)), **carried}
        if obs_embed is None:
            return prior, prior
        posterior = {**self._stochastic(self.fc_posterior(torch.cat([deter, obs_embed], dim=-1))), **carried}
        return prior, posterior


# -- the model --------------------------------------------------------------------------------
class ModularRSSM(nn.Module):
    """Modular RSSM with swappable encoder, decoder, and backbone.

    This class allows researchers to easily experiment with different:
    - Encoders: Conv, MLP, ViT
    - Decoders: Conv, MLP
    - Backbones: GRU, LSTM, Transformer

    Example::

        >>> encoder = ConvEncoder((3, 64, 64), embed_size=1024)
        >>> decoder = ConvDecoder(32, 200, (3, 64, 64))
        >>> backbone = GRUBackbone(action_size=6, stoch_size=32, deter_size=200, hidden_size=200, embed_size=1024)
        >>> rssm = ModularRSSM(encoder, decoder, backbone)
    """

    def __init__(
        self,
        encoder: EncoderBase,
        decoder: DecoderBase,
        backbone: BackboneBase,
        reward_decoder: Optional[DecoderBase] = None,
    ):
        super().__init__()
        enc_size = encoder.get_embed_size() if hasattr(encoder, "get_embed_size") else encoder.embed_size
        if enc_size != backbone.embedding_size:
            raise ValueError(
                f"ModularRSSM: the encoder embeds to {enc_size} values but the backbone expects "
                f"embed_size={backbone.embedding_size}"
            )
        features = backbone.stoch_size + backbone.deter_size
        for name, module in (("decoder", decoder), ("reward_decoder", reward_decoder)):
            if module is None or not hasattr(module, "stoch_size"):
                continue
            if module.stoch_size + module.deter_size != features:
                raise ValueError(
                    f"ModularRSSM: the {name} reads {module.stoch_size}+{module.deter_size} features "
                    f"but the backbone has stoch_size={backbone.stoch_size}, deter_size={backbone.deter_size}"
                )
        self.encoder = encoder
        self.decoder = decoder
        self.backbone = backbone
        self.reward_decoder = reward_decoder

    @property
    def stoch_size(self) -> int:
        return self.backbone.stoch_size

    @property
    def deter_size(self) -> int:
        return self.backbone.deter_size

    @property
    def embed_size(self) -> int:
        return self.backbone.embedding_size

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Tensor]:
        return self.backbone.init_state(batch_size, device)

    def get_dist(self, mean: Tensor, std: Tensor) -> distributions.Distribution:
        """Diagonal Gaussian over the stochastic state, ``Independent`` over its last axis."""
        return distributions.Independent(distributions.Normal(mean, std), 1)

    @staticmethod
    def get_features(state: Dict[str, Tensor]) -> Tensor:
        """``cat([stoch, deter], -1)``: the input of decoders and actors."""
        return torch.cat([state["stoch"], state["deter"]], dim=-1)

    def observe_step(self, prev_state, prev_action, obs, nonterm=1.0):
        """One filtering step: ``(prior, posterior)`` after ``prev_action`` and ``obs``."""
        return self.backbone(prev_state, prev_action, self.encoder(obs), nonterm)

    def imagine_step(self, prev_state, prev_action, nonterm=1.0):
        """One imagined step: the prior after ``prev_action``."""
        prior, _ = self.backbone(prev_state, prev_action, None, nonterm)
        return prior

    def observe_rollout(self, obs, actions, nonterms, prev_state, horizon):
        """Filter ``horizon`` steps of ``obs`` (T, B, ...), ``actions`` (T, B, A) and
        ``nonterms`` (T, B); returns stacked ``(priors, posteriors)``, each (horizon, B, ...)."""
        if horizon > min(obs.shape[0], actions.shape[0], nonterms.shape[0]):
            raise ValueError(
                f"observe_rollout: horizon {horizon} exceeds the sequence lengths obs={obs.shape[0]}, "
                f"actions={actions.shape[0]}, nonterms={nonterms.shape[0]}"
            )
        embeds = self.encoder(obs[:horizon])
        priors, posteriors = [], []
        state = prev_state
        for t in range(horizon):
            prior, state = self.backbone(state, actions[t], embeds[t], nonterms[t])
            priors.append(prior)
            posteriors.append(state)
        return self._stack_states(priors), self._stack_states(posteriors)

    def imagine_rollout(self, actor: nn.Module, prev_state, horizon: int):
        """Imagine ``horizon`` steps choosing actions with ``actor(features)`` (a tensor, a
        tuple whose first item is the action, or a distribution that is ``rsample``d).
        Returns the stacked priors, (horizon, B, ...)."""
        state = prev_state
        states = []
        for _ in range(horizon):
            action = actor(self.get_features(state).detach())
            if isinstance(action, (tuple, list)):
                action = action[0]
            if isinstance(action, distributions.Distribution):
                action = action.rsample()
            state = self.imagine_step(state, action)
            states.append(state)
        return self._stack_states(states)

    def decode_observation(self, features: Tensor):
        return self.decoder(features)

    def decode_reward(self, features: Tensor):
        if self.reward_decoder is None:
            raise ValueError("ModularRSSM.decode_reward: this model was built without a reward_decoder")
        return self.reward_decoder(features)

    @staticmethod
    def _stack_states(states: List[Dict[str, Tensor]], dim: int = 0) -> Dict[str, Tensor]:
        return {key: torch.stack([s[key] for s in states], dim=dim) for key in states[0]}

    def detach_state(self, state: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return {k: v.detach() for k, v in state.items()}

    def seq_to_batch(self, state: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Merge the (T, B) leading axes of stacked states into one batch axis."""
        return {k: v.reshape(v.shape[0] * v.shape[1], *v.shape[2:]) for k, v in state.items()}


# -- factory ----------------------------------------------------------------------------------
ENCODER_TYPES = ("conv", "mlp", "vit")
DECODER_TYPES = ("conv", "mlp")
BACKBONE_TYPES = ("gru", "lstm", "transformer")
_IMAGE_ONLY = {"conv", "vit"}
_FACTORY_KWARGS = {
    "depth": "conv encoder/decoder base channels (32)",
    "hidden_sizes": "MLP encoder/decoder hidden layers ([256, 256])",
    "patch_size": "ViT patch size (8)",
    "vit_depth": "ViT blocks (6)",
    "mlp_ratio": "ViT MLP ratio (4.0)",
    "num_heads": "ViT and transformer backbone heads (8 and 4)",
    "num_layers": "transformer backbone layers (2)",
    "context_length": "transformer backbone window (8)",
    "reward_decoder": "build an MLP reward decoder (True)",
}


def _choice(kind: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"Unknown {kind} type {value!r}; valid {kind} types: {', '.join(valid)}")
    return value


def create_modular_rssm(
    encoder_type: str = "conv",
    decoder_type: str = "conv",
    backbone_type: str = "gru",
    obs_shape: Union[Tuple[int, int, int], Tuple[int]] = (3, 64, 64),
    action_size: int = 6,
    stoch_size: int = 32,
    deter_size: int = 200,
    embed_size: int = 1024,
    hidden_size: int = 200,
    activation: str = "elu",
    **kwargs: Any,
) -> ModularRSSM:
    """Factory function to create a modular RSSM with specified components.

    Args:
        encoder_type: ``"conv"``, ``"mlp"`` or ``"vit"``.
        decoder_type: ``"conv"`` or ``"mlp"``.
        backbone_type: ``"gru"``, ``"lstm"`` or ``"transformer"``.
        obs_shape: ``(C, H, W)`` for images or ``(D,)`` for state vectors. Conv and ViT
            encoders and the conv decoder need images; the MLP encoder and decoder take either
            (images are flattened).
        action_size, stoch_size, deter_size, embed_size, hidden_size: component sizes.
        activation: activation name for every component.
        **kwargs: ``depth``, ``hidden_sizes``, ``patch_size``, ``vit_depth``, ``mlp_ratio``,
            ``num_heads``, ``num_layers``, ``context_length``, ``reward_decoder``.

    Returns:
        The configured :class:`ModularRSSM` (with an MLP reward decoder unless
        ``reward_decoder=False``).
    """
    _choice("encoder", encoder_type, ENCODER_TYPES)
    _choice("decoder", decoder_type, DECODER_TYPES)
    _choice("backbone", backbone_type, BACKBONE_TYPES)
    unknown = sorted(set(kwargs) - set(_FACTORY_KWARGS))
    if unknown:
        raise ValueError(
            f"create_modular_rssm: unknown argument(s) {', '.join(unknown)}; valid extra arguments: "
            + "; ".join(f"{k}: {v}" for k, v in _FACTORY_KWARGS.items())
        )
    obs_shape = tuple(int(d) for d in obs_shape)
    if len(obs_shape) not in (1, 3):
        raise ValueError(f"obs_shape must be (C, H, W) for images or (D,) for vectors, got {obs_shape}")
    is_image = len(obs_shape) == 3
    for kind, chosen in (("encoder", encoder_type), ("decoder", decoder_type)):
        if chosen in _IMAGE_ONLY and not is_image:
            raise ValueError(
                f"{kind}_type {chosen!r} needs image observations (C, H, W), but obs_shape {obs_shape} "
                f"is a vector; use {kind}_type='mlp' for vector observations"
            )
    depth = kwargs.get("depth", 32)
    hidden_sizes = list(kwargs.get("hidden_sizes", [256, 256]))
    obs_dim = math.prod(obs_shape)

    if encoder_type == "conv":
        encoder: EncoderBase = ConvEncoder(obs_shape, embed_size, activation, depth)  # type: ignore[arg-type]
    elif encoder_type == "vit":
        encoder = ViTEncoder(obs_shape, embed_size, kwargs.get("patch_size", 8), kwargs.get("vit_depth", 6),
                             kwargs.get("num_heads", 8), kwargs.get("mlp_ratio", 4.0), "gelu")  # type: ignore[arg-type]
    else:
        encoder = MLPEncoder(obs_dim, embed_size, hidden_sizes, activation, input_shape=obs_shape)

    if decoder_type == "conv":
        decoder: DecoderBase = ConvDecoder(stoch_size, deter_size, obs_shape, activation, depth)  # type: ignore[arg-type]
    else:
        decoder = MLPDecoder(stoch_size, deter_size, obs_shape, hidden_sizes, activation)

    if backbone_type == "gru":
        backbone: BackboneBase = GRUBackbone(action_size, stoch_size, deter_size, hidden_size, embed_size, activation)
    elif backbone_type == "lstm":
        backbone = LSTMBackbone(action_size, stoch_size, deter_size, hidden_size, embed_size, activation)
    else:
        backbone = TransformerBackbone(action_size, stoch_size, deter_size, embed_size,
                                       kwargs.get("num_heads", 4), kwargs.get("num_layers", 2),
                                       "gelu", kwargs.get("context_length", 8))

    reward_decoder = (
        MLPDecoder(stoch_size, deter_size, 1, [hidden_size, hidden_size], activation)
        if kwargs.get("reward_decoder", True) else None
    )
    return ModularRSSM(encoder, decoder, backbone, reward_decoder)
