"""Import optional simulator packages with an error that names the distwm extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["is_installed", "require"]


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` telling how to install the ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the optional dependency {module.split('.')[0]!r} ({exc}). "
            f"Install it with: pip install distwm[{extra}]"
        ) from exc
