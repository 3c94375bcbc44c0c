"""Name normalisation and did-you-mean errors shared by the model and backend catalogs."""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["normalize_name", "unknown_name_error"]


def normalize_name(name: str) -> str:
    """Canonical form of a user-typed name: lower case, ``_`` and spaces become ``-``."""
    if not isinstance(name, str):
        raise ValueError(f"Expected a name (str), got {name!r}")
    return "-".join(name.strip().lower().replace("_", "-").split())


def unknown_name_error(kind: str, name: str, valid: Iterable[str], aliases: Iterable[str] = ()) -> ValueError:
    """``ValueError`` naming the bad value, the valid choices and the closest match."""
    valid = sorted(set(valid))
    candidates = sorted(set(valid) | set(aliases))
    close = difflib.get_close_matches(normalize_name(name) if isinstance(name, str) else str(name),
                                      candidates, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid) or '(none)'}")
