"""Inference operators (see :mod:`distwm.inference.operators`)."""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    "get_operator": "distwm.inference.operators",
    "OperatorABC": "distwm.inference.operators.base",
    "DreamerOperator": "distwm.inference.operators.dreamer_operator",
    "PlaNetOperator": "distwm.inference.operators.planet_operator",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
