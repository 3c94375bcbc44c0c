"""Env spaces to Dreamer's observation shapes and action width, and the device choice."""

from __future__ import annotations

import torch

__all__ = ["spaces_to_shapes", "resolve_device"]


def spaces_to_shapes(observation_space, action_space) -> tuple[dict[str, tuple], int, bool]:
    """``(obs_shapes, action_size, discrete)`` from gymnasium spaces.

    Observations: a ``Dict`` with ``image`` and/or ``state`` (other keys are ignored), or a
    single ``Box`` (3-D: image, 1-D: state). Actions: ``Discrete`` or a ``Box`` of action
    vectors; a ``Box`` is one-hot discrete when the env marks it (``space.discrete_actions``
    or ``space.n``, as distwm's one-hot wrapper does).
    """
    from gymnasium import spaces

    if isinstance(observation_space, spaces.Dict):
        shapes = {k: tuple(observation_space[k].shape) for k in ("image", "state")
                  if k in observation_space.spaces}
    elif isinstance(observation_space, spaces.Box):
        shape = tuple(observation_space.shape)
        if len(shape) not in (1, 3):
            raise ValueError(f"observation Box must be (C, H, W) or (D,), got shape {shape}")
        shapes = {"image" if len(shape) == 3 else "state": shape}
    else:
        raise ValueError(
            f"Dreamer needs a Dict (image/state) or Box observation space, got {observation_space}"
        )
    if not shapes:
        raise ValueError(f"observation space has neither 'image' nor 'state': {observation_space}")
    if isinstance(action_space, spaces.Discrete):
        return shapes, int(action_space.n), True
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        discrete = bool(getattr(action_space, "discrete_actions", False) or hasattr(action_space, "n"))
        return shapes, int(action_space.shape[0]), discrete
    raise ValueError(f"Dreamer needs a Discrete or 1-D Box action space, got {action_space}")


def resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
