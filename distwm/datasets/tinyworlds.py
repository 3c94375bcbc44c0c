"""TinyWorlds Dataset Loaders

Loads pre-processed video datasets from HuggingFace for training Genie-style world models.
Based on: AlmondGod/tinyworlds

Available datasets: - PICO_DOOM: Minimal Doom gameplay - PONG: Classic Pong - ZELDA: Zelda
Ocarina of Time (2D) - POLE_POSITION: Racing game - SONIC: Sonic the Hedgehog

Each game is one HDF5 file (``repo_id`` / ``filename`` in :data:`DATASET_CONFIGS`) whose
``frames`` dataset is one continuous stream ``(N, H, W, C)`` uint8, as AlmondGod/tinyworlds
writes it; an item is a window of ``num_frames`` consecutive frames. A ``videos`` / ``frames``
dataset of separate videos ``(N, T, H, W, C)``, ``(N, T, C, H, W)`` or ``(N, T, H, W)`` is read
too (an item per video, ``num_frames`` evenly spaced frames). Items are ``(C, T, H, W)`` float32
clips in ``[0, 1]`` resized to ``image_size``, so batches are ``(B, C, T, H, W)`` as Genie takes
them.

``split`` divides the stream (or the videos) in time as TinyWorlds does: "train" the first 90 %,
"val" the last 10 %, "all" everything; a window never crosses the split.

A file is found at ``data_file``, else at ``<cache_dir>/<filename>`` (``cache_dir`` defaults
to ``~/.cache/tinyworlds``), else downloaded there with ``huggingface_hub.hf_hub_download``
when ``download`` (the only network access, and only then is ``huggingface_hub`` imported).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from torch.utils.data import DataLoader

from distwm.configs.base import ConfigBase
from distwm.datasets.video_datasets import VideoDatasetBase, make_loader
from distwm.datasets.video_readers import CHANNEL_COUNTS, sample_frame_indices, to_thwc
from distwm.datasets.video_shards import H5FileCache, positive_int

__all__ = [
    "DATASET_CONFIGS", "SPLITS", "DEFAULT_CACHE_DIR", "TinyWorldsConfig", "TinyWorldsDataset",
    "TinyWorldsDataLoader", "create_tinyworlds_dataloader", "download_all_datasets",
    "dataset_file",
]

_log = logging.getLogger(__name__)

_REPO = "AlmondGod/tinyworlds"
DATASET_CONFIGS: Dict[str, Dict[str, str]] = {
    "PICO_DOOM": {"repo_id": _REPO, "filename": "picodoom_frames.h5", "description": "Minimal Doom gameplay"},
    "PONG": {"repo_id": _REPO, "filename": "pong_frames.h5", "description": "Classic Pong"},
    "ZELDA": {"repo_id": _REPO, "filename": "zelda_frames.h5", "description": "Zelda Ocarina of Time (2D)"},
    "POLE_POSITION": {"repo_id": _REPO, "filename": "pole_position_frames.h5", "description": "Racing game"},
    "SONIC": {"repo_id": _REPO, "filename": "sonic_frames.h5", "description": "Sonic the Hedgehog"},
}
#: the part of the stream (fractions of its length) each split reads
SPLITS = {"train": (0.0, 0.9), "val": (0.9, 1.0), "all": (0.0, 1.0)}
DEFAULT_CACHE_DIR = "~/.cache/tinyworlds"
_DATA_KEYS = ("frames", "videos")


def _dataset_config(dataset_name: str) -> Dict[str, str]:
    if dataset_name not in DATASET_CONFIGS:
        raise ValueError(f"Unknown TinyWorlds dataset_name {dataset_name!r}; choose one of {list(DATASET_CONFIGS)}")
    return DATASET_CONFIGS[dataset_name]


def _hf_hub_download():
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ImportError("downloading TinyWorlds datasets needs huggingface_hub: "
                          "pip install huggingface_hub (or pass data_file= a local copy)") from exc
    return hf_hub_download


def dataset_file(dataset_name: str, cache_dir: Optional[str] = None, download: bool = True) -> Path:
    """The local HDF5 file of ``dataset_name``: ``<cache_dir>/<filename>``, downloaded from
    the HuggingFace dataset repository first when it is missing and ``download``."""
    config = _dataset_config(dataset_name)
    folder = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
    local = folder / config["filename"]
    if local.is_file():
        return local
    if not download:
        raise FileNotFoundError(f"TinyWorlds {dataset_name}: {local} is missing and download=False; "
                                f"download it from https://huggingface.co/datasets/{config['repo_id']} "
                                f"or pass data_file=")
    hf_hub_download = _hf_hub_download()
    folder.mkdir(parents=True, exist_ok=True)
    _log.info("downloading TinyWorlds %s (%s) to %s", dataset_name, config["filename"], folder)
    path = Path(hf_hub_download(repo_id=config["repo_id"], filename=config["filename"],
                                repo_type="dataset", local_dir=str(folder)))
    if not path.is_file():
        raise FileNotFoundError(f"TinyWorlds {dataset_name}: the download reported {path}, which does not exist")
    return path


@dataclass
class TinyWorldsConfig(ConfigBase):
    """Configuration for TinyWorlds datasets."""

    dataset_name: str = "SONIC"
    num_frames: int = 16
    image_size: int = 64
    batch_size: int = 4
    num_workers: int = 4
    cache_dir: Optional[str] = None
    split: str = "train"


class TinyWorldsDataset(VideoDatasetBase):
    """Dataset for TinyWorlds game video data (see the module docstring). The constructor reads
    the file's shape only; frames are read per item through one handle per process."""

    DATASET_CONFIGS = DATASET_CONFIGS

    def __init__(self, dataset_name: str = "SONIC", num_frames: int = 16, image_size: int = 64,
                 split: str = "train", cache_dir: Optional[str] = None, download: bool = True,
                 data_file: Optional[str] = None):
        import h5py

        self.config = _dataset_config(dataset_name)
        if split not in SPLITS:
            raise ValueError(f"TinyWorlds split {split!r} is not one of {list(SPLITS)}")
        self.dataset_name, self.split, self.cache_dir = dataset_name, split, cache_dir
        if data_file is not None:
            path = Path(data_file)
            if not path.is_file():
                raise FileNotFoundError(f"TinyWorlds data_file {path} does not exist")
        else:
            path = dataset_file(dataset_name, cache_dir, download)
        with h5py.File(path, "r") as f:
            keys = [k for k in _DATA_KEYS if k in f]
            if not keys:
                raise ValueError(f"TinyWorlds file {path} has none of the datasets {_DATA_KEYS}; it has {list(f.keys())}")
            self._data_key = keys[0]
            shape = tuple(f[self._data_key].shape)
        self.stream = len(shape) == 4 and shape[-1] in CHANNEL_COUNTS
        if len(shape) not in (4, 5):
            raise ValueError(f"TinyWorlds {path}[{self._data_key!r}] must be (N, H, W, C) frames or "
                             f"(N, T, ...) videos, got shape {shape}")
        frame_shape = shape[1:] if self.stream else shape[2:]
        low, high = SPLITS[split]
        self._first, end = int(shape[0] * low), int(shape[0] * high)
        num_frames = positive_int("TinyWorldsDataset num_frames", num_frames)
        self.num_samples = max(0, end - self._first - num_frames + 1) if self.stream else end - self._first
        if self.num_samples < 1:
            raise ValueError(f"TinyWorlds {path} split {split!r} has {end - self._first} "
                             f"{'frames' if self.stream else 'videos'}, too few for a {num_frames}-frame clip")
        self.video_length = num_frames if self.stream else shape[1]
        thwc = to_thwc(np.broadcast_to(np.zeros((), np.uint8), (1, *frame_shape)), f"TinyWorlds {path} frames")
        self.raw_height, self.raw_width, self.channels = thwc.shape[1:]
        self._handles = H5FileCache()
        super().__init__(path, num_frames, image_size, transform=None, normalize=True)

    def _get_video_paths(self):
        return range(self.num_samples)

    def _get_local_path(self) -> Path:
        return Path(self.data_source)

    def _read_frames(self, idx: int) -> np.ndarray:
        data = self._handles.get(self.data_source)[self._data_key]
        if self.stream:
            start = self._first + idx
            return to_thwc(data[start:start + self.num_frames])
        video = data[self._first + idx]
        return to_thwc(video[sample_frame_indices(len(video), self.num_frames)])

    def get_info(self) -> Dict:
        """Return dataset information."""
        return {"name": self.dataset_name, "description": self.config["description"],
                "split": self.split, "file": str(self.data_source), "num_samples": self.num_samples,
                "video_length": self.video_length,
                "raw_resolution": f"{self.raw_height}x{self.raw_width}", "channels": self.channels}


class TinyWorldsDataLoader:
    """Factory class for creating TinyWorlds dataloaders."""

    DATASET_NAMES = list(DATASET_CONFIGS)

    @staticmethod
    def create_dataloader(dataset_name: str = "SONIC", num_frames: int = 16, image_size: int = 64,
                          batch_size: int = 4, num_workers: int = 4, shuffle: bool = True,
                          cache_dir: Optional[str] = None, download: bool = True,
                          data_file: Optional[str] = None, *,
                          split: str = "train") -> Tuple[TinyWorldsDataset, DataLoader]:
        """``(dataset, loader)`` of ``split`` of a TinyWorlds game; batches ``(B, C, T, H, W)``."""
        dataset = TinyWorldsDataset(dataset_name=dataset_name, num_frames=num_frames,
                                    image_size=image_size, split=split, cache_dir=cache_dir,
                                    download=download, data_file=data_file)
        return dataset, make_loader(dataset, batch_size, num_workers, shuffle, pin_memory=True)

    @staticmethod
    def list_available_datasets() -> List[str]:
        """List all available dataset names."""
        return list(DATASET_CONFIGS)

    @staticmethod
    def get_dataset_info(dataset_name: str) -> Dict:
        """Get information about a specific dataset without downloading."""
        return dict(_dataset_config(dataset_name))


def create_tinyworlds_dataloader(dataset_name: str = "SONIC", num_frames: int = 16,
                                 image_size: int = 64, batch_size: int = 4, num_workers: int = 4,
                                 shuffle: bool = True, cache_dir: Optional[str] = None,
                                 download: bool = True, data_file: Optional[str] = None, *,
                                 split: str = "train") -> Tuple[TinyWorldsDataset, DataLoader]:
    """Factory function to create TinyWorlds dataloaders (see
    :meth:`TinyWorldsDataLoader.create_dataloader`)."""
    return TinyWorldsDataLoader.create_dataloader(
        dataset_name, num_frames, image_size, batch_size, num_workers, shuffle, cache_dir,
        download, data_file, split=split)


def download_all_datasets(cache_dir: Optional[str] = None) -> Dict[str, Optional[str]]:
    """Download every TinyWorlds game missing from ``cache_dir``; ``{name: local path, or
    None where that download failed}`` (each failure is logged)."""
    _hf_hub_download()  # no huggingface_hub: say so once, not as five failures
    results: Dict[str, Optional[str]] = {}
    for name in DATASET_CONFIGS:
        try:
            results[name] = str(dataset_file(name, cache_dir, download=True))
        except Exception as exc:  # a network or hub error of one game must not stop the others
            _log.error("TinyWorlds %s could not be downloaded: %s", name, exc)
            results[name] = None
    return results
