"""The one checkpoint format of every model family.

A family's ``state_dict()`` is a dict of plain types and CPU tensors with two entries every
family has::

    {"format": "distwm.<family>/<version>",      # what wrote it, bumped when the layout changes
     "architecture": {...},                      # config fields and shapes that decide parameter shapes
     ...}                                        # the family's networks, optimisers, counters

:func:`check_state` checks both before anything is loaded and names every mismatch;
:func:`save_file` writes a state atomically and :func:`load_file` reads it back with
``torch.load(..., weights_only=True)`` (no pickled code), with errors that name the file.

A file may also hold a wrapper around an agent state, ``{"agent": <state>, ...}`` (the runtime
learner's ``learner.pt``, the single-process trainers' checkpoints): :func:`agent_state` finds
the agent state in either form. This module imports torch only inside the functions that read
or write files.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

__all__ = ["checkpoint_format", "make_state", "agent_state", "check_state", "cpu_state",
           "save_file", "load_file", "restore_file", "CorruptFileError", "describe_load_error",
           "torch_load_safely"]


class CorruptFileError(ValueError):
    """A checkpoint or snapshot that cannot be read (truncated, overwritten, not written by
    distwm, or holding objects that distwm never unpickles). The message names the file and
    says what to do; it never suggests loading the file unsafely. ``path`` is the file and
    ``reason`` what is wrong with it (without the advice), for callers that know a better
    remedy."""

    def __init__(self, message: str, path: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path, self.reason = path, reason


def describe_load_error(exc: BaseException) -> str:
    """What went wrong in a failed ``torch.load`` / ``np.load`` / ``h5py.File``, in words that
    never pass on the libraries' advice to load the file unsafely (their messages suggest
    ``weights_only=False`` or ``allow_pickle=True``, which would run code from the file)."""
    import pickle
    import zipfile

    text = str(exc).lower()
    if isinstance(exc, pickle.UnpicklingError) or "weights only" in text or "allow_pickle" in text \
            or "pickled" in text or "object arrays" in text:
        return ("it holds Python objects besides tensors, arrays and plain types, which distwm "
                "never loads (they could run code)")
    if isinstance(exc, (EOFError, zipfile.BadZipFile)) or "zip archive" in text or "central directory" in text \
            or "truncated" in text or "crc" in text:
        return "it is truncated or damaged (not a complete archive)"
    if isinstance(exc, OSError) and ("signature" in text or "unable to open" in text):
        return "it is not a readable HDF5 file (truncated or damaged)"
    return f"it is damaged or of another format ({type(exc).__name__} while reading it)"


def torch_load_safely(source, path: str, what: str, remedy: str):
    """``torch.load(source, map_location="cpu", weights_only=True)``; any failure raises
    :class:`CorruptFileError` naming ``path`` (``what``, e.g. ``"Dreamer checkpoint"``) and
    saying ``remedy``."""
    import torch

    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, EOF and key errors all mean the file is unusable
        reason = describe_load_error(exc)
        # from None: chained, torch's own message (which advises weights_only=False) would be
        # printed with every traceback of this error
        raise CorruptFileError(f"{what} {path!r} cannot be read: {reason}. {remedy}",
                               path, reason) from None


def checkpoint_format(family: str, version: int) -> str:
    """``"distwm.<family>/<version>"``."""
    if not family or not isinstance(version, int) or version < 1:
        raise ValueError(f"checkpoint_format needs a family name and a version >= 1, got {family!r}, {version!r}")
    return f"distwm.{family}/{version}"


def make_state(format: str, architecture: Mapping[str, Any], **entries: Any) -> dict[str, Any]:
    """A state dict in the one format: ``format``, ``architecture`` and the family's entries."""
    return {"format": format, "architecture": dict(architecture), **entries}


def cpu_state(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A module's ``state_dict()`` with every tensor detached and on the CPU."""
    return {k: v.detach().cpu() for k, v in state_dict.items()}


def agent_state(state: Any) -> Any:
    """The agent state of a file: ``state["agent"]`` of a wrapper, else ``state`` itself."""
    if isinstance(state, Mapping) and "format" not in state and isinstance(state.get("agent"), Mapping):
        return state["agent"]
    return state


def _mismatches(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    return [k for k in expected if found.get(k) != expected[k]]


def check_state(state: Any, expected_format: str, architecture: Mapping[str, Any], what: str,
                required: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` unless ``state`` is a ``what`` state in ``expected_format`` whose
    ``architecture`` equals ``architecture`` and which has every key of ``required``.

    The errors say what is wrong: the format found, the missing keys, or every architecture
    field that differs as ``field: checkpoint <value> vs agent <value>``.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"not a {what} state dict: got {type(state).__name__}")
    found = state.get("format")
    if found is not None and found != expected_format:
        raise ValueError(f"not a {what} checkpoint (format {found!r}, expected {expected_format!r})")
    missing = [k for k in ("format", "architecture", *required) if k not in state]
    if missing:
        raise ValueError(f"{what} state dict is incomplete: missing {missing} "
                         f"(keys found: {sorted(map(str, state))[:8]})")
    theirs = dict(state["architecture"])
    diff = _mismatches(theirs, architecture)
    if diff:
        fields = "; ".join(f"{k}: checkpoint {theirs.get(k)!r} vs agent {architecture[k]!r}" for k in diff)
        had = ", ".join(f"{k}={theirs.get(k)!r}" for k in diff)
        has = ", ".join(f"{k}={architecture[k]!r}" for k in diff)
        raise ValueError(f"{what} checkpoint does not match this agent's architecture: {fields} "
                         f"(the checkpoint has {had} but this {what} has {has})")


def save_file(state: Mapping[str, Any], path) -> str:
    """``torch.save(state)`` to ``path`` atomically (a temporary file, then ``os.replace``);
    creates the directory; returns the path."""
    import torch

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_file(path, expected_format: str | None, what: str) -> dict[str, Any]:
    """Read a file written by :func:`save_file` with ``torch.load(..., weights_only=True)``.

    A missing file raises ``FileNotFoundError``, an unreadable one :class:`CorruptFileError` (a
    ``ValueError``: corrupt or not a torch checkpoint; it says what to do); with ``expected_format``, a file whose agent state (see
    :func:`agent_state`) has another format raises ``ValueError``. Errors name the file.
    Returns the file's dict as stored (a wrapper stays a wrapper).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} checkpoint {path!r} does not exist")
    state = torch_load_safely(
        path, path, f"{what} checkpoint",
        "It is corrupt or not a torch checkpoint: delete it and restore from an older "
        "checkpoint (or a copy of this one), or train from scratch without it.")
    if not isinstance(state, Mapping):
        raise ValueError(f"{path!r} is not a {what} checkpoint (it holds a {type(state).__name__})")
    inner = agent_state(state)
    if expected_format is not None and inner.get("format") != expected_format:
        raise ValueError(f"{path!r} is not a {what} checkpoint (format {inner.get('format')!r}, "
                         f"expected {expected_format!r}; keys {sorted(map(str, inner))[:8]})")
    return dict(state)


def restore_file(path, expected_format: str, what: str, load_state_dict) -> dict[str, Any]:
    """:func:`load_file`, then ``load_state_dict(agent state)``; a ``ValueError`` it raises is
    re-raised naming the file. Returns the file's dict (a wrapper's other entries with it)."""
    state = load_file(path, expected_format, what)
    try:
        load_state_dict(agent_state(state))
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)!r}: {exc}") from exc
    return state
