"""Lazy package exports: a name resolves (and its module is imported) on first access."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` exporting ``names`` (name -> module).

    Use at the bottom of a package ``__init__``::

        __getattr__, __dir__ = lazy_exports(__name__, _LAZY)

    A name whose module is missing or fails to import raises ``AttributeError`` that says why.
    """

    def __getattr__(name: str) -> Any:
        module_name = names.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise AttributeError(
                f"{package}.{name} is not available in this installation ({module_name}: {exc})"
            ) from exc
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
