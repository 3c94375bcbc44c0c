"""The modular RSSM (:class:`ModularRSSM`) and its factory :func:`create_modular_rssm`."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, distributions, nn

from distwm.models.modular_rssm.backbones import GRUBackbone, LSTMBackbone, TransformerBackbone
from distwm.models.modular_rssm.base import BackboneBase, DecoderBase, EncoderBase
from distwm.models.modular_rssm.decoders import ConvDecoder, MLPDecoder
from distwm.models.modular_rssm.encoders import ConvEncoder, MLPEncoder, ViTEncoder

__all__ = ["ModularRSSM", "create_modular_rssm", "ENCODER_TYPES", "DECODER_TYPES", "BACKBONE_TYPES"]


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
