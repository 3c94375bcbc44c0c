"""Mixed precision shared by the families: bf16 autocast where the hardware computes it natively.

``autocast(value, device_type, field)`` is ``torch.autocast(device_type, torch.bfloat16)`` for
``value == "bf16"`` and a no-op for ``"off"``; ``field`` (e.g. ``"IRISConfig.autocast"``) names
the setting in the error raised for a bad value or a device without native bf16 (a CPU without
AVX512-BF16 / AMX would emulate it, slower than float32).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["AUTOCAST_DTYPES", "cpu_has_bf16", "check_autocast", "autocast"]

#: values of the families' ``autocast`` settings
AUTOCAST_DTYPES = ("off", "bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (oneDNN: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_autocast(value: str, device_type: str, field: str) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``value`` is valid on ``device_type``."""
    if value not in AUTOCAST_DTYPES:
        raise ValueError(f"{field} {value!r} is not one of {AUTOCAST_DTYPES}")
    if value == "off" or device_type == "cuda" or (device_type == "cpu" and cpu_has_bf16()):
        return
    raise ValueError(f"{field}={value!r} needs a CUDA device or a CPU with native bf16 matmuls "
                     f"(AVX512-BF16 / AMX); on this {device_type} the valid choices are ('off',)")


def autocast(value: str, device_type: str, field: str):
    """The autocast context for ``value`` (module docstring)."""
    check_autocast(value, device_type, field)
    if value == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)
