"""A replay shard's durable state: a snapshot plus an append-only log of what came after it.

Every chunk a shard accepts is appended to its log before the insert returns (and every
sample, a few bytes, so that the sampled counter survives too); a restarted shard loads its
newest snapshot and replays the log written after it, so no chunk that reached a shard is lost,
whichever process dies. The log is compacted into a new snapshot once it holds
``snapshot_steps`` env steps (default: the shard's capacity), which bounds its size and the
replay time of a restore.

Layout under ``<run_dir>/replay/shard_<i>/``::

    snapshot-000003.npz        everything before log segment 3 (atomic: written, then renamed)
    log-000003-0000.bin        records after it; each shard incarnation opens a new part
    log-000003-0001.bin

A record is ``b"DWR1" | kind (b"I" insert, b"S" sample, b"U" update) | payload length
(uint64 LE) | payload``. An insert's payload is a JSON header (stream ids, start steps, each
array's key, dtype and shape) followed by the raw arrays; numeric and bool dtypes only, nothing
is ever unpickled. An update (entries the learner rewrote, e.g. DreamerV3's replayed latents)
has the same form with a ``stepid`` array and no streams. A record cut short by a kill is
ignored on replay.

On a local or mounted file system each record is written and flushed to the OS before the insert
returns (a killed process loses nothing; a node that loses power may lose what the OS had not
yet written). An object store has no appends: records are kept in memory and uploaded as a new
part every ``flush_seconds``, so there a killed shard may lose up to that much.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import time
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from distwm.utils import storage

__all__ = ["ShardStore", "encode_insert", "read_records"]

MAGIC = b"DWR1"
INSERT, SAMPLE, UPDATE = b"I", b"S", b"U"
_HEADER = struct.Struct("<4scQ")
_SNAPSHOT = re.compile(r"^snapshot-(\d{6})\.(npz|h5)$")
_LOG = re.compile(r"^log-(\d{6})-(\d{4})\.bin$")


def encode_insert(stream_ids: Sequence[str], start_steps: Sequence[int],
                  chunk: Mapping[str, np.ndarray], kind: bytes = INSERT) -> list[bytes | memoryview]:
    """The pieces of one insert (or, ``kind=UPDATE``, update) record, written one after another."""
    arrays = []
    for key in sorted(chunk):
        arr = np.ascontiguousarray(chunk[key])
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"replay log: {key!r} has dtype {arr.dtype}; only bool, int, uint "
                             "and float arrays can be logged")
        arrays.append((key, arr))
    head = json.dumps({"ids": [str(s) for s in stream_ids],
                       "starts": [int(s) for s in start_steps],
                       "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays]}).encode()
    size = 4 + len(head) + sum(a.nbytes for _, a in arrays)
    return [_HEADER.pack(MAGIC, kind, size), struct.pack("<I", len(head)), head,
            *(memoryview(a).cast("B") for _, a in arrays)]


def _encode_sample(steps: int) -> bytes:
    return _HEADER.pack(MAGIC, SAMPLE, 8) + struct.pack("<q", int(steps))


def _decode_insert(payload: bytes) -> tuple[list[str], list[int], dict[str, np.ndarray]]:
    (n,) = struct.unpack_from("<I", payload, 0)
    head = json.loads(payload[4:4 + n])
    offset, chunk = 4 + n, {}
    for key, dtype, shape in head["arrays"]:
        dt = np.dtype(dtype)
        if dt.kind not in "biuf":
            raise ValueError(f"replay log: refusing dtype {dtype!r} for {key!r}")
        count = int(np.prod(shape, dtype=np.int64))
        chunk[key] = np.frombuffer(payload, dt, count, offset).reshape(shape).copy()
        offset += count * dt.itemsize
    return head["ids"], head["starts"], chunk


def read_records(stream) -> Iterator[tuple[bytes, Any]]:
    """``(kind, value)`` of each whole record of a log stream; stops at a cut-short tail."""
    while True:
        header = stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        magic, kind, size = _HEADER.unpack(header)
        if magic != MAGIC:
            return  # a torn write: what follows cannot be trusted
        payload = stream.read(size)
        if len(payload) < size:
            return
        if kind in (INSERT, UPDATE):
            yield kind, _decode_insert(payload)
        elif kind == SAMPLE:
            yield SAMPLE, struct.unpack("<q", payload)[0]
        else:
            return


class ShardStore:
    """Snapshot + log of one replay shard (see the module docstring).

    Args:
        root: the run's replay directory (``<run_dir>/replay``; a path or URI).
        shard_index: which shard.
        snapshot_format: ``"npz"`` or ``"hdf5"``.
        snapshot_steps: logged env steps after which the log is compacted into a snapshot.
        flush_seconds: upload cadence of the log on an object store.
    """

    def __init__(self, root: str, shard_index: int, snapshot_format: str = "npz",
                 snapshot_steps: int = 0, flush_seconds: float = 5.0):
        self.dir = storage.join(root, f"shard_{shard_index}")
        self.ext = "h5" if snapshot_format == "hdf5" else "npz"
        self.snapshot_steps = int(snapshot_steps)
        self.flush_seconds = float(flush_seconds)
        self.local = storage.is_local(root)
        self.segment = 0
        self.part = -1
        self._file = None
        self._spool = bytearray()
        self._last_flush = 0.0
        self.logged_steps = 0  # inserted env steps in the log since the snapshot
        self.log_bytes = 0
        self.log_time = 0.0

    # -- listing ---------------------------------------------------------------------------
    def _files(self) -> tuple[list[tuple[int, str]], list[tuple[int, int, str]]]:
        snaps, logs = [], []
        for name in storage.listdir(self.dir):
            if m := _SNAPSHOT.match(name):
                snaps.append((int(m.group(1)), name))
            elif m := _LOG.match(name):
                logs.append((int(m.group(1)), int(m.group(2)), name))
        return sorted(snaps), sorted(logs)

    # -- restore ---------------------------------------------------------------------------
    def restore(self, replay: Any, limiter: Any) -> dict[str, Any]:
        """Load the newest snapshot and replay the log after it into ``replay`` and
        ``limiter``; later appends go to a new log part. Returns what was restored."""
        snaps, logs = self._files()
        info = {"snapshot": None, "log_parts": 0, "log_steps": 0, "log_samples": 0}
        if snaps:
            self.segment, name = snaps[-1]
            location = storage.join(self.dir, name)
            extra = self._load_snapshot(replay, location)
            if "limiter" not in extra:  # written by something else than ShardStore.snapshot
                raise self._unreadable(location, "the snapshot holds no rate-limiter state "
                                       f"(its extra keys: {sorted(extra)})")
            limiter.load_state_dict(extra["limiter"])
            info["snapshot"] = storage.join(self.dir, name)
        parts = [(p, n) for s, p, n in logs if s == self.segment]
        for _, name in parts:
            with storage.open_input(storage.join(self.dir, name)) as stream:
                for kind, value in self._records(stream, storage.join(self.dir, name)):
                    if kind == INSERT:
                        ids, starts, chunk = value
                        steps = replay.insert(chunk, ids, starts)
                        limiter.record_insert(steps)
                        info["log_steps"] += steps
                    elif kind == UPDATE:
                        values = dict(value[2])
                        replay.update(values.pop("stepid"), values)
                    else:
                        limiter.record_sample(value)
                        info["log_samples"] += value
        info["log_parts"] = len(parts)
        self.logged_steps = info["log_steps"]
        self.part = max((p for p, _ in parts), default=-1)
        self._prune(keep_segment=self.segment)
        return info

    def _unreadable(self, location: str, reason: str):
        """The error for a snapshot or log of this shard that cannot be read. Only the whole
        shard directory can go: a log is replayed on top of its snapshot, and a snapshot
        deleted alone would leave logs of a later segment to collide with new ones."""
        from distwm.utils.checkpoint import CorruptFileError

        return CorruptFileError(
            f"replay shard file {location!r} cannot be read: {reason}. Delete the shard's "
            f"directory {self.dir} to restart this shard with an empty replay (the steps it "
            "held are lost; the learner checkpoint and the other shards are unaffected), or put "
            "back an intact copy of the file, then resume the run.", location, reason)

    def _records(self, stream, location: str) -> Iterator[tuple[bytes, Any]]:
        """:func:`read_records` of one log part; a damaged record raises :meth:`_unreadable`."""
        records = read_records(stream)
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
                raise self._unreadable(location, f"a damaged log record ({type(exc).__name__})") from None
            yield record

    def _load_snapshot(self, replay: Any, location: str) -> dict[str, Any]:
        from distwm.utils.checkpoint import CorruptFileError

        try:
            if self.local:
                return replay.load(storage.local_path(location))
            with tempfile.TemporaryDirectory() as tmp:
                local = storage.download_file(location, os.path.join(tmp, f"snapshot.{self.ext}"))
                return replay.load(local)
        except CorruptFileError as exc:
            raise self._unreadable(location, exc.reason or str(exc)) from None

    # -- appends ---------------------------------------------------------------------------
    def _open_part(self) -> None:
        self.part += 1
        name = f"log-{self.segment:06d}-{self.part:04d}.bin"
        if self.local:
            path = storage.local_path(storage.join(self.dir, name))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._file = open(path, "ab")
        else:
            self._spool = bytearray()
            self._last_flush = time.monotonic()

    def _write(self, pieces: Sequence[bytes | memoryview]) -> None:
        t0 = time.perf_counter()
        if self.part < 0 or (self.local and self._file is None):
            self._open_part()
        if self.local:
            for piece in pieces:
                self._file.write(piece)
            self._file.flush()  # in the OS before the insert returns: survives a killed process
        else:
            for piece in pieces:
                self._spool += piece
            if time.monotonic() - self._last_flush >= self.flush_seconds:
                self.flush()
        self.log_bytes += sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)
        self.log_time += time.perf_counter() - t0

    def append_insert(self, stream_ids: Sequence[str], start_steps: Sequence[int],
                      chunk: Mapping[str, np.ndarray], steps: int) -> None:
        self._write(encode_insert(stream_ids, start_steps, chunk))
        self.logged_steps += steps

    def append_update(self, stepid: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        self._write(encode_insert([], [], {**values, "stepid": stepid}, kind=UPDATE))

    def append_sample(self, steps: int) -> None:
        self._write([_encode_sample(steps)])

    def snapshot_due(self) -> bool:
        return self.snapshot_steps > 0 and self.logged_steps >= self.snapshot_steps

    def flush(self) -> None:
        """Object store: upload the records kept since the last upload as a new part."""
        if self.local:
            if self._file is not None:
                self._file.flush()
            return
        if self._spool:
            name = f"log-{self.segment:06d}-{self.part:04d}.bin"
            storage.write_bytes(storage.join(self.dir, name), bytes(self._spool))
            self._open_part()
        self._last_flush = time.monotonic()

    # -- compaction ------------------------------------------------------------------------
    def snapshot(self, replay: Any, extra: Mapping[str, Any]) -> str:
        """Write ``snapshot-<segment + 1>`` (everything so far), start that log segment and
        remove the older snapshot and logs. Returns the snapshot's location."""
        self.flush()
        self.close()
        name = f"snapshot-{self.segment + 1:06d}.{self.ext}"
        location = storage.join(self.dir, name)
        if self.local:
            replay.save(storage.local_path(location), extra=extra)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                local = replay.save(os.path.join(tmp, name), extra=extra)
                storage.upload_file(local, location)
        self.segment += 1
        self.part = -1
        self.logged_steps = 0
        self._prune(keep_segment=self.segment)
        return location

    def _prune(self, keep_segment: int) -> None:
        snaps, logs = self._files()
        for seg, name in snaps:
            if seg < keep_segment:
                storage.delete_file(storage.join(self.dir, name))
        for seg, _, name in logs:
            if seg < keep_segment:
                storage.delete_file(storage.join(self.dir, name))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
