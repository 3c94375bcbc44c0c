"""The video datasets (distwm.datasets.video_datasets, distwm.datasets.tinyworlds) on tiny
local data: clips (C, T, H, W) float in [0, 1], their frames in order, the loaders, the config
path and every error message."""

from __future__ import annotations

import sys
import types

import h5py
import numpy as np
import pytest
import torch

from distwm.datasets import tinyworlds as tw
from distwm.datasets.video_datasets import (
    DATASET_TYPES, HDF5Dataset, ImageFolderDataset, NumPyDataset, RLEnvironmentDataset,
    VideoDatasetConfig, VideoFolderDataset, create_video_dataloader,
    create_video_dataset_from_config,
)
from distwm.datasets.video_shards import ShardWriter, assign_files, read_manifest, write_manifest

cv2 = pytest.importorskip("cv2")


def ramp(steps: int, height: int = 12, width: int = 16, channels: int = 3, step: int = 20) -> np.ndarray:
    """(T, H, W, C) uint8 frames, frame t uniformly t * step."""
    values = (np.arange(steps) * step).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (steps, height, width, channels)).copy()


def frame_means(clip: torch.Tensor) -> np.ndarray:
    return clip.mean(dim=(0, 2, 3)).numpy()


def check_clip(clip, channels=3, frames=4, size=8):
    assert clip.shape == (channels, frames, size, size) and clip.dtype == torch.float32
    assert 0.0 <= float(clip.min()) and float(clip.max()) <= 1.0


def write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (frames.shape[2], frames.shape[1]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame[..., ::-1])
    writer.release()


def write_shards(directory, steps=24, starts=(0, 9), steps_per_shard=8):
    t = np.arange(steps)
    chunk = {"image": ramp(steps, 6, 6, 3, step=10).transpose(0, 3, 1, 2).copy(),
             "action": np.zeros((steps, 2), np.float32), "reward": t.astype(np.float32),
             "is_first": np.isin(t, starts), "is_terminal": np.isin(t + 1, starts),
             "is_last": np.isin(t + 1, starts)}
    with ShardWriter(directory, "w", steps_per_shard=steps_per_shard, compression=None) as writer:
        writer.add_chunk(chunk)
    write_manifest(directory, writer.close(), {"env": "toy"})
    return directory


def test_video_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    write_video(tmp_path / "a.avi", ramp(10))
    write_video(tmp_path / "sub" / "b.AVI", ramp(7, step=30))
    (tmp_path / "notes.txt").write_text("not a video")
    data = VideoFolderDataset(tmp_path, num_frames=4, image_size=8)
    assert [p.name for p in data.video_paths] == ["a.avi", "b.AVI"]
    check_clip(data[0])
    np.testing.assert_allclose(frame_means(data[0]) * 255, [0, 60, 120, 180], atol=3)  # frames 0, 3, 6, 9
    np.testing.assert_allclose(frame_means(data[1]) * 255, [0, 60, 120, 180], atol=3)  # 0, 2, 4, 6
    assert len(VideoFolderDataset(tmp_path, recursive=False)) == 1
    assert len(VideoFolderDataset([tmp_path / "a.avi"], num_frames=2)) == 1
    with pytest.raises(ValueError, match=r"no files with extensions \('.mp4',\) in .* or its subfolders"):
        VideoFolderDataset(tmp_path, extensions=(".mp4",))
    with pytest.raises(FileNotFoundError, match="VideoFolderDataset: .*missing does not exist"):
        VideoFolderDataset(tmp_path / "missing")
    (tmp_path / "broken.avi").write_text("garbage")
    with pytest.raises(ValueError, match="broken.avi"):
        VideoFolderDataset(tmp_path / "broken.avi")[0]


@pytest.mark.parametrize("claimed", [0, 99])  # no frame count in the header, or a wrong one
def test_video_frames_when_the_header_count_is_wrong(tmp_path, monkeypatch, claimed):
    from distwm.datasets import video_readers

    class Capture:
        def __init__(self, path):
            self._capture = cv2.VideoCapture(path)

        def get(self, prop):
            return claimed if prop == cv2.CAP_PROP_FRAME_COUNT else self._capture.get(prop)

        def __getattr__(self, name):
            return getattr(self._capture, name)

    fake = types.SimpleNamespace(VideoCapture=Capture, CAP_PROP_FRAME_COUNT=cv2.CAP_PROP_FRAME_COUNT,
                                 cvtColor=cv2.cvtColor, COLOR_BGR2RGB=cv2.COLOR_BGR2RGB)
    write_video(tmp_path / "a.avi", ramp(10))
    monkeypatch.setattr(video_readers, "_cv2", lambda: fake)
    frames = video_readers.read_video_frames(tmp_path / "a.avi", 4)
    assert frames.shape == (4, 12, 16, 3)
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), [0, 60, 120, 180], atol=3)


def test_image_folder_order_padding_and_range(tmp_path):
    for name, count in (("seq_a", 3), ("seq_b", 6)):
        folder = tmp_path / name
        folder.mkdir()
        for i, frame in enumerate(ramp(count, 10, 10)):
            cv2.imwrite(str(folder / f"frame{[1, 2, 10, 11, 12, 13][i]}.png"), frame)
    data = ImageFolderDataset(tmp_path, num_frames=4, image_size=8)
    assert len(data) == 2
    check_clip(data[0])
    np.testing.assert_allclose(frame_means(data[0]) * 255, [0, 20, 40, 40], atol=1e-3)  # natural order, padded
    np.testing.assert_allclose(frame_means(data[1]) * 255, [0, 20, 40, 60], atol=1e-3)  # the first four
    raw = ImageFolderDataset(tmp_path / "seq_b", num_frames=4, image_size=8, normalize=False)
    assert len(raw) == 1 and float(raw[0].max()) == 60.0  # [0, 255] without normalize
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images with extensions .* in .*empty"):
        ImageFolderDataset([tmp_path / "empty"])[0]


def test_numpy_files(tmp_path):
    videos = np.stack([ramp(8, 6, 6), ramp(8, 6, 6, step=10)])  # (N, T, H, W, C)
    np.save(tmp_path / "v.npy", videos)
    data = NumPyDataset(tmp_path / "v.npy", num_frames=4, image_size=8)
    assert len(data) == 2
    check_clip(data[1])
    np.testing.assert_allclose(frame_means(data[1]) * 255, [0, 20, 50, 70], atol=1e-3)  # frames 0, 2, 5, 7
    one = ramp(5, 6, 6, channels=1).transpose(0, 3, 1, 2) / 255.0  # one (T, C, H, W) float video in [0, 1]
    np.savez(tmp_path / "v.npz", first=np.zeros(3), clip=one)
    data = NumPyDataset(tmp_path / "v.npz", num_frames=5, image_size=6, key="clip")
    assert len(data) == 1
    check_clip(data[0], channels=1, frames=5, size=6)
    np.testing.assert_allclose(frame_means(data[0]) * 255, [0, 20, 40, 60, 80], atol=1e-3)
    with pytest.raises(ValueError, match=r"array 'videos' is not in .*v.npz; it has \['first', 'clip'\]"):
        NumPyDataset(tmp_path / "v.npz", key="videos")
    with pytest.raises(ValueError, match=r"v.npz must be \(T, H, W\), \(T, H, W, C\) or \(T, C, H, W\), got shape \(3,\)"):
        NumPyDataset(tmp_path / "v.npz")  # its first array, 'first' (3,), is no video
    np.save(tmp_path / "odd.npy", np.zeros((2, 5, 6, 6, 7), np.uint8))
    with pytest.raises(ValueError, match=r"of shape \(5, 6, 6, 7\) has no channel axis of size \(1, 3, 4\)"):
        NumPyDataset(tmp_path / "odd.npy")
    (tmp_path / "v.txt").write_text("")
    with pytest.raises(ValueError, match="reads .npy or .npz files"):
        NumPyDataset(tmp_path / "v.txt")


def test_rl_episodes_and_shards(tmp_path):
    (tmp_path / "eps" / "run1").mkdir(parents=True)
    np.savez(tmp_path / "eps" / "e0.npz", observations=ramp(10, 6, 6), actions=np.zeros(10))
    np.savez(tmp_path / "eps" / "run1" / "e1.npz", observations=ramp(4, 6, 6).transpose(0, 3, 1, 2))
    data = RLEnvironmentDataset(tmp_path / "eps", num_frames=4, image_size=8)
    assert len(data) == 2
    check_clip(data[0])
    np.testing.assert_allclose(frame_means(data[0]) * 255, [0, 60, 120, 180], atol=1e-3)
    np.testing.assert_allclose(frame_means(data[1]) * 255, [0, 20, 40, 60], atol=1e-3)
    with pytest.raises(ValueError, match=r"has no array 'pixels' \(obs_key\); it has \['observations', 'actions'\]"):
        RLEnvironmentDataset(tmp_path / "eps" / "e0.npz", obs_key="pixels")[0]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="has neither a manifest.json .a shard directory. nor .npz episodes"):
        RLEnvironmentDataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="files and stride apply to a shard directory"):
        RLEnvironmentDataset(tmp_path / "eps", files=["w-00000.h5"])

    shards = write_shards(tmp_path / "shards")  # files of 8 steps; episodes start at 0 and 9
    data = RLEnvironmentDataset(shards, num_frames=4, image_size=8)
    assert len(data) == 5 + 4 + 5  # file 0: starts 0-4; file 1 (8-15): 9-12; file 2: 16-20
    clips = torch.stack([data[i] for i in range(len(data))])
    steps = (clips.mean(dim=(1, 3, 4)) * 25.5).round().int()  # frame t is 10 * t
    assert (steps[:, 1:] - steps[:, :-1] == 1).all()  # consecutive, never across 8 / 9 / 16
    assert steps[:, 0].tolist() == [0, 1, 2, 3, 4, 9, 10, 11, 12, 16, 17, 18, 19, 20]
    rank1 = RLEnvironmentDataset(shards, num_frames=4, image_size=8,
                                 files=assign_files(read_manifest(shards), 1, 2))
    assert len(rank1) == 4
    with pytest.raises(ValueError, match="obs_key 'pixels' must be 'observations' or 'image'"):
        RLEnvironmentDataset(shards, obs_key="pixels")


def test_hdf5_file_memmap_and_shards(tmp_path):
    videos = np.stack([ramp(6, 5, 5), ramp(6, 5, 5, step=40)])
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["videos"] = videos  # (N, T, H, W, C)
        f["chw"] = videos.transpose(0, 1, 4, 2, 3)  # (N, T, C, H, W)
        f["grey"] = videos[..., 0]  # (N, T, H, W)
        f["flat"] = np.zeros(4)
    eager = HDF5Dataset(tmp_path / "v.h5", num_frames=3, image_size=8)
    lazy = HDF5Dataset(tmp_path / "v.h5", num_frames=3, image_size=8, memmap=True)
    assert eager._data is not None and lazy._data is None and len(eager) == len(lazy) == 2
    for i in range(2):
        check_clip(eager[i], frames=3)
        torch.testing.assert_close(eager[i], lazy[i])
    np.testing.assert_allclose(frame_means(lazy[1]) * 255, [0, 80, 200], atol=1e-3)  # frames 0, 2, 5
    torch.testing.assert_close(HDF5Dataset(tmp_path / "v.h5", 3, 8, key="chw", memmap=True)[1], lazy[1])
    check_clip(HDF5Dataset(tmp_path / "v.h5", 3, 8, key="grey")[0], channels=1, frames=3)
    with pytest.raises(ValueError, match=r"has no dataset 'frames' \(key\); it has \['chw', 'flat', 'grey', 'videos'\]"):
        HDF5Dataset(tmp_path / "v.h5", key="frames")
    with pytest.raises(ValueError, match=r"\['flat'\] must be \(N, T, H, W, C\)"):
        HDF5Dataset(tmp_path / "v.h5", key="flat")
    with pytest.raises(FileNotFoundError, match="HDF5Dataset: .*none.h5 does not exist"):
        HDF5Dataset(tmp_path / "none.h5")
    shards = write_shards(tmp_path / "shards")
    from_shards = HDF5Dataset(shards, num_frames=4, image_size=8, stride=4)
    assert len(from_shards) == 2 + 1 + 2  # starts 0, 4 | 9 | 16, 20
    torch.testing.assert_close(from_shards[2], RLEnvironmentDataset(shards, 4, 8)[5])
    with pytest.raises(ValueError, match="key 'frames' must be 'videos' or 'image'"):
        HDF5Dataset(shards, key="frames")


def test_transform_sees_pixels_before_normalising(tmp_path):
    np.save(tmp_path / "v.npy", ramp(4, 8, 8))
    data = NumPyDataset(tmp_path / "v.npy", num_frames=4, image_size=8, transform=lambda clip: 255.0 - clip)
    np.testing.assert_allclose(frame_means(data[0]) * 255, [255, 235, 215, 195], atol=1e-3)
    with pytest.raises(IndexError, match="index 1 is out of range for 1 clips"):
        data[1]
    with pytest.raises(ValueError, match="image_size must be a positive integer, got 0"):
        NumPyDataset(tmp_path / "v.npy", image_size=0)


def test_create_video_dataloader_every_type(tmp_path):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "a.avi", ramp(6))
    (tmp_path / "images" / "s").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "s" / "0.png"), ramp(1)[0])
    np.save(tmp_path / "v.npy", np.stack([ramp(6)] * 3))
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["videos"] = np.stack([ramp(6)] * 3)
    sources = {"video_folder": tmp_path / "videos", "image_folder": tmp_path / "images",
               "numpy": tmp_path / "v.npy", "rl": write_shards(tmp_path / "shards"), "hdf5": tmp_path / "v.h5"}
    assert set(sources) == set(DATASET_TYPES)
    for dataset_type, source in sources.items():
        dataset, loader = create_video_dataloader(dataset_type, source, num_frames=4, image_size=8,
                                                  batch_size=2, num_workers=0, shuffle=False)
        assert isinstance(dataset, DATASET_TYPES[dataset_type])
        batch = next(iter(loader))
        assert batch.shape == (min(2, len(dataset)), 3, 4, 8, 8) and batch.dtype == torch.float32, dataset_type
    with pytest.raises(ValueError, match=r"Unknown dataset_type 'mp4'; choose one of \['video_folder', "
                                         r"'image_folder', 'numpy', 'rl', 'hdf5'\]"):
        create_video_dataloader("mp4", tmp_path)
    with pytest.raises(ValueError, match=r"'numpy' \(NumPyDataset\) takes no \['obs_key'\]; its options are"):
        create_video_dataloader("numpy", tmp_path / "v.npy", obs_key="x")
    with pytest.raises(ValueError, match="num_workers must be an integer >= 0, got -1"):
        create_video_dataloader("numpy", tmp_path / "v.npy", num_workers=-1)


def test_loader_workers_read_shards_and_hdf5(tmp_path):
    shards = write_shards(tmp_path / "shards")
    dataset, loader = create_video_dataloader("hdf5", shards, num_frames=4, image_size=8, batch_size=7,
                                              num_workers=2, shuffle=False, memmap=True)
    dataset[0]  # the parent holds handles before the workers fork
    batches = list(loader)
    assert [len(b) for b in batches] == [7, 7]
    torch.testing.assert_close(torch.cat(batches), torch.stack([dataset[i] for i in range(len(dataset))]))


def test_config_path(tmp_path):
    np.save(tmp_path / "v.npy", np.stack([ramp(6)] * 5))
    config = VideoDatasetConfig.from_dict({"dataset_type": "numpy", "data_source": str(tmp_path / "v.npy"),
                                           "num_frames": 3, "image_size": 8, "batch_size": 2,
                                           "num_workers": 0, "pin_memory": False})
    dataset, loader = create_video_dataset_from_config(config)
    assert len(dataset) == 5 and len(loader) == 2  # shuffle drops the last partial batch
    assert next(iter(loader)).shape == (2, 3, 3, 8, 8)
    assert VideoDatasetConfig.from_dict(config.to_dict()) == config
    (tmp_path / "v").mkdir()
    write_video(tmp_path / "v" / "a.avi", ramp(6))
    dataset, _ = create_video_dataset_from_config(VideoDatasetConfig(data_source=str(tmp_path / "v"), num_workers=0))
    assert dataset.extensions == (".mp4", ".avi", ".mkv") and len(dataset) == 1


# -- TinyWorlds -------------------------------------------------------------------------------

def tiny_world_file(path, frames=50, height=12):
    """A TinyWorlds file as AlmondGod/tinyworlds writes it: one (N, H, W, C) uint8 stream."""
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=ramp(frames, height, height, step=5), compression="lzf")
    return path


def test_tinyworlds_local_file_and_splits(tmp_path):
    path = tiny_world_file(tmp_path / "pong.h5")
    train = tw.TinyWorldsDataset("PONG", num_frames=4, image_size=8, data_file=str(path))
    val = tw.TinyWorldsDataset("PONG", num_frames=4, image_size=8, split="val", data_file=str(path))
    full = tw.TinyWorldsDataset("PONG", num_frames=4, image_size=8, split="all", data_file=str(path))
    assert (len(train), len(val), len(full)) == (42, 2, 47)  # frames 0-44 | 45-49 | 0-49
    check_clip(train[0])
    firsts = [round(float(frame_means(d[i])[0]) * 255 / 5) for d in (train, val) for i in (0, -1)]
    assert firsts == [0, 41, 45, 46]  # windows of consecutive frames that stay in their split
    np.testing.assert_allclose(frame_means(train[3]) * 255, [15, 20, 25, 30], atol=1e-3)
    info = train.get_info()
    assert info["name"] == "PONG" and info["num_samples"] == 42 and info["raw_resolution"] == "12x12"
    dataset, loader = tw.create_tinyworlds_dataloader("PONG", num_frames=4, image_size=8, batch_size=5,
                                                      num_workers=0, data_file=str(path))
    assert next(iter(loader)).shape == (5, 3, 4, 8, 8) and len(loader) == 42 // 5


def test_tinyworlds_file_of_videos(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["videos"] = np.stack([ramp(7, 6, 6, step=10 + i) for i in range(10)])  # (N, T, H, W, C)
    train = tw.TinyWorldsDataset("ZELDA", num_frames=3, image_size=8, data_file=str(tmp_path / "v.h5"))
    val = tw.TinyWorldsDataset("ZELDA", num_frames=3, image_size=8, split="val", data_file=str(tmp_path / "v.h5"))
    assert (len(train), len(val), train.video_length) == (9, 1, 7)
    check_clip(val[0], frames=3)
    np.testing.assert_allclose(frame_means(val[0]) * 255, [0, 3 * 19, 6 * 19], atol=1e-3)  # video 9: frames 0, 3, 6


def test_tinyworlds_errors_and_info(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown TinyWorlds dataset_name 'MARIO'; choose one of \['PICO_DOOM', "
                                         r"'PONG', 'ZELDA', 'POLE_POSITION', 'SONIC'\]"):
        tw.TinyWorldsDataset("MARIO", data_file="x.h5")
    with pytest.raises(ValueError, match="Unknown TinyWorlds dataset_name 'MARIO'"):
        tw.TinyWorldsDataLoader.get_dataset_info("MARIO")
    assert tw.TinyWorldsDataLoader.get_dataset_info("ZELDA")["filename"] == "zelda_frames.h5"
    assert tw.TinyWorldsDataLoader.list_available_datasets() == list(tw.DATASET_CONFIGS)
    assert tw.TinyWorldsDataset.DATASET_CONFIGS is tw.DATASET_CONFIGS
    path = tiny_world_file(tmp_path / "short.h5", frames=6)
    with pytest.raises(ValueError, match=r"split 'test' is not one of \['train', 'val', 'all'\]"):
        tw.TinyWorldsDataset("PONG", split="test", data_file=str(path))
    with pytest.raises(ValueError, match="split 'train' has 5 frames, too few for a 16-frame clip"):
        tw.TinyWorldsDataset("PONG", data_file=str(path))
    with pytest.raises(FileNotFoundError, match="data_file .*nope.h5 does not exist"):
        tw.TinyWorldsDataset("PONG", data_file=str(tmp_path / "nope.h5"))
    with pytest.raises(FileNotFoundError, match="pong_frames.h5 is missing and download=False"):
        tw.TinyWorldsDataset("PONG", cache_dir=str(tmp_path / "cache"), download=False)
    assert not (tmp_path / "cache").exists()  # nothing is created without a download
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["images"] = np.zeros((3, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"has none of the datasets \('frames', 'videos'\); it has \['images'\]"):
        tw.TinyWorldsDataset("PONG", data_file=str(tmp_path / "other.h5"))


def test_tinyworlds_download_path(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(ImportError, match="needs huggingface_hub: pip install huggingface_hub"):
        tw.TinyWorldsDataset("SONIC", cache_dir=str(tmp_path))
    with pytest.raises(ImportError, match="needs huggingface_hub"):
        tw.download_all_datasets(str(tmp_path))
    calls = []

    def hf_hub_download(repo_id, filename, repo_type, local_dir):
        calls.append((repo_id, filename, repo_type))
        if filename.startswith("zelda"):
            raise OSError("404 from the hub")
        return str(tiny_world_file(f"{local_dir}/{filename}", frames=20))

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    data = tw.TinyWorldsDataset("SONIC", num_frames=4, image_size=8, cache_dir=str(tmp_path / "c"))
    assert calls == [("AlmondGod/tinyworlds", "sonic_frames.h5", "dataset")] and len(data) == 15
    tw.TinyWorldsDataset("SONIC", num_frames=4, cache_dir=str(tmp_path / "c"), download=False)  # cached now
    results = tw.download_all_datasets(str(tmp_path / "c"))
    assert results["ZELDA"] is None and results["SONIC"] == str(tmp_path / "c" / "sonic_frames.h5")
    assert all(results[n] == str(tmp_path / "c" / tw.DATASET_CONFIGS[n]["filename"])
               for n in ("PICO_DOOM", "PONG", "POLE_POSITION"))
    assert len(calls) == 1 + 4  # SONIC was not fetched again
