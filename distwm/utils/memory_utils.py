"""Memory savers for training: gradient checkpointing, mixed precision, efficient kernels.

* :func:`apply_gradient_checkpointing` recomputes a fraction of a model's repeated blocks (the
  children of its ``nn.ModuleList`` / ``nn.Sequential`` containers) in the backward pass instead
  of storing their activations (``torch.utils.checkpoint``, non-reentrant). Outputs and
  gradients are those of the plain model (random draws such as dropout are replayed).
* :func:`enable_mixed_precision` runs the model's forward under ``torch.autocast``: bfloat16 on
  the CPU, float16 on CUDA, and returns the ``GradScaler`` to scale the loss with (disabled on
  the CPU, where bfloat16 needs no scaling, so one training loop serves both).
* :func:`optimize_memory_efficient_ops` turns on the flash / memory-efficient attention kernels
  and TF32 matmuls where CUDA exists and returns what it set (nothing on a CPU-only machine).

Both model helpers keep parameter names, the module's class and its checkpoints unchanged: they
set an instance ``forward`` (the class's own is untouched), which calling them again replaces.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from distwm.utils.precision import cpu_has_bf16

__all__ = ["apply_gradient_checkpointing", "enable_mixed_precision", "optimize_memory_efficient_ops",
           "checkpointed_blocks", "MIXED_PRECISION_DTYPES"]

#: the autocast dtype :func:`enable_mixed_precision` uses on each device type
MIXED_PRECISION_DTYPES = {"cpu": torch.bfloat16, "cuda": torch.float16}


class _ForwardWrapper:
    """An instance ``forward`` around the module's own (``inner``); copies and pickles keep it.
    Subclasses define ``__call__``."""

    def __init__(self, inner: Callable):
        self.inner = inner

    def __reduce__(self):
        return (type(self), self._args())

    def _args(self) -> tuple:
        return (self.inner,)


class _CheckpointedForward(_ForwardWrapper):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return self.inner(*args, **kwargs)
        return checkpoint(self.inner, *args, use_reentrant=False, **kwargs)


class _AutocastForward(_ForwardWrapper):
    def __init__(self, inner: Callable, device_type: str, dtype: torch.dtype):
        super().__init__(inner)
        self.device_type = device_type
        self.dtype = dtype

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.inner(*args, **kwargs)

    def _args(self) -> tuple:
        return (self.inner, self.device_type, self.dtype)


def _installed(module: nn.Module, kind: type) -> _ForwardWrapper | None:
    wrapper = module.__dict__.get("forward")
    return wrapper if isinstance(wrapper, kind) else None


def _remove(module: nn.Module, kind: type) -> None:
    """Take the ``kind`` wrapper off ``module.forward`` (wherever it sits in the chain)."""
    outer, current = None, module.__dict__.get("forward")
    while isinstance(current, _ForwardWrapper):
        if isinstance(current, kind):
            if outer is None:
                if isinstance(current.inner, _ForwardWrapper):
                    module.forward = current.inner
                else:
                    del module.forward  # the class's forward again
            else:
                outer.inner = current.inner
            return
        outer, current = current, current.inner


def _install(module: nn.Module, wrapper_type: type, *args: Any) -> None:
    _remove(module, wrapper_type)
    module.forward = wrapper_type(module.forward, *args)


def _repeated_blocks(module: nn.Module) -> list[nn.Module]:
    """Children with parameters of the outermost ``nn.ModuleList`` / ``nn.Sequential``
    containers under ``module`` (``module`` itself included), in order."""
    if isinstance(module, (nn.ModuleList, nn.Sequential)):
        return [child for child in module.children() if next(child.parameters(), None) is not None]
    blocks: list[nn.Module] = []
    for child in module.children():
        blocks.extend(_repeated_blocks(child))
    return blocks


def checkpointed_blocks(model: nn.Module) -> list[nn.Module]:
    """The submodules of ``model`` that :func:`apply_gradient_checkpointing` wrapped."""
    return [m for m in model.modules() if _installed_anywhere(m, _CheckpointedForward)]


def _installed_anywhere(module: nn.Module, kind: type) -> bool:
    current = module.__dict__.get("forward")
    while isinstance(current, _ForwardWrapper):
        if isinstance(current, kind):
            return True
        current = current.inner
    return False


def apply_gradient_checkpointing(model: nn.Module, checkpoint_ratio: float = 0.5) -> nn.Module:
    """Checkpoint ``round(checkpoint_ratio * n)`` of the model's ``n`` repeated blocks; returns
    ``model``.

    The blocks are the children (with parameters) of the outermost ``nn.ModuleList`` /
    ``nn.Sequential`` containers in ``model``; the checkpointed ones are spread evenly over
    them (``0.5``: every other block). A checkpointed block keeps only its inputs in the forward
    pass and recomputes its activations in the backward pass, with the same random draws, so
    outputs and gradients equal the plain model's. Without gradients (``torch.no_grad``,
    inference) the blocks run as usual. Calling it again replaces the previous choice
    (``checkpoint_ratio=0`` removes checkpointing).
    """
    if isinstance(checkpoint_ratio, bool) or not isinstance(checkpoint_ratio, (int, float)) or not (
            0.0 <= checkpoint_ratio <= 1.0):
        raise ValueError(f"checkpoint_ratio must be a number in [0, 1], got {checkpoint_ratio!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"apply_gradient_checkpointing needs an nn.Module, got {type(model).__name__}")
    for module in checkpointed_blocks(model):
        _remove(module, _CheckpointedForward)
    blocks = _repeated_blocks(model)
    if not blocks:
        warnings.warn(f"apply_gradient_checkpointing: {type(model).__name__} has no nn.ModuleList / "
                      "nn.Sequential blocks with parameters; nothing is checkpointed", stacklevel=2)
        return model
    count = min(len(blocks), math.floor(checkpoint_ratio * len(blocks) + 0.5))
    for i in range(count):
        _install(blocks[(i * len(blocks)) // count], _CheckpointedForward)
    return model


def _device_type(model: nn.Module) -> str:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device.type if tensor is not None else "cpu"


def enable_mixed_precision(model: nn.Module, scaler: torch.amp.GradScaler | None = None
                           ) -> torch.amp.GradScaler:
    """Run ``model``'s forward under autocast and return the gradient scaler to train it with.

    The device of the model's parameters picks the precision: bfloat16 on the CPU (a warning
    says when this CPU lacks native bf16 matmuls and emulates them), float16 on CUDA. Returns
    ``scaler`` if given, else a new ``torch.amp.GradScaler`` for the device: enabled on CUDA
    (float16 gradients underflow without scaling), disabled on the CPU (``scale(loss)`` is
    ``loss``, ``step(opt)`` is ``opt.step()``). Move the model to its device first; calling it
    again (e.g. after a move) replaces the autocast setting.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"enable_mixed_precision needs an nn.Module, got {type(model).__name__}")
    device_type = _device_type(model)
    if device_type not in MIXED_PRECISION_DTYPES:
        raise ValueError(f"enable_mixed_precision: the model is on {device_type!r}; valid device "
                         f"types: {sorted(MIXED_PRECISION_DTYPES)}")
    if device_type == "cpu" and not cpu_has_bf16():
        warnings.warn("enable_mixed_precision: this CPU has no native bf16 matmuls (AVX512-BF16 / "
                      "AMX); bfloat16 autocast is emulated and may be slower than float32", stacklevel=2)
    _install(model, _AutocastForward, device_type, MIXED_PRECISION_DTYPES[device_type])
    if scaler is None:
        scaler = torch.amp.GradScaler(device_type, enabled=device_type == "cuda")
    return scaler


def optimize_memory_efficient_ops() -> dict[str, Any]:
    """Enable the flash and memory-efficient attention kernels of
    ``scaled_dot_product_attention`` and TF32 matmuls / convolutions where CUDA is available.

    Returns ``{setting: value}`` for what it set: an empty dict without CUDA (nothing changes on
    a CPU-only machine; float32 CPU matmuls keep their full precision).
    """
    if not torch.cuda.is_available():
        return {}
    torch.backends.cuda.enable_flash_sdp(True)
    torch.backends.cuda.enable_mem_efficient_sdp(True)
    applied: dict[str, Any] = {"flash_sdp": True, "mem_efficient_sdp": True}
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.fp32_precision = "tf32"
        applied.update({"cuda.matmul.fp32_precision": "tf32", "cudnn.fp32_precision": "tf32"})
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        applied.update({"cuda.matmul.allow_tf32": True, "cudnn.allow_tf32": True})
    return applied
