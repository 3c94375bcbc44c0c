"""The perceptual (LPIPS) term of IRIS's tokenizer loss, from weights that are already on disk.

LPIPS needs pretrained VGG16 features, which distwm never downloads. :func:`load_perceptual`
takes ``None`` (no perceptual term: said once per process, at the first tokenizer built),
``"lpips"`` (an installed ``lpips`` package with its VGG weights already in torch's cache) or
the path of a full LPIPS state dict (VGG and linear layers, loaded with ``weights_only=True``).
The callable it returns is no ``nn.Module``: the frozen VGG is not part of any checkpoint.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import torch
from torch import Tensor

__all__ = ["load_perceptual"]

log = logging.getLogger(__name__)
_SAID_ABSENT = False


def load_perceptual(weights: str | None, weight: float = 1.0) -> Callable[[Tensor, Tensor], Tensor] | None:
    """``perceptual(x, y)`` (frames in ``[-1, 1]``) -> per-frame distance times ``weight``, or
    ``None`` when ``weights`` is ``None`` (module docstring)."""
    global _SAID_ABSENT
    if weights is None:
        if not _SAID_ABSENT:
            log.warning("IRIS tokenizer: no perceptual_weights given, training without the LPIPS term "
                        "(set perceptual_weights to a local LPIPS state dict or 'lpips')")
            _SAID_ABSENT = True
        return None
    try:
        import lpips
    except ImportError:
        raise ValueError(f"perceptual_weights={weights!r} needs the lpips package (pip install lpips); "
                         "or set perceptual_weights to None to train without the perceptual term") from None
    if weights == "lpips":
        model = lpips.LPIPS(net="vgg", verbose=False)
    else:
        if not os.path.isfile(weights):
            raise ValueError(f"perceptual_weights: no file {weights!r} (a local LPIPS state dict, 'lpips', or None)")
        model = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False)

    def perceptual(x: Tensor, y: Tensor) -> Tensor:
        if next(model.parameters()).device != x.device:
            model.to(x.device)
        return weight * model(x, y).flatten(1).mean(1)

    return perceptual
