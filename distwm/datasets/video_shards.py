"""Collected datasets on disk: sharded HDF5 files of one transition stream plus a manifest.

An env stream (DESIGN.md "Data") is written time-major, one HDF5 dataset per key:

=============== ================== ===================================================
key             shape, dtype       meaning
=============== ================== ===================================================
``image``       (T, C, H, W) uint8 the frame observed at this step
``action``      (T, A) float32     the action that led to this frame (one-hot for
                                   discrete actions; zero at ``is_first``)
``reward``      (T,) float32       the reward that came with this frame
``is_first``    (T,) bool          the first step of an episode
``is_terminal`` (T,) bool          the MDP ended here
``is_last``     (T,) bool          the episode ended here (terminal or truncated)
=============== ================== ===================================================

:class:`ShardWriter` writes ``<directory>/<prefix>-<index:05d>.h5`` files of ``steps_per_shard``
steps each (the last one shorter); a file is written as ``<name>.partial`` and renamed when
complete, so a crashed writer never leaves a file that looks whole. :func:`write_manifest`
records the files of one or more writers in ``manifest.json``; :func:`read_manifest` checks it;
:func:`assign_files` gives each data-parallel rank its files; :class:`ClipDataset` reads
fixed-length clips that never cross an episode start nor a file.

Nothing here imports torch (the Ray driver uses this module), and h5py is imported only where
a file is opened. Files are read through :class:`H5FileCache`: one read-only handle per file and
process, opened on first use, so a dataset built in one process is safe to use in forked
DataLoader workers or to send to Ray workers.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "FORMAT", "VERSION", "MANIFEST_NAME", "STREAM_KEYS",
    "ShardWriter", "write_manifest", "read_manifest", "assign_files", "ClipDataset",
    "H5FileCache", "validate_chunk",
]

FORMAT = "distwm-stream-shards"
VERSION = 1
MANIFEST_NAME = "manifest.json"
#: the keys of a stream chunk, in file order
STREAM_KEYS = ("image", "action", "reward", "is_first", "is_terminal", "is_last")
_FLAG_KEYS = ("is_first", "is_terminal", "is_last")
_NDIM = {"image": 4, "action": 2, "reward": 1, "is_first": 1, "is_terminal": 1, "is_last": 1}
_SHAPE_TEXT = {"image": "(T, C, H, W)", "action": "(T, A)", "reward": "(T,)"}
_MANIFEST_FIELDS = ("format", "version", "shards", "steps", "episodes")
_COMPRESSIONS = (None, "gzip", "lzf")
_CHUNK_STEPS = 32  # HDF5 chunk length along time: a 16-step clip touches one or two chunks
_CHUNK_CACHE_BYTES = 8 << 20  # per dataset and handle: holds a few image chunks of 32 frames


def _h5py():
    import h5py

    return h5py


def positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


# -- chunks -----------------------------------------------------------------------------------

def validate_chunk(chunk: Mapping[str, Any], expected: Mapping[str, tuple] | None = None) -> dict[str, np.ndarray]:
    """``chunk`` as arrays of the stream's dtypes, or ``ValueError`` saying what is wrong.

    ``image`` must be uint8 ``(T, C, H, W)``; ``action`` a float ``(T, A)`` and ``reward`` a real
    ``(T,)`` (both stored as float32); the flags bool ``(T,)``; all of one length T.
    ``expected`` (key -> per-step shape) is what earlier chunks of the stream had.
    """
    if not isinstance(chunk, Mapping):
        raise ValueError(f"a stream chunk must be a mapping of {', '.join(STREAM_KEYS)}, "
                         f"got {type(chunk).__name__}")
    missing = [k for k in STREAM_KEYS if k not in chunk]
    unknown = sorted(set(chunk) - set(STREAM_KEYS))
    if missing or unknown:
        raise ValueError(f"a stream chunk has the keys {', '.join(STREAM_KEYS)}; "
                         f"missing: {missing or 'none'}, unknown: {unknown or 'none'}")
    out: dict[str, np.ndarray] = {}
    for key in STREAM_KEYS:
        array = np.asarray(chunk[key])
        if array.ndim != _NDIM[key]:
            shape = _SHAPE_TEXT.get(key, "(T,)")
            raise ValueError(f"chunk[{key!r}] must be {_NDIM[key]}-D {shape}, got shape {array.shape}")
        if key == "image" and array.dtype != np.uint8:
            raise ValueError(f"chunk['image'] must be uint8 pixels, got {array.dtype}")
        if key == "action" and not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"chunk['action'] must be float (one-hot for discrete actions), got {array.dtype}")
        if key == "reward" and (array.dtype == bool or not np.issubdtype(array.dtype, np.number)
                                or np.issubdtype(array.dtype, np.complexfloating)):
            raise ValueError(f"chunk['reward'] must be real numbers, got {array.dtype}")
        if key in _FLAG_KEYS and array.dtype != bool:
            raise ValueError(f"chunk[{key!r}] must be bool, got {array.dtype}")
        out[key] = array.astype(np.float32, copy=False) if key in ("action", "reward") else array
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the arrays of a stream chunk must have one length, got {lengths}")
    for key, shape in (expected or {}).items():
        if out[key].shape[1:] != tuple(shape):
            raise ValueError(f"chunk[{key!r}] has per-step shape {out[key].shape[1:]}, but earlier "
                             f"chunks of this stream had {tuple(shape)}")
    return out


# -- writing ----------------------------------------------------------------------------------

class ShardWriter:
    """Writes consecutive chunks of one stream as ``<prefix>-<index:05d>.h5`` files under
    ``directory``, each holding ``steps_per_shard`` steps (the last one fewer). A file of that
    name that already exists is never overwritten (``FileExistsError``). ``close()`` (or leaving
    the ``with`` block) finishes the last file and returns ``[{"file", "steps", "episodes"}]``,
    ``episodes`` counting the episode starts (``is_first``) in each file."""

    def __init__(self, directory, prefix: str, *, steps_per_shard: int = 10_000,
                 compression: str | None = "gzip"):
        if not isinstance(prefix, str) or not prefix or "/" in prefix or os.sep in prefix:
            raise ValueError(f"ShardWriter prefix must be a non-empty file name prefix without "
                             f"path separators, got {prefix!r}")
        if compression not in _COMPRESSIONS:
            raise ValueError(f"ShardWriter compression {compression!r} is not one of {_COMPRESSIONS}")
        self.directory = pathlib.Path(directory)
        self.prefix = prefix
        self.steps_per_shard = positive_int("ShardWriter steps_per_shard", steps_per_shard)
        self.compression = compression
        self._shapes: dict[str, tuple] | None = None  # per-step shapes of the stream
        self._file = None
        self._file_steps = 0
        self._file_episodes = 0
        self._shards: list[dict] = []
        self._closed = False

    def _path(self, index: int) -> pathlib.Path:
        return self.directory / f"{self.prefix}-{index:05d}.h5"

    def _open_next(self) -> None:
        path = self._path(len(self._shards))
        if path.exists():
            raise FileExistsError(f"shard {path} already exists; write to an empty directory "
                                  f"or use another prefix")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = _h5py().File(f"{path}.partial", "w")
        self._file.attrs["format"] = FORMAT
        self._file.attrs["version"] = VERSION
        for key in STREAM_KEYS:
            shape = self._shapes[key]
            dtype = np.uint8 if key == "image" else bool if key in _FLAG_KEYS else np.float32
            self._file.create_dataset(
                key, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                chunks=(min(self.steps_per_shard, _CHUNK_STEPS), *shape),
                compression=self.compression)
        self._file_steps = self._file_episodes = 0

    def _finish_file(self) -> None:
        partial = self._file.filename
        self._file.close()
        self._file = None
        path = self._path(len(self._shards))
        os.replace(partial, path)
        self._shards.append({"file": path.name, "steps": self._file_steps,
                             "episodes": self._file_episodes})

    def add_chunk(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Append the next chunk of the stream (see :func:`validate_chunk`)."""
        if self._closed:
            raise ValueError(f"ShardWriter({str(self.directory)!r}, {self.prefix!r}) is closed")
        arrays = validate_chunk(chunk, self._shapes)
        if self._shapes is None:
            self._shapes = {k: v.shape[1:] for k, v in arrays.items()}
        total, done = len(arrays["image"]), 0
        while done < total:
            if self._file is None:
                self._open_next()
            take = min(self.steps_per_shard - self._file_steps, total - done)
            start = self._file_steps
            for key, array in arrays.items():
                dataset = self._file[key]
                dataset.resize(start + take, axis=0)
                dataset[start:start + take] = array[done:done + take]
            self._file_episodes += int(arrays["is_first"][done:done + take].sum())
            self._file_steps += take
            done += take
            if self._file_steps == self.steps_per_shard:
                self._finish_file()

    def close(self) -> list[dict]:
        """Finish the last file; the shards written, in order (again on a second call)."""
        if not self._closed:
            if self._file is not None:
                self._finish_file()
            self._closed = True
        return [dict(s) for s in self._shards]

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the manifest -----------------------------------------------------------------------------

def _check_shards(shards: Any, where: str) -> list[dict]:
    if not isinstance(shards, (list, tuple)):
        raise ValueError(f"{where}: 'shards' must be a list of {{'file', 'steps', 'episodes'}}, got {shards!r}")
    out, seen = [], set()
    for i, shard in enumerate(shards):
        if not isinstance(shard, Mapping) or not isinstance(shard.get("file"), str) or any(
                isinstance(shard.get(k), bool) or not isinstance(shard.get(k), int) or shard[k] < 0
                for k in ("steps", "episodes")):
            raise ValueError(f"{where}: shard {i} must be {{'file': str, 'steps': int >= 0, "
                             f"'episodes': int >= 0}}, got {shard!r}")
        if shard["file"] in seen:
            raise ValueError(f"{where}: shard file {shard['file']!r} is listed twice")
        seen.add(shard["file"])
        out.append(dict(shard))
    return out


def write_manifest(directory, shards: Sequence[Mapping], meta: Mapping) -> pathlib.Path:
    """Write ``<directory>/manifest.json``: ``{"format", "version", "shards", "steps",
    "episodes", **meta}`` (``steps`` / ``episodes`` summed over ``shards``). ``meta`` describes
    the collection: ``env``, ``frame_shape`` ``[C, H, W]``, ``action_dim``, ``policy``,
    ``workers``, ``seed``. Written to a temporary file and renamed, so readers never see half a
    manifest. Returns its path."""
    path = pathlib.Path(directory) / MANIFEST_NAME
    if not isinstance(meta, Mapping):
        raise ValueError(f"write_manifest: meta must be a mapping, got {type(meta).__name__}")
    shards = _check_shards(list(shards), f"write_manifest({str(path)!r})")
    reserved = sorted(set(meta) & set(_MANIFEST_FIELDS))
    if reserved:
        raise ValueError(f"write_manifest: meta may not set {reserved}; those fields are computed")
    manifest = {"format": FORMAT, "version": VERSION, "shards": shards,
                "steps": sum(s["steps"] for s in shards),
                "episodes": sum(s["episodes"] for s in shards), **meta}
    try:
        text = json.dumps(manifest, indent=2)
    except TypeError as exc:
        raise ValueError(f"write_manifest: meta must be JSON-serialisable ({exc})") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{MANIFEST_NAME}.partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def read_manifest(directory) -> dict:
    """The manifest of a shard directory (or the path of its ``manifest.json``), checked:
    ``ValueError`` when it is missing, not JSON, not a distwm stream manifest or newer than this
    distwm reads."""
    path = pathlib.Path(directory)
    if path.name != MANIFEST_NAME or path.is_dir():
        path = path / MANIFEST_NAME
    expected = f"a {FORMAT!r} manifest of version <= {VERSION}"
    if not path.is_file():
        raise ValueError(f"no shard manifest at {path}: expected {expected} (written by "
                         f"distwm.datasets.video_shards.write_manifest)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); expected {expected}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path} is not a distwm stream manifest (format {found!r}); expected {expected}")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path} has an invalid version {version!r}; expected {expected}")
    if version > VERSION:
        raise ValueError(f"{path} is version {version}, newer than this distwm reads (expected "
                         f"{expected}); upgrade distwm to read it")
    manifest["shards"] = _check_shards(manifest.get("shards"), str(path))
    return manifest


def assign_files(manifest: Mapping, rank: int, world_size: int) -> list[str]:
    """The shard files of data-parallel rank ``rank`` of ``world_size``: every
    ``world_size``-th file from the ``rank``-th, in manifest order. ``ValueError`` when there
    are fewer files than ranks (some rank would get no data)."""
    world_size = positive_int("assign_files world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"assign_files rank must be an integer in [0, {world_size}), got {rank!r}")
    files = [s["file"] for s in manifest["shards"]]
    if len(files) < world_size:
        raise ValueError(f"the dataset has {len(files)} shard files but {world_size} data-parallel "
                         f"ranks: every rank needs at least one file (collect with more files, e.g. "
                         f"a smaller steps_per_shard, or use fewer ranks)")
    return files[int(rank)::world_size]


# -- reading ----------------------------------------------------------------------------------

class H5FileCache:
    """Read-only h5py handles, one per file and process, opened on first use.

    A handle inherited through ``fork`` belongs to the parent and is dropped (never read through
    or closed) in the child, which opens its own; pickling (spawned DataLoader workers, Ray)
    carries no handles."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._files: dict[str, Any] = {}

    def get(self, path) -> Any:
        if self._pid != os.getpid():
            self._pid, self._files = os.getpid(), {}
        key = os.fspath(path)
        handle = self._files.get(key)
        if handle is None:
            handle = self._files[key] = _h5py().File(key, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
        return handle

    def close(self) -> None:
        if self._pid == os.getpid():
            for handle in self._files.values():
                handle.close()
        self._pid, self._files = None, {}

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


def _clip_starts(is_first: np.ndarray, seq_len: int, stride: int) -> np.ndarray:
    """Starts of the clips of one file: every ``stride`` steps from the first step of each
    segment (the file's start and every ``is_first``), while the clip fits in the segment."""
    steps = len(is_first)
    bounds = np.unique(np.concatenate([[0], np.flatnonzero(is_first), [steps]]))
    starts = [np.arange(a, b - seq_len + 1, stride) for a, b in zip(bounds[:-1], bounds[1:])
              if b - a >= seq_len]
    return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)


class ClipDataset:
    """Fixed-length clips of the stream in ``files`` (default: all) of a shard directory.

    A clip is ``seq_len`` consecutive steps of one file with no episode start after its first
    step; clips start every ``stride`` steps from each episode start (and from each file's first
    step, which may be inside an episode). ``ds[i]`` is ``{key: (seq_len, ...)}`` for ``keys``
    in their stored dtypes; ``batch(indices)`` stacks clips to ``(B, seq_len, ...)``. The
    constructor reads the manifest and each file's ``is_first``; data is read on demand."""

    def __init__(self, directory, seq_len: int, *, files: Sequence[str] | None = None,
                 keys=("image", "action", "reward", "is_first", "is_terminal", "is_last"),
                 stride: int = 1):
        self.directory = pathlib.Path(directory)
        self.seq_len = positive_int("ClipDataset seq_len", seq_len)
        self.stride = positive_int("ClipDataset stride", stride)
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        bad = [k for k in self.keys if k not in STREAM_KEYS]
        if not self.keys or bad:
            raise ValueError(f"ClipDataset keys {list(self.keys)!r}: choose one or more of {STREAM_KEYS}")
        self.manifest = read_manifest(self.directory)
        steps = {s["file"]: s["steps"] for s in self.manifest["shards"]}
        self.files = list(steps) if files is None else [files] if isinstance(files, str) else list(files)
        unknown = [f for f in self.files if f not in steps]
        if unknown:
            raise ValueError(f"ClipDataset files {unknown} are not in the manifest of {self.directory}; "
                             f"it lists {list(steps)}")
        if len(set(self.files)) != len(self.files):
            raise ValueError(f"ClipDataset files {self.files} name a file more than once")
        self._handles = H5FileCache()
        file_index, starts = [], []
        for i, name in enumerate(self.files):
            path = self.directory / name
            if not path.is_file():
                raise FileNotFoundError(f"shard {path} listed in {self.directory / MANIFEST_NAME} is missing")
            with _h5py().File(path, "r") as handle:
                is_first = handle["is_first"][:]
            if len(is_first) != steps[name]:
                raise ValueError(f"shard {path} has {len(is_first)} steps, the manifest says "
                                 f"{steps[name]}: the file or the manifest is stale")
            file_starts = _clip_starts(is_first, self.seq_len, self.stride)
            starts.append(file_starts)
            file_index.append(np.full(len(file_starts), i, np.int32))
        self._file_index = np.concatenate(file_index) if file_index else np.zeros(0, np.int32)
        self._starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._starts)

    def locate(self, i) -> tuple[str, int]:
        """``(file, first step)`` of clip ``i``."""
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"clip index {i!r} is out of range for {n} clips")
        i = int(i) % n
        return self.files[self._file_index[i]], int(self._starts[i])

    def __getitem__(self, i) -> dict[str, np.ndarray]:
        name, start = self.locate(i)
        handle = self._handles.get(self.directory / name)
        return {key: handle[key][start:start + self.seq_len] for key in self.keys}

    def batch(self, indices) -> dict[str, np.ndarray]:
        clips = [self[i] for i in np.asarray(indices).reshape(-1)]
        if not clips:
            raise ValueError("ClipDataset.batch needs at least one index")
        return {key: np.stack([c[key] for c in clips]) for key in self.keys}

    def close(self) -> None:
        """Close this process's file handles (they reopen on the next read)."""
        self._handles.close()
