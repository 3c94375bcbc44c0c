"""Video datasets for the dataset-trained families (Genie): folders of videos or images, numpy
and HDF5 arrays, RL recordings and collected shard directories.

Every dataset returns one clip per item: a ``(C, T, H, W)`` float32 tensor of ``num_frames``
frames resized to ``image_size x image_size``, in ``[0, 1]`` when ``normalize`` (the default)
and in ``[0, 255]`` otherwise; ``transform`` (if any) sees the ``[0, 255]`` clip before that
division. Videos, arrays and episodes are sampled to ``num_frames`` evenly spaced frames (one
item per video, as in the seed); an image folder gives its first ``num_frames`` images (the last
repeated when there are fewer); a shard directory written by
:class:`~distwm.datasets.video_shards.ShardWriter` (``RLEnvironmentDataset`` and
``HDF5Dataset``) gives every ``num_frames``-step clip inside an episode
(:class:`~distwm.datasets.video_shards.ClipDataset`), those of ``files`` only when given (a
data-parallel rank's :func:`~distwm.datasets.video_shards.assign_files`).

Files are opened lazily, one handle per process, so the datasets are safe in DataLoader workers.
"""

from __future__ import annotations

import abc

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from distwm.configs.base import ConfigBase
from distwm.datasets.video_readers import (
    frames_to_clip, natural_sort_key, npz_keys, npz_member_shape, pixel_scale, read_image,
    read_video_frames, resize_frames, sample_frame_indices, to_thwc,
)
from distwm.datasets.video_shards import MANIFEST_NAME, ClipDataset, H5FileCache, positive_int

__all__ = [
    "DatasetConfig", "VideoDatasetBase", "VideoFolderDataset", "ImageFolderDataset",
    "NumPyDataset", "RLEnvironmentDataset", "HDF5Dataset", "DATASET_TYPES",
    "create_video_dataloader", "VideoDatasetConfig", "create_video_dataset_from_config",
]

_log = logging.getLogger(__name__)
Source = Union[str, Path, List[str], List[Path]]


def _existing(path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    return path


def _layout_check(shape: Sequence[int], dtype, what: str) -> None:
    """Raise ``ValueError`` now if a clip of ``shape`` has no layout :func:`to_thwc` reads."""
    to_thwc(np.broadcast_to(np.zeros((), dtype), tuple(shape)), what)


@dataclass
class DatasetConfig(ConfigBase):
    """Base configuration for datasets."""

    num_frames: int = 16
    image_size: int = 64
    batch_size: int = 4
    num_workers: int = 4
    pin_memory: bool = True
    shuffle: bool = True


class VideoDatasetBase(Dataset, abc.ABC):
    """Abstract base class for video datasets. A subclass lists its items in
    ``_get_video_paths`` and reads item ``idx`` as ``(T, H, W, C)`` frames in ``_read_frames``
    (and may override ``_load_video`` to return the ``(C, T, H, W)`` float clip in ``[0, 255]``
    itself)."""

    def __init__(self, data_source: Source, num_frames: int = 16, image_size: int = 64,
                 transform: Optional[Callable] = None, normalize: bool = True):
        self.data_source = data_source
        self.num_frames = positive_int(f"{type(self).__name__} num_frames", num_frames)
        self.image_size = positive_int(f"{type(self).__name__} image_size", image_size)
        self.transform = transform
        self.normalize = normalize
        self.video_paths: Sequence[Union[Path, int]] = self._get_video_paths()

    @abc.abstractmethod
    def _get_video_paths(self) -> Sequence[Union[Path, int]]:
        """The dataset's items (paths or indices), one clip each."""

    @abc.abstractmethod
    def _read_frames(self, idx: int) -> np.ndarray:
        """Item ``idx`` as ``(T, H, W, C)`` frames."""

    def _load_video(self, idx: int) -> torch.Tensor:
        return torch.from_numpy(frames_to_clip(self._read_frames(idx), self.num_frames, self.image_size))

    def __len__(self) -> int:
        return len(self.video_paths)

    def __getitem__(self, idx: int) -> torch.Tensor:
        n = len(self)
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or not -n <= idx < n:
            raise IndexError(f"{type(self).__name__} index {idx!r} is out of range for {n} clips")
        video = self._load_video(int(idx) % n)
        if self.transform is not None:
            video = self.transform(video)
        return video / 255.0 if self.normalize else video


def _list_files(source: Source, extensions: Sequence[str], recursive: bool, what: str) -> list[Path]:
    if isinstance(source, (list, tuple)):
        return [_existing(p, what) for p in source]
    path = _existing(source, what)
    if path.is_file():
        return [path]
    suffixes = {e.lower() for e in extensions}
    candidates = path.rglob("*") if recursive else path.glob("*")
    found = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        raise ValueError(f"{what}: no files with extensions {tuple(extensions)} in {path}"
                         f"{' or its subfolders' if recursive else ''}")
    return found


class VideoFolderDataset(VideoDatasetBase):
    """Videos (``extensions``) in a folder (its subfolders too when ``recursive``), one file
    or a list of files; decoded with OpenCV, ``num_frames`` evenly spaced frames a video."""

    def __init__(self, data_source: Source, num_frames: int = 16, image_size: int = 64,
                 transform: Optional[Callable] = None, normalize: bool = True,
                 extensions: Tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov"),
                 recursive: bool = True):
        self.extensions = tuple(extensions)
        self.recursive = recursive
        super().__init__(data_source, num_frames, image_size, transform, normalize)

    def _get_video_paths(self) -> Sequence[Union[Path, int]]:
        return _list_files(self.data_source, self.extensions, self.recursive, "VideoFolderDataset")

    def _read_frames(self, idx: int) -> np.ndarray:
        return read_video_frames(self.video_paths[idx], self.num_frames)


class ImageFolderDataset(VideoDatasetBase):
    """Image sequences: each subfolder of ``data_source`` is one (the folder itself when it has
    no subfolders; a list names the folders). Images (``extensions``) are ordered by
    ``image_sort_key`` (default: natural order of the file names, ``2.png`` before ``10.png``)."""

    def __init__(self, data_source: Source, num_frames: int = 16, image_size: int = 64,
                 transform: Optional[Callable] = None, normalize: bool = True,
                 extensions: Tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp"),
                 image_sort_key: Optional[Callable] = None):
        self.extensions = tuple(extensions)
        self.image_sort_key = image_sort_key or natural_sort_key
        super().__init__(data_source, num_frames, image_size, transform, normalize)

    def _get_video_paths(self) -> Sequence[Union[Path, int]]:
        if isinstance(self.data_source, (list, tuple)):
            return [_existing(p, "ImageFolderDataset") for p in self.data_source]
        path = _existing(self.data_source, "ImageFolderDataset")
        if path.is_file():
            return [path.parent]
        return sorted(d for d in path.iterdir() if d.is_dir()) or [path]

    def _read_frames(self, idx: int) -> np.ndarray:
        folder = self.video_paths[idx]
        suffixes = {e.lower() for e in self.extensions}
        images = sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes),
                        key=self.image_sort_key)[: self.num_frames]
        if not images:
            raise ValueError(f"ImageFolderDataset: no images with extensions {self.extensions} in {folder}")
        frames = [resize_frames(pixel_scale(read_image(p)[None]), self.image_size)[0] for p in images]
        frames += [frames[-1]] * (self.num_frames - len(frames))
        return np.stack(frames)


class NumPyDataset(VideoDatasetBase):
    """Videos in a ``.npy`` file or in array ``key`` of a ``.npz`` (default: its first):
    ``(N, T, ...)`` is N videos, ``(T, ...)`` one; frames ``(H, W)``, ``(H, W, C)`` or
    ``(C, H, W)``. A ``.npy`` is memory-mapped; a ``.npz`` array is loaded on first use."""

    def __init__(self, data_source: Union[str, Path], num_frames: int = 16, image_size: int = 64,
                 transform: Optional[Callable] = None, normalize: bool = True,
                 key: Optional[str] = None):
        path = _existing(data_source, "NumPyDataset")
        if path.suffix not in (".npy", ".npz"):
            raise ValueError(f"NumPyDataset reads .npy or .npz files, got {path}")
        if path.suffix == ".npz":
            keys = npz_keys(path)
            key = keys[0] if key is None and keys else key
            if key not in keys:
                raise ValueError(f"NumPyDataset: array {key!r} is not in {path}; it has {keys}")
            shape = npz_member_shape(path, key)
            dtype = np.uint8
        else:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            shape, dtype = array.shape, array.dtype
            del array
        self.key = key
        self._batched = len(shape) == 5
        _layout_check(shape[1:] if self._batched else shape, dtype, f"NumPyDataset {path}")
        self.num_samples = shape[0] if self._batched else 1
        self._data: Optional[np.ndarray] = None
        super().__init__(data_source, num_frames, image_size, transform, normalize)

    def _get_video_paths(self) -> Sequence[Union[Path, int]]:
        return range(self.num_samples)

    def _array(self) -> np.ndarray:
        if self._data is None:
            path = Path(self.data_source)
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    self._data = archive[self.key]
            else:
                self._data = np.load(path, mmap_mode="r", allow_pickle=False)
        return self._data

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}  # workers map / load the file themselves

    def _read_frames(self, idx: int) -> np.ndarray:
        video = self._array()[idx] if self._batched else self._array()
        return to_thwc(video[sample_frame_indices(len(video), self.num_frames)])


def _shard_clips(source, num_frames: int, files, stride: int, what: str) -> Optional[ClipDataset]:
    """The clips of a shard directory (``None`` for any other source)."""
    if Path(source).is_dir() and (Path(source) / MANIFEST_NAME).is_file():
        return ClipDataset(source, num_frames, files=files, keys=("image",), stride=stride)
    if files is not None or stride != 1:
        raise ValueError(f"{what}: files and stride apply to a shard directory (with "
                         f"{MANIFEST_NAME}); {source} is not one")
    return None


def _clip_frames(clips: ClipDataset, idx: int) -> np.ndarray:
    return clips[idx]["image"].transpose(0, 2, 3, 1)  # stored (T, C, H, W)


class RLEnvironmentDataset(VideoDatasetBase):
    """RL recordings: a shard directory (see the module docstring; ``obs_key`` "observations"
    or "image"), one ``.npz`` episode, or a directory of ``.npz`` episodes (searched
    recursively) whose array ``obs_key`` holds the frames."""

    def __init__(self, data_source: Union[str, Path], num_frames: int = 16, image_size: int = 64,
                 transform: Optional[Callable] = None, normalize: bool = True,
                 obs_key: str = "observations", *, files: Optional[Sequence[str]] = None,
                 stride: int = 1):
        self.obs_key = obs_key
        _existing(data_source, "RLEnvironmentDataset")
        self.clips = _shard_clips(data_source, positive_int("RLEnvironmentDataset num_frames", num_frames),
                                  files, stride, "RLEnvironmentDataset")
        if self.clips is not None and obs_key not in ("observations", "image"):
            raise ValueError(f"RLEnvironmentDataset: a shard directory stores frames as 'image'; "
                             f"obs_key {obs_key!r} must be 'observations' or 'image'")
        super().__init__(data_source, num_frames, image_size, transform, normalize)

    def _get_video_paths(self) -> Sequence[Union[Path, int]]:
        if self.clips is not None:
            return range(len(self.clips))
        path = Path(self.data_source)
        if path.is_file():
            if path.suffix != ".npz":
                raise ValueError(f"RLEnvironmentDataset reads .npz episodes or a shard directory, got {path}")
            return [path]
        episodes = sorted(path.rglob("*.npz"))
        if not episodes:
            raise ValueError(f"RLEnvironmentDataset: {path} has neither a {MANIFEST_NAME} (a shard "
                             f"directory) nor .npz episodes")
        return episodes

    def _read_frames(self, idx: int) -> np.ndarray:
        if self.clips is not None:
            return _clip_frames(self.clips, idx)
        path = self.video_paths[idx]
        with np.load(path, allow_pickle=False) as episode:
            if self.obs_key not in episode.files:
                raise ValueError(f"RLEnvironmentDataset: {path} has no array {self.obs_key!r} "
                                 f"(obs_key); it has {episode.files}")
            frames = to_thwc(episode[self.obs_key], f"{path}[{self.obs_key!r}]")
        return frames[sample_frame_indices(len(frames), self.num_frames)]


class HDF5Dataset(VideoDatasetBase):
    """Videos in dataset ``key`` of an HDF5 file, ``(N, T, H, W, C)``, ``(N, T, C, H, W)`` or
    ``(N, T, H, W)``, or a shard directory (``key`` "videos" or "image"). ``memmap=True`` reads
    each clip's frames from the file when asked (one handle per process); ``memmap=False``
    loads the dataset into memory in the constructor (shards are always read lazily)."""

    def __init__(self, data_source: Union[str, Path], num_frames: int = 16, image_size: int = 64,
                 transform: Optional[Callable] = None, normalize: bool = True,
                 key: str = "videos", memmap: bool = False, *,
                 files: Optional[Sequence[str]] = None, stride: int = 1):
        import h5py

        self.key = key
        self.memmap = memmap
        path = _existing(data_source, "HDF5Dataset")
        self.clips = _shard_clips(path, positive_int("HDF5Dataset num_frames", num_frames),
                                  files, stride, "HDF5Dataset")
        self._handles = H5FileCache()
        self._data: Optional[np.ndarray] = None
        if self.clips is not None:
            if key not in ("videos", "image"):
                raise ValueError(f"HDF5Dataset: a shard directory stores frames as 'image'; "
                                 f"key {key!r} must be 'videos' or 'image'")
            self.num_samples = len(self.clips)
        else:
            with h5py.File(path, "r") as f:
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise ValueError(f"HDF5Dataset: {path} has no dataset {key!r} (key); it has {list(f.keys())}")
                dataset = f[key]
                if dataset.ndim not in (4, 5):
                    raise ValueError(f"HDF5Dataset: {path}[{key!r}] must be (N, T, H, W, C), (N, T, C, H, W) "
                                     f"or (N, T, H, W), got shape {dataset.shape}")
                _layout_check(dataset.shape[1:], dataset.dtype, f"HDF5Dataset {path}[{key!r}] video")
                self.num_samples = int(dataset.shape[0])
                if not memmap:
                    self._data = dataset[:]
        super().__init__(data_source, num_frames, image_size, transform, normalize)

    def _get_video_paths(self) -> Sequence[Union[Path, int]]:
        return range(self.num_samples)

    def _read_frames(self, idx: int) -> np.ndarray:
        if self.clips is not None:
            return _clip_frames(self.clips, idx)
        if self._data is not None:
            video = self._data[idx]
            return to_thwc(video[sample_frame_indices(len(video), self.num_frames)])
        dataset = self._handles.get(self.data_source)[self.key]
        wanted = sample_frame_indices(dataset.shape[1], self.num_frames)
        unique, inverse = np.unique(wanted, return_inverse=True)  # h5py wants increasing indices
        return to_thwc(dataset[idx, unique.tolist()][inverse])


#: ``create_video_dataloader``'s dataset types
DATASET_TYPES = {
    "video_folder": VideoFolderDataset,
    "image_folder": ImageFolderDataset,
    "numpy": NumPyDataset,
    "rl": RLEnvironmentDataset,
    "hdf5": HDF5Dataset,
}


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool,
                pin_memory: bool) -> DataLoader:
    """The DataLoader of every video dataset factory: drops the last partial batch when
    shuffling (training), pins memory only when CUDA is there to use it."""
    batch_size = positive_int("batch_size", batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and len(dataset) > 0,
                      num_workers=num_workers, pin_memory=pin_memory and torch.cuda.is_available(),
                      drop_last=shuffle and len(dataset) >= batch_size)


def create_video_dataloader(dataset_type: str, data_source: Union[str, Path, List[str]],
                            num_frames: int = 16, image_size: int = 64, batch_size: int = 4,
                            num_workers: int = 4, shuffle: bool = True, pin_memory: bool = True,
                            **kwargs: Any) -> Tuple[Dataset, DataLoader]:
    """``(dataset, loader)`` for ``dataset_type`` (a key of :data:`DATASET_TYPES`); ``kwargs``
    go to the dataset class (e.g. ``extensions`` for "video_folder", ``obs_key`` for "rl",
    ``key`` / ``memmap`` for "hdf5"). Batches are ``(B, C, T, H, W)``."""
    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"Unknown dataset_type {dataset_type!r}; choose one of {list(DATASET_TYPES)}")
    cls = DATASET_TYPES[dataset_type]
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("data_source", "num_frames", "image_size")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"dataset_type {dataset_type!r} ({cls.__name__}) takes no {unknown}; "
                         f"its options are {accepted}")
    dataset = cls(data_source=data_source, num_frames=num_frames, image_size=image_size, **kwargs)
    loader = make_loader(dataset, batch_size, num_workers, shuffle, pin_memory)
    _log.info("%s dataloader: %d clips, batch_size=%d", dataset_type, len(dataset), batch_size)
    return dataset, loader


@dataclass
class VideoDatasetConfig(DatasetConfig):
    """Configuration for video datasets (``extensions`` / ``recursive`` apply to
    "video_folder", ``obs_key`` to "rl")."""

    dataset_type: str = "video_folder"
    data_source: str = ""
    extensions: Tuple[str, ...] = (".mp4", ".avi", ".mkv")
    recursive: bool = True
    obs_key: str = "observations"


_CONFIG_OPTIONS = {"video_folder": ("extensions", "recursive"), "rl": ("obs_key",)}


def create_video_dataset_from_config(config: VideoDatasetConfig) -> Tuple[Dataset, DataLoader]:
    """Create video dataset and dataloader from config."""
    options = {name: getattr(config, name) for name in _CONFIG_OPTIONS.get(config.dataset_type, ())}
    return create_video_dataloader(
        config.dataset_type, config.data_source, num_frames=config.num_frames,
        image_size=config.image_size, batch_size=config.batch_size,
        num_workers=config.num_workers, shuffle=config.shuffle, pin_memory=config.pin_memory,
        **options)

