"""The shard format of collected datasets (distwm.datasets.video_shards): writer, manifest,
rank assignment and clip reading, with every error message."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import subprocess
import sys

import numpy as np
import pytest

from distwm.datasets import video_shards as vs
from distwm.datasets.video_shards import (
    FORMAT, MANIFEST_NAME, VERSION, ClipDataset, ShardWriter, assign_files, read_manifest,
    validate_chunk, write_manifest,
)

META = {"env": "toy", "frame_shape": [3, 4, 4], "action_dim": 2, "policy": "random",
        "workers": 1, "seed": 0}


def stream(steps: int, starts=(0,), offset: int = 0) -> dict[str, np.ndarray]:
    """A stream whose frame t is filled with (offset + t) % 256 and whose reward is t."""
    t = np.arange(offset, offset + steps)
    is_first = np.isin(t, starts)
    action = np.zeros((steps, 2), np.float32)
    action[~is_first, t[~is_first] % 2] = 1.0
    return {
        "image": np.broadcast_to((t % 256).astype(np.uint8)[:, None, None, None], (steps, 3, 4, 4)).copy(),
        "action": action,
        "reward": t.astype(np.float32),
        "is_first": is_first,
        "is_terminal": np.isin(t + 1, starts),
        "is_last": np.isin(t + 1, starts),
    }


def write(directory, steps=25, starts=(0, 7, 20), steps_per_shard=10, chunk=7, prefix="w0"):
    with ShardWriter(directory, prefix, steps_per_shard=steps_per_shard) as writer:
        for begin in range(0, steps, chunk):
            writer.add_chunk(stream(min(chunk, steps - begin), starts, offset=begin))
    shards = writer.close()
    write_manifest(directory, shards, META)
    return shards


def test_writer_manifest_round_trip(tmp_path):
    shards = write(tmp_path)
    assert shards == [{"file": "w0-00000.h5", "steps": 10, "episodes": 2},
                      {"file": "w0-00001.h5", "steps": 10, "episodes": 0},
                      {"file": "w0-00002.h5", "steps": 5, "episodes": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, *(s["file"] for s in shards)]
    manifest = read_manifest(tmp_path)
    assert manifest == {"format": FORMAT, "version": VERSION, "shards": shards, "steps": 25,
                        "episodes": 3, **META}
    assert read_manifest(tmp_path / MANIFEST_NAME) == manifest
    import h5py

    expected = stream(25, (0, 7, 20))
    got = {k: [] for k in expected}
    for shard in shards:
        with h5py.File(tmp_path / shard["file"], "r") as f:
            assert f.attrs["format"] == FORMAT and f.attrs["version"] == VERSION
            for key in expected:
                got[key].append(f[key][:])
    for key, value in expected.items():
        joined = np.concatenate(got[key])
        assert joined.dtype == value.dtype, key
        np.testing.assert_array_equal(joined, value, err_msg=key)


def test_writer_close_twice_refuses_more_and_never_overwrites(tmp_path):
    writer = ShardWriter(tmp_path / "new", "p", steps_per_shard=4, compression=None)
    assert not (tmp_path / "new").exists()  # nothing happens before data arrives
    writer.add_chunk(stream(0))  # an empty chunk writes nothing
    assert writer.close() == [] and not (tmp_path / "new").exists()
    writer = ShardWriter(tmp_path, "p", steps_per_shard=4, compression="lzf")
    writer.add_chunk(stream(6))
    first = writer.close()
    assert first == writer.close() == [{"file": "p-00000.h5", "steps": 4, "episodes": 1},
                                       {"file": "p-00001.h5", "steps": 2, "episodes": 0}]
    with pytest.raises(ValueError, match="is closed"):
        writer.add_chunk(stream(2))
    again = ShardWriter(tmp_path, "p")
    with pytest.raises(FileExistsError, match="p-00000.h5 already exists"):
        again.add_chunk(stream(2))


@pytest.mark.parametrize("kwargs, match", [
    ({"prefix": ""}, "prefix must be a non-empty"),
    ({"prefix": "a/b"}, "without path separators"),
    ({"compression": "zip"}, "compression 'zip' is not one of"),
    ({"steps_per_shard": 0}, "steps_per_shard must be a positive integer, got 0"),
])
def test_writer_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShardWriter(tmp_path, **{"prefix": "w", **kwargs})


def _changed(key, value):
    chunk = stream(4)
    chunk[key] = value
    return chunk


@pytest.mark.parametrize("chunk, match", [
    ([1, 2], "must be a mapping"),
    ({k: v for k, v in stream(2).items() if k != "reward"}, r"missing: \['reward'\], unknown: none"),
    ({**stream(2), "extra": np.zeros(2)}, r"missing: none, unknown: \['extra'\]"),
    (_changed("image", np.zeros((4, 3, 4, 4), np.float32)), "'image'] must be uint8 pixels, got float32"),
    (_changed("image", np.zeros((4, 4, 4), np.uint8)), r"'image'\] must be 4-D \(T, C, H, W\), got shape \(4, 4, 4\)"),
    (_changed("action", np.zeros((4, 2), np.int64)), "'action'] must be float .one-hot"),
    (_changed("action", np.zeros(4, np.float32)), r"'action'\] must be 2-D \(T, A\)"),
    (_changed("reward", np.zeros(4, bool)), "'reward'] must be real numbers, got bool"),
    (_changed("is_last", np.zeros(4, np.int8)), "'is_last'] must be bool, got int8"),
    (_changed("is_first", np.zeros(3, bool)), "must have one length"),
])
def test_validate_chunk_errors(chunk, match):
    with pytest.raises(ValueError, match=match):
        validate_chunk(chunk)


def test_chunks_keep_their_shapes_and_dtypes(tmp_path):
    chunk = _changed("reward", np.arange(4))  # integer rewards are stored as float32
    assert validate_chunk(chunk)["reward"].dtype == np.float32
    writer = ShardWriter(tmp_path, "w")
    writer.add_chunk(stream(3))
    bigger = _changed("image", np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"per-step shape \(3, 8, 8\), but earlier chunks .* \(3, 4, 4\)"):
        writer.add_chunk(bigger)
    with pytest.raises(ValueError, match=r"'action'\] has per-step shape \(3,\)"):
        writer.add_chunk(_changed("action", np.zeros((4, 3), np.float32)))


def test_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match=f"no shard manifest at {tmp_path / MANIFEST_NAME}: expected a "
                                         f"'{FORMAT}' manifest of version <= {VERSION}"):
        read_manifest(tmp_path)
    path = tmp_path / MANIFEST_NAME
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_manifest(tmp_path)
    path.write_text(json.dumps({"format": "webdataset", "version": 1, "shards": []}))
    with pytest.raises(ValueError, match="is not a distwm stream manifest .format 'webdataset'.; expected"):
        read_manifest(tmp_path)
    path.write_text(json.dumps([1]))
    with pytest.raises(ValueError, match="is not a distwm stream manifest .format 'list'."):
        read_manifest(tmp_path)
    path.write_text(json.dumps({"format": FORMAT, "version": VERSION + 1, "shards": []}))
    with pytest.raises(ValueError, match=f"is version {VERSION + 1}, newer than this distwm reads.*upgrade"):
        read_manifest(tmp_path)
    path.write_text(json.dumps({"format": FORMAT, "version": "1", "shards": []}))
    with pytest.raises(ValueError, match="invalid version '1'"):
        read_manifest(tmp_path)
    path.write_text(json.dumps({"format": FORMAT, "version": 1, "shards": [{"file": "a.h5"}]}))
    with pytest.raises(ValueError, match="shard 0 must be"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match=r"meta may not set \['steps'\]"):
        write_manifest(tmp_path, [], {"steps": 3})
    with pytest.raises(ValueError, match="meta must be a mapping, got list"):
        write_manifest(tmp_path, [], [("env", "toy")])
    with pytest.raises(ValueError, match="meta must be JSON-serialisable"):
        write_manifest(tmp_path, [], {"seed": object()})
    shard = {"file": "a.h5", "steps": 1, "episodes": 1}
    with pytest.raises(ValueError, match="'a.h5' is listed twice"):
        write_manifest(tmp_path, [shard, shard], {})
    with pytest.raises(ValueError, match="'shards' must be a list"):
        vs._check_shards("a.h5", "here")


def test_assign_files_round_robin_and_errors():
    manifest = {"shards": [{"file": f"f{i}.h5", "steps": 1, "episodes": 1} for i in range(5)]}
    assert assign_files(manifest, 0, 2) == ["f0.h5", "f2.h5", "f4.h5"]
    assert assign_files(manifest, 1, 2) == ["f1.h5", "f3.h5"]
    assert sorted(sum((assign_files(manifest, r, 5) for r in range(5)), [])) == [f"f{i}.h5" for i in range(5)]
    with pytest.raises(ValueError, match="has 5 shard files but 6 data-parallel ranks"):
        assign_files(manifest, 0, 6)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\), got 2"):
        assign_files(manifest, 2, 2)
    with pytest.raises(ValueError, match="world_size must be a positive integer, got 0"):
        assign_files(manifest, 0, 0)


def _brute_force_clips(steps_per_file, starts, seq_len):
    """Every (file index, local start) whose clip has no episode start after its first step."""
    out, offset = [], 0
    for f, n in enumerate(steps_per_file):
        firsts = {s - offset for s in starts if offset <= s < offset + n}
        out += [(f, s) for s in range(n - seq_len + 1) if not firsts & set(range(s + 1, s + seq_len))]
        offset += n
    return out


def test_clips_never_cross_episode_starts_or_files(tmp_path):
    write(tmp_path)  # files of 10, 10, 5 steps; episodes start at 0, 7, 20
    data = ClipDataset(tmp_path, 3)
    located = [data.locate(i) for i in range(len(data))]
    files = data.files
    assert [(files.index(f), s) for f, s in located] == _brute_force_clips([10, 10, 5], (0, 7, 20), 3)
    for i in range(len(data)):
        clip = data[i]
        assert not clip["is_first"][1:].any()
        steps = clip["reward"].astype(int)  # reward t at stream step t
        np.testing.assert_array_equal(np.diff(steps), 1)  # consecutive steps of one file
        np.testing.assert_array_equal(clip["image"][:, 0, 0, 0], steps % 256)
    strided = ClipDataset(tmp_path, 3, stride=2)
    assert [strided.locate(i) for i in range(len(strided))] == [
        ("w0-00000.h5", 0), ("w0-00000.h5", 2), ("w0-00000.h5", 4), ("w0-00000.h5", 7),
        ("w0-00001.h5", 0), ("w0-00001.h5", 2), ("w0-00001.h5", 4), ("w0-00001.h5", 6),
        ("w0-00002.h5", 0), ("w0-00002.h5", 2)]
    assert len(ClipDataset(tmp_path, 11)) == 0  # no file holds 11 steps


def test_clip_batch_keys_files_and_index(tmp_path):
    write(tmp_path)
    data = ClipDataset(tmp_path, 4, files=["w0-00001.h5"], keys=("image", "action"))
    assert len(data) == 7 and set(data[0]) == {"image", "action"}
    batch = data.batch([0, 3, 6])
    assert batch["image"].shape == (3, 4, 3, 4, 4) and batch["image"].dtype == np.uint8
    assert batch["action"].shape == (3, 4, 2) and batch["action"].dtype == np.float32
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0, 0], [10, 13, 16])
    np.testing.assert_array_equal(data[-1]["image"], data[6]["image"])
    with pytest.raises(IndexError, match="clip index 7 is out of range for 7 clips"):
        data[7]
    with pytest.raises(ValueError, match="needs at least one index"):
        data.batch([])
    data.close()
    assert data[0]["image"][0, 0, 0, 0] == 10  # reopens after close


def test_clip_dataset_errors(tmp_path):
    write(tmp_path)
    with pytest.raises(ValueError, match=r"keys \['pixels'\]: choose one or more of"):
        ClipDataset(tmp_path, 2, keys=("pixels",))
    with pytest.raises(ValueError, match=r"files \['x.h5'\] are not in the manifest .* it lists \['w0-00000.h5'"):
        ClipDataset(tmp_path, 2, files=["x.h5"])
    with pytest.raises(ValueError, match="name a file more than once"):
        ClipDataset(tmp_path, 2, files=["w0-00000.h5", "w0-00000.h5"])
    with pytest.raises(ValueError, match="seq_len must be a positive integer, got 0"):
        ClipDataset(tmp_path, 0)
    with pytest.raises(ValueError, match="no shard manifest"):
        ClipDataset(tmp_path / "nowhere", 2)
    manifest = read_manifest(tmp_path)
    manifest["shards"][0]["steps"] = 11
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="w0-00000.h5 has 10 steps, the manifest says 11"):
        ClipDataset(tmp_path, 2)
    (tmp_path / "w0-00000.h5").unlink()
    with pytest.raises(FileNotFoundError, match="w0-00000.h5 listed in .* is missing"):
        ClipDataset(tmp_path, 2)


def _read_in_child(data, queue):
    queue.put(data[5]["reward"].tolist())


def test_clip_dataset_after_fork_and_pickle(tmp_path):
    write(tmp_path)
    data = ClipDataset(tmp_path, 3, keys=("reward",))
    expected = data[5]["reward"].tolist()  # the parent now holds a handle
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(data, queue))
    child.start()
    assert queue.get(timeout=30) == expected
    child.join(timeout=30)
    assert child.exitcode == 0
    copy = pickle.loads(pickle.dumps(data))
    assert copy._handles._files == {}  # no handle travels
    assert copy[5]["reward"].tolist() == expected


def test_import_is_torch_free():
    code = ("import sys, distwm.datasets, distwm.datasets.video_shards; "
            "print(sorted(m for m in ('torch', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
