"""Corrupt checkpoints and replay snapshots: every reader names the file, says what to do, and
never passes on torch's or numpy's advice to load the file unsafely (``weights_only=False``,
``allow_pickle=True``), which would run code from the file."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from conftest import require_module

from distwm.memory.dreamer_memory import ReplayBuffer
from distwm.runtime.checkpoints import LATEST, latest_checkpoint, load_checkpoint, write_checkpoint
from distwm.runtime.replay_shard import ReplayShard
from distwm.utils.checkpoint import CorruptFileError

UNSAFE_ADVICE = ("weights_only", "allow_pickle", "pickle.load", "trust")


class Payload:
    """Not a tensor or a plain type: ``weights_only=True`` and ``allow_pickle=False`` refuse it."""


def assert_safe_message(exc: BaseException | str, *names: str) -> str:
    """``exc`` names every one of ``names``; neither its message nor its whole traceback (the
    chained causes included, as a user sees them) gives the unsafe advice."""
    message = str(exc)
    for name in names:
        assert name in message, (name, message)
    shown, cause = [message], exc
    while isinstance(cause, BaseException):  # what a traceback prints: the chain of messages
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
        shown.append(str(cause or ""))
    shown = "\n".join(shown)
    for advice in UNSAFE_ADVICE:
        assert advice not in shown, (advice, shown)
    return message


# -- runtime learner checkpoints ------------------------------------------------------------------

def _learner_state(updates: int) -> dict:
    return {"agent": {"format": "distwm.toy/1", "w": torch.full((3,), float(updates))},
            "updates": updates, "version": updates // 10, "counters": {"env_steps": updates * 8}}


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


CORRUPTIONS = {
    "truncated": lambda good: good[: len(good) // 3],
    "garbage": lambda good: b"not a checkpoint at all " * 40,
    "empty": lambda good: b"",
    "pickled object": lambda good: _torch_bytes({"agent": Payload(), "updates": 1, "version": 1}),
    "plain pickle": lambda good: pickle.dumps({"agent": {}, "updates": 1}),
}


@pytest.fixture
def run_dir(tmp_path):
    run = str(tmp_path / "run")
    write_checkpoint(run, "ckpt-000000010", _learner_state(10))
    write_checkpoint(run, "ckpt-000000020", _learner_state(20))
    return run


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_corrupt_learner_checkpoint_names_the_file_and_the_older_checkpoint(run_dir, kind):
    latest = latest_checkpoint(run_dir)
    assert latest.endswith("ckpt-000000020")
    file = os.path.join(latest, "learner.pt")
    with open(file, "rb") as f:
        good = f.read()
    with open(file, "wb") as f:
        f.write(CORRUPTIONS[kind](good))
    with pytest.raises(CorruptFileError) as info:
        load_checkpoint(latest)
    message = assert_safe_message(info.value, file, "ckpt-000000010", LATEST, "--resume")
    assert isinstance(info.value, ValueError) and info.value.path == file
    assert "cannot be read" in message
    # following the advice works: `latest` names the older checkpoint, which loads
    with open(os.path.join(run_dir, "checkpoints", LATEST), "w") as f:
        f.write("ckpt-000000010")
    older = load_checkpoint(latest_checkpoint(run_dir))
    assert older["updates"] == 10 and torch.equal(older["agent"]["w"], torch.full((3,), 10.0))


def test_a_learner_checkpoint_of_another_kind_says_what_is_missing(tmp_path):
    run = str(tmp_path / "run")
    path = write_checkpoint(run, "ckpt-000000005", {"weights": torch.zeros(2)})
    with pytest.raises(CorruptFileError) as info:
        load_checkpoint(path)
    message = assert_safe_message(info.value, os.path.join(path, "learner.pt"))
    assert "not a distwm runtime checkpoint" in message and "'agent', 'updates', 'version'" in message
    assert "No older checkpoint" in message and "another --run-dir" in message


def test_resuming_a_run_with_a_corrupt_checkpoint_stops_with_the_clear_error(run_dir):
    """The driver reads the last checkpoint before it starts any actor (``--resume``)."""
    from distwm.runtime.run_files import RunFilesMixin

    class Resuming(RunFilesMixin):
        def __init__(self):
            self.run_dir, self.counters = run_dir, {"restarts": {}}

    file = os.path.join(latest_checkpoint(run_dir), "learner.pt")
    with open(file, "wb") as f:
        f.write(_torch_bytes({"agent": Payload(), "updates": 1, "version": 1}))
    with pytest.raises(CorruptFileError) as info:
        Resuming()._load_resume_state()
    assert_safe_message(info.value, file, "ckpt-000000010")


def test_a_single_process_checkpoint_holding_objects_never_suggests_weights_only_false(tmp_path):
    from distwm.models.dreamer.checkpoint import load_checkpoint_file

    path = tmp_path / "latest.pt"
    torch.save({"format": "distwm.dreamer/1", "fn": Payload()}, path)
    with pytest.raises(CorruptFileError) as info:
        load_checkpoint_file(path)
    message = assert_safe_message(info.value, str(path), "Dreamer checkpoint")
    assert "never loads" in message and "delete it" in message


# -- replay snapshots -----------------------------------------------------------------------------

def _buffer() -> ReplayBuffer:
    return ReplayBuffer(64, {"state": (2,)}, 1, seq_len=4, batch_size=2, num_envs=1, chunk_length=4)


def _filled(path) -> str:
    buffer = _buffer()
    for t in range(16):
        buffer.add({"state": np.full(2, t, np.float32)}, np.zeros(1), 1.0, done=False, is_first=t == 0)
    return buffer.save(path)


def _object_array_npz(path) -> None:
    """A zip of ``.npy`` members, the metadata one a pickled object array (what an attacker
    could plant): ``np.load(allow_pickle=False)`` refuses it."""
    member = io.BytesIO()
    np.save(member, np.array([{"meta": {}}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", member.getvalue())


def _no_meta_npz(path) -> None:
    with open(path, "wb") as f:
        np.savez(f, **{"data|state": np.zeros((1, 4, 2), np.float32)})


SNAPSHOT_CORRUPTIONS = {
    "truncated": lambda path: open(path, "r+b").truncate(os.path.getsize(path) // 2),
    "garbage": lambda path: open(path, "wb").write(b"\x93NUMPY garbage" * 50),
    "object array": _object_array_npz,
    "no metadata": _no_meta_npz,
    "bad metadata json": lambda path: np.savez(open(path, "wb"), __meta__=np.array("{not json")),
}


@pytest.mark.parametrize("kind", sorted(SNAPSHOT_CORRUPTIONS))
def test_a_corrupt_replay_snapshot_names_the_file_and_never_suggests_allow_pickle(tmp_path, kind):
    path = _filled(tmp_path / "replay.npz")
    SNAPSHOT_CORRUPTIONS[kind](path)
    with pytest.raises(CorruptFileError) as info:
        _buffer().load(path)
    message = assert_safe_message(info.value, path, "replay snapshot", "Delete it")
    assert "pickle" not in message.lower() and info.value.path == path


def test_a_corrupt_hdf5_snapshot_is_named_too(tmp_path):
    require_module("h5py")
    path = _filled(tmp_path / "replay.h5")
    _buffer().load(path)  # the intact file loads
    with open(path, "r+b") as f:
        f.truncate(200)
    with pytest.raises(CorruptFileError) as info:
        _buffer().load(path)
    assert_safe_message(info.value, path, "replay snapshot")


def test_a_missing_snapshot_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="replay snapshot .*missing.npz.* does not exist"):
        _buffer().load(tmp_path / "missing.npz")


# -- replay shards (snapshot + log) ---------------------------------------------------------------

SHARD = dict(capacity=128, chunk_length=8, seq_len=4, samples_per_insert=1.0, min_size=8,
             error_buffer=64.0)


def _chunk(start: int) -> dict:
    steps = np.arange(start, start + 8, dtype=np.float32)
    return {"state": steps[None, :, None].copy(), "is_first": np.zeros((1, 8), bool)}


def _shard_with_snapshot(root: str) -> str:
    async def scenario():
        shard = ReplayShard(0, store_root=root, **SHARD)
        await shard.open()
        await shard.insert(["a"], [0], _chunk(0))
        snapshot = await shard.snapshot()
        await shard.insert(["a"], [8], _chunk(8))  # in the log after the snapshot
        shard.store.close()
        return snapshot

    return asyncio.run(scenario())


def _open(root: str) -> dict:
    async def scenario():
        return await ReplayShard(0, store_root=root, **SHARD).open()

    return asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["truncated", "garbage", "object array"])
def test_a_corrupt_shard_snapshot_says_to_delete_the_shard_directory(tmp_path, kind):
    root = str(tmp_path / "replay")
    snapshot = _shard_with_snapshot(root)
    assert _open(root)["inserted"] == 16  # intact: snapshot + log
    SNAPSHOT_CORRUPTIONS[kind](snapshot)
    with pytest.raises(CorruptFileError) as info:
        _open(root)
    shard_dir = os.path.join(root, "shard_0")
    message = assert_safe_message(info.value, snapshot, shard_dir, "empty replay")
    assert "pickle" not in message.lower()
    # following the advice: the shard starts empty, and keeps logging from there
    import shutil

    shutil.rmtree(shard_dir)
    stats = _open(root)
    assert stats["inserted"] == 0 and stats["snapshot"] is None


def test_a_damaged_log_record_names_the_log_file(tmp_path):
    root = str(tmp_path / "replay")
    _shard_with_snapshot(root)
    shard_dir = os.path.join(root, "shard_0")
    log = os.path.join(shard_dir, next(n for n in sorted(os.listdir(shard_dir)) if n.startswith("log-")))
    payload = struct.pack("<I", 9) + b"{not json"  # a whole record whose header is not JSON
    with open(log, "ab") as f:
        f.write(struct.pack("<4scQ", b"DWR1", b"I", len(payload)) + payload)
    with pytest.raises(CorruptFileError) as info:
        _open(root)
    assert_safe_message(info.value, log, shard_dir)
    assert "damaged log record" in str(info.value)
    json.dumps(str(info.value))  # a plain message (no bytes)


# -- through the command line and through Ray ------------------------------------------------------

def test_distwm_train_resume_of_a_corrupt_checkpoint_prints_the_clear_error(run_dir, capsys):
    """``distwm train --resume RUN_DIR`` stops before Ray starts, with the message, not a
    traceback (exit status 2)."""
    from distwm.cli import main
    from distwm.configs.runtime_config import RunConfig, RuntimeConfig
    from distwm.runtime.setup import RUN_CONFIG_FILE
    from runtime_agent import TinyAgentConfig

    run = RunConfig.from_agent_config(TinyAgentConfig(), RuntimeConfig(
        workers=1, envs_per_worker=1, shards=1, env_factory="runtime_agent:make_env", run_dir=run_dir))
    with open(os.path.join(run_dir, RUN_CONFIG_FILE), "w") as f:
        f.write(run.to_yaml())
    file = os.path.join(latest_checkpoint(run_dir), "learner.pt")
    with open(file, "r+b") as f:
        f.truncate(64)
    assert main(["train", "--resume", run_dir]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distwm train: error: learner checkpoint") and "Traceback" not in err
    assert_safe_message(err, file, "ckpt-000000010")


@pytest.mark.ray
def test_a_shard_actor_with_a_corrupt_snapshot_fails_with_the_clear_error(ray_session, tmp_path):
    """What the driver sees when a shard cannot restore: the same error through Ray."""
    import ray

    root = str(tmp_path / "replay")
    snapshot = _shard_with_snapshot(root)
    SNAPSHOT_CORRUPTIONS["object array"](snapshot)
    shard = ray.remote(ReplayShard).options(num_cpus=0).remote(0, store_root=root, **SHARD)
    try:
        with pytest.raises(CorruptFileError) as info:
            ray.get(shard.open.remote(), timeout=120)
        assert_safe_message(info.value, snapshot, os.path.join(root, "shard_0"))
    finally:
        ray.kill(shard)
