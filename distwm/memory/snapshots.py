"""Load a saved replay memory without unpickling anything (the seed's ``load_memory``).

distwm's replay memories save :class:`~distwm.memory.replay.SequenceReplay` snapshots:
``ReplayBuffer.save`` / ``SequenceReplay.save`` write ``.npz`` (``np.savez``: arrays plus a JSON
``__meta__`` record) or HDF5 (``.h5`` / ``.hdf5``). :func:`load_memory` reads them with
``np.load(allow_pickle=False)`` / h5py, or a ``torch.save`` of a snapshot's state dict with
``torch.load(weights_only=True)``. A pickle (the seed's ``pickle.dump(memory)`` files, a
``torch.save`` of a memory object) is refused with an error that says so: unpickling can run
arbitrary code, so distwm never does it.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any, Mapping

import numpy as np

from distwm.memory.array_files import META_KEY as _META_KEY
from distwm.memory.array_files import load_arrays
from distwm.memory.replay import SequenceReplay

__all__ = ["load_memory", "snapshot_kind"]

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_OPCODE = 0x80
_REMEDY = ("Save replay memories with ReplayBuffer.save / SequenceReplay.save (.npz or .h5) and "
           "load those")


def snapshot_kind(path: str) -> str:
    """``"hdf5"``, ``"npz"``, ``"torch"`` (a ``torch.save`` zip archive) or ``"pickle"`` (a raw
    pickle stream), from the extension and the first bytes; ``"unknown"`` otherwise."""
    if path.endswith((".h5", ".hdf5")):
        return "hdf5"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "npz"  # load_arrays names the damage
        return "torch" if any(n.endswith("data.pkl") for n in names) else "npz"
    if head[:1] and head[0] == _PICKLE_PROTOCOL_OPCODE:
        return "pickle"
    return "unknown"


def _from_torch_file(path: str) -> dict[str, Any]:
    """A snapshot state dict saved with ``torch.save`` (tensors in place of arrays)."""
    from distwm.utils.checkpoint import CorruptFileError, torch_load_safely

    state = torch_load_safely(path, path, "replay memory", _REMEDY)
    if not isinstance(state, Mapping) or _META_KEY not in state:
        why = f"it holds a {type(state).__name__}, not a replay snapshot's state dict"
        raise CorruptFileError(f"replay memory {path!r} cannot be loaded: {why}. {_REMEDY}", path, why)
    return {k: (v if k == _META_KEY else np.asarray(v.numpy() if hasattr(v, "numpy") else v))
            for k, v in state.items()}


def load_memory(path, device) -> SequenceReplay:
    """Load a replay memory saved by distwm and return it as a
    :class:`~distwm.memory.replay.SequenceReplay` (capacity, chunk length and sequence length as
    saved; every stored step and counter restored).

    ``device`` (a ``torch.device`` or its name) is where the caller moves sampled batches; it is
    checked and kept as ``memory.device`` (the replay itself holds numpy arrays). A pickle file
    raises :class:`~distwm.utils.checkpoint.CorruptFileError` (a ``ValueError``) saying that it is
    never unpickled; a missing file ``FileNotFoundError``.
    """
    import torch

    from distwm.utils.checkpoint import CorruptFileError

    device = torch.device(device)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"replay memory {path!r} does not exist")
    kind = snapshot_kind(path)
    if kind == "pickle":
        why = ("it is a pickle file, which load_memory never unpickles (unpickling can run "
               "arbitrary code)")
        raise CorruptFileError(f"replay memory {path!r} cannot be loaded: {why}. {_REMEDY}", path, why)
    state = _from_torch_file(path) if kind == "torch" else load_arrays(path)[0]
    meta = state[_META_KEY]
    memory = SequenceReplay(int(meta["capacity"]), int(meta["chunk_length"]), int(meta["seq_len"]))
    memory.load_state_dict(state)
    memory.device = device
    return memory
