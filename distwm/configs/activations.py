"""The activation names every distwm network accepts (torch-free, so configs can validate).

``distwm.blocks.layers.activation_module`` maps each name to a fresh ``nn.Module``.
"""

from __future__ import annotations

__all__ = ["ACTIVATION_NAMES", "check_activation"]

ACTIVATION_NAMES = ("relu", "elu", "gelu", "silu", "swish", "tanh", "leaky_relu", "sigmoid",
                    "softplus", "mish")


def check_activation(owner: str, value) -> None:
    """Raise ``ValueError`` naming ``owner`` (e.g. ``"DreamerConfig.activation"``), the bad value
    and the valid names unless ``value`` is one of :data:`ACTIVATION_NAMES` (any case)."""
    if not isinstance(value, str) or value.lower() not in ACTIVATION_NAMES:
        raise ValueError(f"{owner} {value!r} is not one of {', '.join(ACTIVATION_NAMES)}")
