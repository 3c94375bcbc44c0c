"""Inference operator for Dreamer: raw images and actions -> the tensors the agent consumes."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F

from distwm.inference.operators.base import OperatorABC

__all__ = ["DreamerOperator"]


class DreamerOperator(OperatorABC):
    """Operator for Dreamer model preprocessing: normalizes observations and encodes actions.

    Args:
        image_size: side of the square images the encoder takes.
        action_dim: width of the action vectors.

    ``process({"image": ..., "action": ..., "state": ...})`` (``image`` required, the rest
    optional) returns float32 tensors with a leading batch axis:

    * ``image``: a PIL image, an ``(H, W, C)`` / ``(C, H, W)`` array or tensor, or a batch of
      them; uint8 ``[0, 255]`` or float ``[0, 1]`` -> ``(B, C, image_size, image_size)`` in
      Dreamer's ``[-0.5, 0.5]`` range (resized with antialiasing when needed);
    * ``action``: an integer index (one-hot encoded), a vector of ``action_dim`` values, or a
      batch of either -> ``(B, action_dim)``;
    * ``state``: a vector or a batch of vectors -> ``(B, D)``.
    """

    def __init__(self, image_size: int = 64, action_dim: int = 6):
        super().__init__()
        for name, value in (("image_size", image_size), ("action_dim", action_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"DreamerOperator: {name} must be a positive int, got {value!r}")
        self.image_size = image_size
        self.action_dim = action_dim

    def _image(self, image: Any) -> torch.Tensor:
        if torch.is_tensor(image):
            x = image.detach().cpu()
            channels_last = False
        else:
            x = torch.from_numpy(np.array(image))  # a writable copy (PIL arrays are read-only)
            channels_last = x.dim() >= 3 and x.shape[-1] in (1, 3, 4) and x.shape[-3] not in (1, 3, 4)
        if x.dim() == 2:  # greyscale (H, W)
            x, channels_last = x.unsqueeze(0), False
        if x.dim() not in (3, 4):
            raise ValueError(f"DreamerOperator: 'image' must be (H, W, C), (C, H, W) or batched, "
                             f"got shape {tuple(x.shape)}")
        if channels_last:
            x = x.movedim(-1, -3)
        x = x.reshape(-1, *x.shape[-3:])
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x - 0.5

    def _action(self, action: Any) -> torch.Tensor:
        array = action.detach().cpu().numpy() if torch.is_tensor(action) else np.asarray(action)
        if array.dtype.kind in "iu" and array.ndim <= 1 and (array.ndim == 0 or array.shape[0] != self.action_dim):
            index = array.reshape(-1)
            if index.min() < 0 or index.max() >= self.action_dim:
                raise ValueError(f"DreamerOperator: action index {index.tolist()} is not in "
                                 f"[0, {self.action_dim})")
            return F.one_hot(torch.as_tensor(index, dtype=torch.long), self.action_dim).float()
        if array.ndim not in (1, 2) or array.shape[-1] != self.action_dim:
            raise ValueError(f"DreamerOperator: 'action' must have action_dim={self.action_dim} "
                             f"values per item (or be an integer index), got shape {array.shape}")
        return torch.as_tensor(array.astype(np.float32)).reshape(-1, self.action_dim)

    def process(self, inputs: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Process Dreamer inputs: image observation and action (see the class docstring)."""
        if not isinstance(inputs, dict) or "image" not in inputs:
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(f"DreamerOperator.process needs a dict with an 'image' key, got {got}")
        out = {"image": self._image(inputs["image"])}
        if inputs.get("action") is not None:
            out["action"] = self._action(inputs["action"])
        if inputs.get("state") is not None:
            state = torch.as_tensor(np.asarray(inputs["state"], np.float32))
            out["state"] = state.reshape(-1, state.shape[-1])
        return out
