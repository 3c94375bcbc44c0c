"""Learner checkpoints of a run: ``<run_dir>/checkpoints/ckpt-<updates>/learner.pt``.

``learner.pt`` holds the agent state and the run's counters (loaded with
``weights_only=True``); ``checkpoints/latest`` names the newest complete one. The run directory
may be a path or a URI (:mod:`distwm.utils.storage`). Replay is not in a checkpoint: each shard
keeps its own snapshot and log under ``<run_dir>/replay`` (:mod:`distwm.runtime.replay_store`),
so a checkpoint is small and quick to write.
"""

from __future__ import annotations

import io
import re
from typing import Any, Mapping

from distwm.utils import storage

__all__ = ["CHECKPOINT_FILE", "LATEST", "latest_checkpoint", "load_checkpoint",
           "write_checkpoint", "replay_dir", "counters_file"]

CHECKPOINT_FILE = "learner.pt"
LATEST = "latest"
_NAME = re.compile(r"^ckpt-\d+$")


def replay_dir(run_dir: str) -> str:
    """Where the replay shards keep their snapshots and logs."""
    return storage.join(run_dir, "replay")


def counters_file(run_dir: str) -> str:
    """The driver's counters, rewritten at every progress line (for ``--resume`` after the
    driver itself died)."""
    return storage.join(run_dir, "counters.json")


def latest_checkpoint(run_dir: str) -> str | None:
    """The newest complete checkpoint directory of a run, or ``None``."""
    root = storage.join(run_dir, "checkpoints")
    try:
        name = storage.read_text(storage.join(root, LATEST)).strip()
    except FileNotFoundError:
        return None
    path = storage.join(root, name)
    return path if storage.is_file(storage.join(path, CHECKPOINT_FILE)) else None


_KEYS = ("agent", "updates", "version")


def _remedy(path: str) -> str:
    """What to do about an unreadable checkpoint directory ``path``: the older ones beside it."""
    root, _, name = path.rstrip("/").rpartition("/")
    try:
        older = sorted(d for d in storage.listdir(root) if _NAME.match(d) and d < name)
    except (FileNotFoundError, OSError):
        older = []
    run_dir = root.rpartition("/")[0]
    if older:
        return (f"Delete {path} and resume from an older checkpoint: write {older[-1]!r} into "
                f"{storage.join(root, LATEST)} (checkpoints here: {', '.join(older)}), then "
                f"`distwm train --resume {run_dir}`; or start a new run with another --run-dir.")
    return (f"No older checkpoint is kept in {root}: delete {path} and {storage.join(root, LATEST)} "
            f"to resume {run_dir} with its replay but untrained networks, or start a new run "
            "with another --run-dir.")


def load_checkpoint(path: str) -> dict[str, Any]:
    """``learner.pt`` of a checkpoint directory (``weights_only=True``).

    An unreadable or incomplete file raises :class:`~distwm.utils.checkpoint.CorruptFileError`
    (a ``ValueError``) that names it and the older checkpoints to resume from instead.
    """
    from distwm.utils.checkpoint import CorruptFileError, torch_load_safely

    file = storage.join(path, CHECKPOINT_FILE)
    data = storage.read_bytes(file)
    state = torch_load_safely(io.BytesIO(data), file, "learner checkpoint", _remedy(path))
    missing = [k for k in _KEYS if not isinstance(state, Mapping) or k not in state]
    if missing:
        found = sorted(map(str, state))[:8] if isinstance(state, Mapping) else type(state).__name__
        raise CorruptFileError(f"learner checkpoint {file!r} is not a distwm runtime checkpoint "
                               f"(missing {missing}; found {found}). {_remedy(path)}")
    return state


def write_checkpoint(run_dir: str, name: str, state: Mapping[str, Any], keep: int = 2) -> str:
    """Write ``checkpoints/<name>/learner.pt`` atomically, point ``latest`` at it, and keep the
    newest ``keep`` checkpoints. Returns the checkpoint directory."""
    import torch

    root = storage.join(run_dir, "checkpoints")
    final = storage.join(root, name)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    storage.write_bytes(storage.join(final, CHECKPOINT_FILE), buffer.getvalue())
    storage.write_text(storage.join(root, LATEST), name)
    done = [d for d in storage.listdir(root) if _NAME.match(d)]
    for old in done[:-keep]:
        storage.delete_dir(storage.join(root, old))
    return final
