"""Mixed precision shared by the families: bf16 autocast where the hardware computes it natively.

``autocast(value, device_type, field)`` is ``torch.autocast(device_type, torch.bfloat16)`` for
``value == "bf16"`` and a no-op for ``"off"``; ``field`` (e.g. ``"IRISConfig.autocast"``) names
the setting in the error raised for a bad value or a device without native bf16 (a CPU without
AVX512-BF16 / AMX would emulate it, slower than float32).

Two helpers keep autocast's work down where it is overhead rather than arithmetic:

* :func:`scaled_dot_product_attention` is ``F.scaled_dot_product_attention``, except that on a
  CPU under autocast, when a gradient is wanted, it runs in float32 (on the bf16 operands
  autocast would have used, upcast): PyTorch's bf16 flash-attention backward on CPU is 2-5x
  slower than its float32 one at the small sequences of these models, while the forward alone
  is faster in bf16 (no-grad passes keep it);
* :class:`CastWeights` holds the ``nn.Linear`` weights of a module cast to the autocast dtype
  across many autocast regions (autocast casts them again in every region: for one-frame
  generation steps that cast costs as much as the products). The products are the same,
  bit for bit: autocast rounds a float32 weight to bf16 exactly as the held copy was rounded.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AUTOCAST_DTYPES", "CastWeights", "autocast", "check_autocast", "cpu_has_bf16",
           "scaled_dot_product_attention"]

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


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None) -> Tensor:
    """``F.scaled_dot_product_attention``; on a CPU under autocast with a gradient wanted, in
    float32 on the autocast-dtype operands (module docstring); the output is then float32."""
    device = q.device.type
    if device == "cpu" and torch.is_autocast_enabled(device) and torch.is_grad_enabled() \
            and (q.requires_grad or k.requires_grad or v.requires_grad):
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            q, k, v = (t.to(dtype).float() for t in (q, k, v))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                                  is_causal=is_causal, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                          is_causal=is_causal, scale=scale)


class CastWeights:
    """The weights and biases of the ``nn.Linear`` layers of ``modules`` cast once to the
    autocast dtype of ``value`` (``"bf16"``), swapped in for the duration of :meth:`applied` and
    swapped back after; a parameter changed in place since its cast (an optimizer step, a
    ``load_state_dict``: its version counter moved) or replaced is cast again. ``"off"``: no
    copies, :meth:`applied` changes nothing. For inference loops that enter many short
    autocast regions (module docstring); not for training: the copies carry no gradient."""

    def __init__(self, value: str, *modules: nn.Module):
        if value not in AUTOCAST_DTYPES:
            raise ValueError(f"CastWeights: {value!r} is not one of {AUTOCAST_DTYPES}")
        self.dtype = torch.bfloat16 if value == "bf16" else None
        self.layers = [m for module in modules for m in module.modules()
                       if isinstance(m, nn.Linear)] if self.dtype is not None else []
        self._copies: dict[tuple[int, str], tuple[Tensor, int, Tensor]] = {}

    def _cast(self, layer: nn.Module, name: str, param: Tensor) -> Tensor:
        key = (id(layer), name)
        held = self._copies.get(key)
        if held is None or held[0] is not param or held[1] != param._version:
            held = (param, param._version, param.detach().to(self.dtype))
            self._copies[key] = held
        return held[2]

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The layers read the cast copies inside the block (float32 parameters after)."""
        swapped = []
        try:
            for layer in self.layers:
                for name in ("weight", "bias"):
                    param = layer._parameters.get(name)
                    if param is not None and param.dtype == torch.float32:
                        layer._parameters[name] = self._cast(layer, name, param)
                        swapped.append((layer, name, param))
            yield
        finally:
            for layer, name, param in swapped:
                layer._parameters[name] = param
