"""Training helpers of the dataset-trained families (the seed's ``world_models.helpers``):
I-JEPA's :func:`~distwm.helpers.jepa_helper.init_model`,
:func:`~distwm.helpers.jepa_helper.init_opt` and
:func:`~distwm.helpers.jepa_helper.load_checkpoint`. Importing this package imports no module
of it (nor torch)."""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {name: "distwm.helpers.jepa_helper" for name in ("init_model", "init_opt", "load_checkpoint")}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
