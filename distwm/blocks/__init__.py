"""Neural-network building blocks shared by several model families (torch, imported on use).

The seed's package-level names load on first access: the space-time transformer
(``STTransformer``, ``STSpatialAttention``, ``STTemporalAttention``, ``STBlock`` =
``STTransformerBlock``), ``MultiHeadSelfAttention`` (alias ``MultiHeadAttention``), ``RMSNorm``
and ``AdaLNNormalization``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"STTransformer": ("st_transformer", "STTransformer"),
         "STSpatialAttention": ("st_transformer", "STSpatialAttention"),
         "STTemporalAttention": ("st_transformer", "STTemporalAttention"),
         "STTransformerBlock": ("st_transformer", "STTransformerBlock"),
         "STBlock": ("st_transformer", "STTransformerBlock"),
         "MultiHeadSelfAttention": ("mhsa", "MultiHeadSelfAttention"),
         "MultiHeadAttention": ("mhsa", "MultiHeadSelfAttention"),
         "RMSNorm": ("normalization", "RMSNorm"),
         "AdaLNNormalization": ("normalization", "AdaLNNormalization")}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
