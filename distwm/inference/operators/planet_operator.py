"""Inference operator for PlaNet: turns raw transitions into the tensors the model consumes."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch

from distwm.inference.operators.base import OperatorABC

__all__ = ["PlaNetOperator"]

_KEYS = ("obs", "action", "reward", "done")


def _as_array(value: Any) -> np.ndarray:
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class PlaNetOperator(OperatorABC):
    """Operator for PlaNet model preprocessing: encodes environment states and transitions.

    Args:
        state_dim: size of vector observations.
        action_dim: size of action vectors.

    ``process`` returns batched float32 tensors:

    * ``obs``: a vector ``(state_dim,)`` or batch ``(B, state_dim)`` -> ``(B, state_dim)``;
      an image (PIL, ``(H, W, C)`` array or ``(C, H, W)`` tensor, or a batch of them) ->
      ``(B, C, H, W)`` in PlaNet's ``[-0.5, 0.5]`` range (uint8 and float ``[0, 1]`` inputs);
    * ``action``: ``(action_dim,)`` or ``(B, action_dim)`` -> ``(B, action_dim)``;
    * ``reward``, ``done``: scalars or ``(B,)`` -> ``(B,)`` (done as 0.0 / 1.0).
    """

    def __init__(self, state_dim: int = 32, action_dim: int = 4):
        super().__init__()
        for name, value in (("state_dim", state_dim), ("action_dim", action_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PlaNetOperator: {name} must be a positive int, got {value!r}")
        self.state_dim = state_dim
        self.action_dim = action_dim

    def _observation(self, obs: Any) -> torch.Tensor:
        is_pil = type(obs).__module__.startswith("PIL")
        array = np.asarray(obs) if is_pil else _as_array(obs)
        if array.ndim in (1, 2) and not is_pil:
            if array.shape[-1] != self.state_dim:
                raise ValueError(
                    f"PlaNetOperator: state observation has {array.shape[-1]} values, expected "
                    f"state_dim={self.state_dim}"
                )
            return torch.as_tensor(array, dtype=torch.float32).reshape(-1, self.state_dim)
        if array.ndim == 2:  # a greyscale PIL image
            array = array[:, :, None]
        if array.ndim not in (3, 4):
            raise ValueError(
                f"PlaNetOperator: obs must be a state vector (state_dim={self.state_dim}) or an image, "
                f"got shape {array.shape}"
            )
        channels_first = torch.is_tensor(obs) or (array.shape[-3] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4))
        if not channels_first:
            array = np.moveaxis(array, -1, -3)
        image = torch.as_tensor(np.ascontiguousarray(array))
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        return (image - 0.5).reshape(-1, *image.shape[-3:])

    def _vector(self, name: str, value: Any, size: int) -> torch.Tensor:
        array = _as_array(value).astype(np.float32)
        if array.ndim not in (1, 2) or array.shape[-1] != size:
            raise ValueError(f"PlaNetOperator: {name} must have {size} values per item, got shape {array.shape}")
        return torch.as_tensor(array).reshape(-1, size)

    def process(self, inputs: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Process PlaNet inputs: state observations and actions.

        Expected inputs: ``{'obs': tensor or image, 'action': tensor, 'reward': float,
        'done': bool}`` (any subset, at least one).
        """
        unknown = sorted(set(inputs) - set(_KEYS))
        if unknown or not inputs:
            raise ValueError(
                f"PlaNetOperator.process: unknown or missing inputs {unknown or '(none given)'}; "
                f"valid keys: {', '.join(_KEYS)}"
            )
        out: Dict[str, torch.Tensor] = {}
        if "obs" in inputs:
            out["obs"] = self._observation(inputs["obs"])
        if "action" in inputs:
            out["action"] = self._vector("action", inputs["action"], self.action_dim)
        for key in ("reward", "done"):
            if key in inputs:
                out[key] = torch.as_tensor(_as_array(inputs[key]).astype(np.float32)).reshape(-1)
        return out
