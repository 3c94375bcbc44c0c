"""Inference operators: turn raw observations/actions into model inputs and back."""

from __future__ import annotations

from typing import Any

from distwm._lazy import lazy_exports
from distwm._names import normalize_name, unknown_name_error

_LAZY = {
    "JEPAOperator": "distwm.inference.operators.jepa_operator",
    "OperatorABC": "distwm.inference.operators.base",
    "DreamerOperator": "distwm.inference.operators.dreamer_operator",
    "IrisOperator": "distwm.inference.operators.iris_operator",
    "PlaNetOperator": "distwm.inference.operators.planet_operator",
}

#: operator name -> class name in ``_LAZY``
OPERATORS = {"dreamer": "DreamerOperator", "iris": "IrisOperator", "jepa": "JEPAOperator",
             "planet": "PlaNetOperator"}

__all__ = ["get_operator", "OPERATORS", *sorted(_LAZY)]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


def get_operator(name: str, **kwargs: Any):
    """Build the inference operator for a model family, e.g. ``get_operator("dreamer", image_size=64, action_dim=6)``."""
    key = normalize_name(name)
    if key not in OPERATORS:
        raise unknown_name_error("operator", name, OPERATORS)
    return __getattr__(OPERATORS[key])(**kwargs)
