"""The data a dataset-trained model trains on (the data-parallel path,
:mod:`distwm.runtime.data_parallel`): one ``source`` string, opened per rank.

Sources (``distwm train MODEL --data SOURCE``):

* a **shard directory** (``manifest.json`` + HDF5 shards, :mod:`distwm.datasets.video_shards`):
  clips of ``seq_len`` steps; each rank reads its own files (``assign_files``: round robin),
  batches ``{key: (B, T, ...)}``; ``dataset_info`` is the manifest.
* a **CIFAR-10** folder, the python or the binary version (:mod:`distwm.datasets.cifar10`;
  train ``data_batch_1..5``, test ``test_batch``).
* an **image folder**: ``DIR/<class>/<image>`` (:mod:`distwm.datasets.image_folder`), or
  ``DIR/train/<class>/...`` with ``DIR/val/`` (or ``DIR/test/``) as the test split (ImageNet's
  layout). Images are RGB; one of another size than the first image is resized and
  centre-cropped to its size (``PIL.ImageOps.fit``), so a batch stacks.
* ``sklearn:digits[:SIZE][:rgb][:nearest]``: scikit-learn's 8 x 8 digits (1,797 images, 16 grey
  levels, shipped inside the package; ``pip install 'distwm[digits]'``) scaled to uint8 and
  upsampled to ``SIZE`` x ``SIZE`` (default 32; bilinear, or ``nearest``), one grey channel or
  ``rgb`` (repeated to 3). The last 20% (359 images, by index) are the test split.

Images come as ``batch(indices) -> {"image": (B, C, H, W) uint8, "label": (B,) int64}`` (the
sample's ``seq_len`` must be 1); rank ``r`` of ``W`` holds the rows ``r::W`` of the split (a
``ValueError`` when there are fewer rows than ranks), ``holdout(n)`` is ``n`` rows of the test
split spread over it (``None`` without one) and ``info`` (the ``dataset_info`` models are built
from) is ``{"kind": "images", "frame_shape": [C, H, W], "num_classes": K, "size": N (rows of
the split), "test_size", "classes", "split", "source"}``.

This module imports no torch (numpy; h5py, PIL and scikit-learn where used):
:func:`describe_training_data` is what the Ray driver checks a source with, cheaply.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from distwm.datasets import cifar10
from distwm.datasets.image_folder import DatasetNotFoundError
from distwm.datasets.image_tables import DIGITS_TEST_FRACTION, image_tables

__all__ = ["ACCEPTED", "DIGITS_TEST_FRACTION", "TrainingData", "check_ranks", "data_layout",
           "describe_training_data", "normalize_source", "open_training_data", "rank_limit",
           "source_name"]

#: what a source may be, in words (every error about a source lists it)
ACCEPTED = ("a shard directory (manifest.json + HDF5 shards from `distwm collect`), a CIFAR-10 "
            "folder (cifar-10-batches-py/ or cifar-10-batches-bin/), an image folder "
            "(DIR/<class>/<image>, or DIR/train/<class>/... with DIR/val/), or "
            "'sklearn:digits[:SIZE][:rgb][:nearest]'")
DIGITS_PREFIX = "sklearn:"
SPLITS = ("train", "test")


class TrainingData(Protocol):
    """One rank's share of a source: ``len()`` rows (clips or images), ``batch(indices)``,
    ``info`` (the ``dataset_info``) and ``holdout(n)`` (test rows, or ``None``)."""

    info: Mapping[str, Any]

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]: ...

    def holdout(self, n: int) -> dict[str, np.ndarray] | None: ...


# -- sources ----------------------------------------------------------------------------------

def normalize_source(source: Any) -> str:
    """``source`` as a run records it: ``sklearn:...`` as given, a path made absolute."""
    text = os.fspath(source) if not isinstance(source, str) else source
    if not isinstance(text, str) or not text:
        raise ValueError(f"a training data source must be a non-empty path or name, got {source!r}; "
                         f"accepted: {ACCEPTED}")
    if text.startswith(DIGITS_PREFIX) or "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def source_name(source: str) -> str:
    """A short name of ``source`` for run directories and reports."""
    if source.startswith(DIGITS_PREFIX):
        return source.replace(":", "-")
    return os.path.basename(source.rstrip("/")) or source


def _kind(source: str) -> tuple[str, Any]:
    """``(kind, detail)``: ``("digits", options)``, ``("shards" | "cifar10" | "imagefolder",
    path)``; ``ValueError`` / ``DatasetNotFoundError`` naming the source and what is accepted."""
    if source.startswith(DIGITS_PREFIX):
        return "digits", _digits_options(source)
    path = os.path.expanduser(source)
    if not os.path.exists(path):
        raise DatasetNotFoundError(f"no training data at {path} (no shard manifest, CIFAR-10 "
                                   f"files or image folder: nothing is there): expected {ACCEPTED}")
    from distwm.datasets.video_shards import MANIFEST_NAME

    if os.path.basename(path) == MANIFEST_NAME or os.path.isfile(os.path.join(path, MANIFEST_NAME)):
        return "shards", path
    if not os.path.isdir(path):
        raise ValueError(f"{path} is a file, not a training data source: expected {ACCEPTED}")
    if any(os.path.isdir(os.path.join(path, d)) for d in (cifar10.PYTHON_DIR, cifar10.BINARY_DIR)) or \
            any(os.path.isfile(os.path.join(path, f)) for f in ("data_batch_1", "data_batch_1.bin")):
        return "cifar10", path
    if any(entry.is_dir() for entry in os.scandir(path)):
        return "imagefolder", path
    raise ValueError(f"{path} holds no training data (no manifest.json, CIFAR-10 files or class "
                     f"subfolders): expected {ACCEPTED}")


def _digits_options(source: str) -> dict[str, Any]:
    name, *options = source[len(DIGITS_PREFIX):].split(":")
    if name != "digits":
        raise ValueError(f"unknown scikit-learn data set {name!r} in {source!r}: the one accepted "
                         f"is 'sklearn:digits[:SIZE][:rgb][:nearest]' (all sources: {ACCEPTED})")
    chosen = {"size": 32, "channels": 1, "resize": "bilinear"}
    for option in options:
        if option.isdigit():
            chosen["size"] = int(option)
        elif option in ("rgb", "grey", "gray"):
            chosen["channels"] = 3 if option == "rgb" else 1
        elif option in ("bilinear", "nearest"):
            chosen["resize"] = option
        else:
            raise ValueError(f"{source!r}: unknown option {option!r}; sklearn:digits takes a size "
                             "(an integer >= 8), 'rgb' or 'grey', 'bilinear' or 'nearest'")
    if not 8 <= chosen["size"] <= 1024:
        raise ValueError(f"{source!r}: the size must be in 8..1024 (the digits are 8 x 8, "
                         f"upsampled), got {chosen['size']}")
    canonical = f"sklearn:digits:{chosen['size']}" + (":rgb" if chosen["channels"] == 3 else "") + \
        (":nearest" if chosen["resize"] == "nearest" else "")
    return {**chosen, "source": canonical}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _image_info(source: str, frame_shape: Sequence[int], classes: Sequence[str], size: int,
                test_size: int, split: str) -> dict[str, Any]:
    return {"kind": "images", "frame_shape": [int(s) for s in frame_shape],
            "num_classes": len(classes), "size": int(size), "test_size": int(test_size),
            "classes": list(classes), "split": split, "source": source}


# -- opened data ------------------------------------------------------------------------------

class ImageTrainingData:
    """Rank ``rank`` of ``world_size``'s rows of an image split (see the module docstring)."""

    def __init__(self, table: Any, test: Any, classes: Sequence[str], source: str, split: str,
                 rank: int, world_size: int):
        if len(table) < world_size:
            raise ValueError(f"the {split} split of {source} has {len(table)} images but "
                             f"{world_size} data-parallel ranks: every rank needs at least one "
                             "(use fewer workers)")
        self.rows = table.subset(np.arange(rank, len(table), world_size))
        self.test = test
        self.info = _image_info(source, table.frame_shape, classes, len(table),
                                0 if test is None else len(test), split)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        rows = _rows(indices, len(self.rows))
        images, labels = self.rows.take(rows)
        return {"image": images, "label": labels}

    def holdout(self, n: int) -> dict[str, np.ndarray] | None:
        """``min(n, test rows)`` rows of the test split evenly spread over it (the same on
        every call), or ``None`` when the source has no test split."""
        if self.test is None or len(self.test) == 0:
            return None
        count = min(int(n), len(self.test))
        images, labels = self.test.take(np.linspace(0, len(self.test) - 1, count).round().astype(int))
        return {"image": images, "label": labels}


def _rows(indices: Sequence[int], n: int) -> np.ndarray:
    rows = np.asarray(indices).reshape(-1)
    if rows.size == 0:
        raise ValueError("batch needs at least one index")
    if not np.issubdtype(rows.dtype, np.integer) or rows.min() < -n or rows.max() >= n:
        raise IndexError(f"image indices must be integers in [{-n}, {n}), got {indices!r}")
    return rows % n


class ClipTrainingData:
    """Rank ``rank`` of ``world_size``'s clips of a shard directory: a
    :class:`~distwm.datasets.video_shards.ClipDataset` over its files (``assign_files``);
    ``info`` is the manifest; no test split."""

    def __init__(self, directory: str, seq_len: int, rank: int, world_size: int):
        from distwm.datasets.video_shards import ClipDataset, assign_files, read_manifest

        self.info = read_manifest(directory)
        self.files = assign_files(self.info, rank, world_size)
        self.clips = ClipDataset(directory, seq_len, files=self.files)

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        return self.clips.batch(indices)

    def holdout(self, n: int) -> None:
        return None


def _check_rank(rank: Any, world_size: Any) -> tuple[int, int]:
    if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
    return int(rank), int(world_size)


def open_training_data(source: Any, seq_len: int, rank: int = 0, world_size: int = 1, *,
                       split: str = "train") -> TrainingData:
    """Rank ``rank`` of ``world_size``'s share of ``source`` (see the module docstring) for a
    sample of ``seq_len`` steps (1 for images). ``split="test"``: the test split of an image
    source."""
    rank, world_size = _check_rank(rank, world_size)
    _check_split(split)
    source = normalize_source(source)
    kind, detail = _kind(source)
    if kind == "shards":
        if split != "train":
            raise ValueError(f"{source} is a shard directory: it has no {split!r} split")
        return ClipTrainingData(detail, seq_len, rank, world_size)
    if seq_len != 1:
        raise ValueError(f"{source} is an image data set ({kind}): its samples are single images, "
                         f"so the sample's seq_len must be 1, got {seq_len!r}")
    train, test, classes, canonical = image_tables(kind, detail)
    if split == "test":
        if test is None:
            raise ValueError(f"{source} has no test split (an image folder has one in "
                             f"DIR/val/ or DIR/test/ beside DIR/train/)")
        train = test
    return ImageTrainingData(train, test, classes, canonical, split, rank, world_size)


def describe_training_data(source: Any) -> dict[str, Any]:
    """The ``dataset_info`` of ``source``'s train split, cheaply and without torch: a shard
    directory's manifest, or the image info of the module docstring (CIFAR-10 sizes from its
    meta file or file sizes, an image folder's from its file list and first image)."""
    source = normalize_source(source)
    kind, detail = _kind(source)
    if kind == "shards":
        from distwm.datasets.video_shards import read_manifest

        return read_manifest(detail)
    if kind == "cifar10":
        found = cifar10.describe_cifar10(detail)
        return _image_info(detail, cifar10.IMAGE_SHAPE, found["classes"], found["train_size"],
                           found["test_size"], "train")
    train, test, classes, canonical = image_tables(kind, detail)  # digits or an image folder
    return _image_info(canonical, train.frame_shape, classes, len(train),
                       0 if test is None else len(test), "train")


def check_ranks(info: Mapping[str, Any], world_size: int) -> None:
    """``ValueError`` when the data described by ``info`` cannot give each of ``world_size``
    ranks its own share (fewer shard files, or fewer images, than ranks)."""
    if info.get("kind") == "images":
        if int(info["size"]) < world_size:
            raise ValueError(f"the data set {info['source']} has {info['size']} images but "
                             f"{world_size} data-parallel ranks: use fewer workers")
        return
    from distwm.datasets.video_shards import assign_files

    assign_files(info, world_size - 1, world_size)


def rank_limit(info: Mapping[str, Any]) -> int:
    """The most ranks the data can feed: shard files, or images."""
    return int(info["size"]) if info.get("kind") == "images" else len(info["shards"])


def data_layout(info: Mapping[str, Any]) -> str:
    """The data in a few words, for progress lines and reports."""
    if info.get("kind") == "images":
        return (f"{int(info['size']):,d} images {'x'.join(str(s) for s in info['frame_shape'])} "
                f"of {info['num_classes']} classes, {int(info.get('test_size', 0)):,d} held out")
    return f"{len(info['shards'])} shard files"
