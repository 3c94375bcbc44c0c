"""The modular RSSM's abstract component bases and the argument checks they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["EncoderBase", "DecoderBase", "BackboneBase", "MIN_STD"]

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
