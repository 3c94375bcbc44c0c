"""Genie (Bruce et al. 2024, arXiv:2402.15391): the seed's ``world_models.models.genie`` module
and the family's package.

Modules: :mod:`.genie` (:class:`Genie`, :class:`GeniePlayer`), :mod:`.factory`
(``create_genie*``, :func:`genie_from_config`), :mod:`.latent_action_model`,
:mod:`.dynamics_model` and :mod:`.maskgit`, :mod:`.trainable` (the dataset-trained
:class:`~distwm.agent.Trainable` that Ray Train workers update), :mod:`.report`; the video
tokenizer lives in :mod:`distwm.vision.video_tokenizer`, the space-time transformer in
:mod:`distwm.blocks.st_transformer`. Names load on first access (importing this package
imports no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "genie": ("Genie", "GeniePlayer"),
    "factory": ("create_genie", "create_genie_small", "create_genie_large", "genie_from_config",
                "genie_kwargs"),
    "trainable": ("GenieTrainable",),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
