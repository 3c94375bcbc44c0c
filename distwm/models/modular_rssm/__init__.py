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

from distwm.blocks.mhsa import TransformerBlock
from distwm.models.modular_rssm.backbones import GRUBackbone, LSTMBackbone, TransformerBackbone
from distwm.models.modular_rssm.base import BackboneBase, DecoderBase, EncoderBase
from distwm.models.modular_rssm.decoders import ConvDecoder, MLPDecoder
from distwm.models.modular_rssm.encoders import ConvEncoder, MLPEncoder, ViTEncoder
from distwm.models.modular_rssm.model import (
    BACKBONE_TYPES,
    DECODER_TYPES,
    ENCODER_TYPES,
    ModularRSSM,
    create_modular_rssm,
)

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
