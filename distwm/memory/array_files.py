"""Named numpy arrays plus a JSON record in one ``.npz`` or HDF5 file: how replay snapshots are
stored. Writes go through a temp file and ``os.replace``; reads never unpickle."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

__all__ = ["META_KEY", "load_arrays", "save_arrays"]

META_KEY = "__meta__"


def _is_hdf5(path: str) -> bool:
    return path.endswith((".h5", ".hdf5"))


def save_arrays(path: str | os.PathLike, state: Mapping[str, Any],
                extra: Mapping[str, Any] | None = None) -> str:
    """Write ``{name: array, __meta__: json-able}`` to ``.npz`` or HDF5 via a temp file."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = json.dumps({"meta": state[META_KEY], "extra": dict(extra or {})})
    arrays = {k: np.asarray(v) for k, v in state.items() if k != META_KEY}
    tmp = path + ".tmp"
    if _is_hdf5(path):
        import h5py

        with h5py.File(tmp, "w") as f:
            f.attrs[META_KEY] = meta
            for key, arr in arrays.items():
                f.create_dataset(key, data=arr)
    else:
        with open(tmp, "wb") as f:
            np.savez(f, **{k.replace("/", "|"): v for k, v in arrays.items()},
                     **{META_KEY: np.array(meta)})
    os.replace(tmp, path)
    return path


def load_arrays(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read what :func:`save_arrays` wrote: ``(state, extra)``. Nothing is unpickled; a missing
    file raises ``FileNotFoundError``, an unreadable one
    :class:`~distwm.utils.checkpoint.CorruptFileError` (a ``ValueError``) naming the file."""
    from distwm.utils.checkpoint import CorruptFileError, describe_load_error

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"replay snapshot {path!r} does not exist")
    try:
        if _is_hdf5(path):
            import h5py

            with h5py.File(path, "r") as f:
                meta = json.loads(f.attrs[META_KEY])
                state: dict[str, Any] = {}
                f.visititems(lambda name, obj: state.__setitem__(name, obj[()])
                             if isinstance(obj, h5py.Dataset) else None)
        else:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f[META_KEY]))
                state = {k.replace("|", "/"): f[k] for k in f.files if k != META_KEY}
        state[META_KEY] = meta["meta"]
        return state, meta["extra"]
    except Exception as exc:  # zip, CRC, JSON, key and HDF5 errors all mean an unusable file
        why = (f"it lacks the {META_KEY!r} record of a distwm replay snapshot"
               if isinstance(exc, (KeyError, TypeError)) else
               "its metadata is not valid JSON" if isinstance(exc, json.JSONDecodeError)
               else describe_load_error(exc))
        raise CorruptFileError(  # from None: numpy's message talks of allow_pickle
            f"replay snapshot {path!r} cannot be read: {why}. Delete it (its steps are lost) "
            "or put back an intact copy of it", path, why) from None
