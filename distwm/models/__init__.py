"""World-model families, one module (or package) each; imported lazily.

The names come from :data:`distwm._exports.MODELS_EXPORTS` (a family adds them there).
"""

from __future__ import annotations

from distwm._exports import MODELS_EXPORTS as _LAZY
from distwm._lazy import lazy_exports

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
