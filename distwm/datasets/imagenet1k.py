"""ImageNet-1K and any class-per-folder image set, as the seed's (I-JEPA's) loaders:
``make_imagenet1k``, ``ImageNet``, ``ImageNetSubset``, ``copy_imgnt_locally`` and
``make_imagefolder``.

The layout is I-JEPA's (facebookresearch/ijepa ``src/datasets/imagenet1k.py``)::

    <root>/<image_folder>/train/<class (wnid)>/<image>.JPEG
    <root>/<image_folder>/val/<class (wnid)>/<image>.JPEG

with ``image_folder`` ``imagenet_full_size/061417/`` by default; ``ImageNet`` is an
:class:`~distwm.datasets.image_folder.ImageFolder` (distwm's own: torchvision is not a
dependency) over the ``train/`` or ``val/`` folder. Nothing downloads: a missing folder is a
:class:`~distwm.datasets.image_folder.DatasetNotFoundError` naming it and this layout.

``copy_data`` (SLURM): :func:`copy_imgnt_locally` unpacks ``<root>/<tar_file>`` once per job
into ``<scratch>/<job id>/`` (local rank 0 extracts, the other local ranks wait for its signal
file), so training reads local disk instead of the network file system. Differences from the
reference: the archive is unpacked with :mod:`tarfile`'s ``"data"`` filter (no absolute paths,
links out of the target or device files) instead of a ``tar`` subprocess, and the scratch folder
is a parameter (``scratch``, the reference's ``/scratch/slurm_tmpdir`` by default).

``make_imagefolder(..., val_split=f)`` holds out a fraction ``f`` of the images by a seeded
permutation; ``split="train" | "val"`` (an addition) chooses the side, and two calls with the
same ``split_seed`` partition the images the same way.
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
from typing import Any, Callable

import numpy as np

from distwm.datasets.image_folder import (DatasetNotFoundError, ImageFolder, distributed_loader,
                                          transformed)

__all__ = ["ImageNet", "ImageNetSubset", "copy_imgnt_locally", "make_imagefolder", "make_imagenet1k"]

_log = logging.getLogger(__name__)

IMAGE_FOLDER = "imagenet_full_size/061417/"
TAR_FILE = "imagenet_full_size-061417.tar.gz"
SCRATCH = "/scratch/slurm_tmpdir"
SIGNAL_FILE = "copy_signal.txt"
_LAYOUT = "<root>/<image_folder>/{train,val}/<class (wnid)>/<image>.JPEG"


def make_imagenet1k(transform: Any, batch_size: int, collator: Any = None, pin_mem: bool = True,
                    num_workers: int = 8, world_size: int = 1, rank: int = 0,
                    root_path: str | None = None, image_folder: str | None = None,
                    training: bool = True, copy_data: bool = False, drop_last: bool = True,
                    subset_file: str | None = None) -> tuple:
    """``(dataset, data_loader, dist_sampler)`` of ImageNet's train (``training``) or val
    split under ``root_path`` (filtered by ``subset_file`` when given), a
    ``DistributedSampler`` for rank ``rank`` of ``world_size`` and its ``DataLoader``."""
    if root_path is None:
        raise DatasetNotFoundError(f"make_imagenet1k needs root_path: the folder holding {_LAYOUT}")
    dataset: Any = ImageNet(root_path, image_folder=image_folder or IMAGE_FOLDER,
                            transform=transform, train=training, copy_data=copy_data)
    if subset_file is not None:
        dataset = ImageNetSubset(dataset, subset_file)
    _log.info("ImageNet dataset: %d images", len(dataset))
    return distributed_loader(dataset, batch_size, collator=collator, pin_mem=pin_mem,
                              num_workers=num_workers, world_size=world_size, rank=rank,
                              drop_last=drop_last)


class ImageNet(ImageFolder):
    """ImageNet's ``train/`` (``train=True``) or ``val/`` folder under
    ``<root>/<image_folder>``, or under the job's scratch copy (``copy_data``, see
    :func:`copy_imgnt_locally`; it falls back to ``root`` outside SLURM). ``index_targets``
    adds ``targets_arr``, ``samples_arr`` and ``target_indices`` (the sample indices of each
    class), as the reference."""

    def __init__(self, root: str, image_folder: str = IMAGE_FOLDER, tar_file: str = TAR_FILE,
                 transform: Callable | None = None, train: bool = True, job_id: str | None = None,
                 local_rank: int | None = None, copy_data: bool = True, index_targets: bool = False):
        suffix = "train/" if train else "val/"
        data_path = None
        if copy_data:
            data_path = copy_imgnt_locally(root, suffix, image_folder=image_folder,
                                           tar_file=tar_file, job_id=job_id, local_rank=local_rank)
        if data_path is None:
            data_path = os.path.join(root, image_folder, suffix)
        if not os.path.isdir(data_path):
            raise DatasetNotFoundError(f"no ImageNet {suffix.rstrip('/')} folder at {data_path}: "
                                       f"expected {_LAYOUT} (ILSVRC2012, one subfolder per class)")
        super().__init__(data_path, transform=transform)
        _log.info("ImageNet %s: %d images in %d classes at %s", suffix.rstrip("/"), len(self),
                  len(self.classes), data_path)
        if index_targets:
            self.targets_arr = np.asarray(self.targets, dtype=np.int64)
            self.samples_arr = np.asarray(self.samples)
            self.target_indices = [np.flatnonzero(self.targets_arr == t).tolist()
                                   for t in range(len(self.classes))]


class ImageNetSubset:
    """The images of ``dataset`` (an :class:`ImageNet`) named in ``subset_file``: one image
    file name a line, ``<wnid>_<number>.JPEG`` (the class is the part before the first ``_``).
    Keeps the base data set's loader, transforms and class indices."""

    def __init__(self, dataset: Any, subset_file: str):
        self.dataset, self.subset_file = dataset, subset_file
        self.filter_dataset_(subset_file)

    def filter_dataset_(self, subset_file: str) -> None:
        """Filter self.dataset to a subset"""
        if not os.path.isfile(subset_file):
            raise DatasetNotFoundError(f"no ImageNet subset file at {subset_file}: expected a text "
                                       "file of image names, one a line (e.g. n01440764_10026.JPEG)")
        root, class_to_idx = self.dataset.root, self.dataset.class_to_idx
        samples = []
        with open(subset_file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                image = line.strip()
                if not image:
                    continue
                class_name = image.split("_")[0]
                if class_name not in class_to_idx:
                    raise ValueError(f"{subset_file} line {number}: {image!r} names the class "
                                     f"{class_name!r}, which {root} does not have")
                samples.append((os.path.join(root, class_name, image), class_to_idx[class_name]))
        self.samples = samples

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        return transformed(self.dataset.loader(path), target, self.dataset.transform,
                           self.dataset.target_transform)


def copy_imgnt_locally(root: str, suffix: str, image_folder: str = IMAGE_FOLDER,
                       tar_file: str = TAR_FILE, job_id: str | None = None,
                       local_rank: int | None = None, *, scratch: str = SCRATCH,
                       poll_s: float = 10.0) -> str | None:
    """The job-local copy of ``<image_folder>/<suffix>``: ``<scratch>/<job id>/<image_folder>/
    <suffix>``, unpacked from ``<root>/<tar_file>`` by local rank 0 (the others wait for its
    signal file). ``job_id`` / ``local_rank`` default to ``SLURM_JOBID`` / ``SLURM_LOCALID``;
    outside SLURM (either unknown) it returns ``None``: read from ``root`` directly."""
    job_id = job_id if job_id is not None else os.environ.get("SLURM_JOBID")
    if local_rank is None and os.environ.get("SLURM_LOCALID", "").isdigit():
        local_rank = int(os.environ["SLURM_LOCALID"])
    if job_id is None or local_rank is None:
        _log.info("no SLURM job id / local rank: ImageNet is read from %s directly", root)
        return None
    target = os.path.join(scratch, str(job_id))
    data_path = os.path.join(target, image_folder, suffix)
    signal = os.path.join(target, SIGNAL_FILE)
    if os.path.exists(data_path) and (local_rank != 0 or os.path.exists(signal)):
        return data_path
    if local_rank == 0:
        source = os.path.join(root, tar_file)
        if not os.path.isfile(source):
            raise DatasetNotFoundError(f"no ImageNet archive at {source}: expected a tar of "
                                       f"{image_folder}{{train,val}}/<class>/<image>.JPEG")
        os.makedirs(target, exist_ok=True)
        start = time.monotonic()
        with tarfile.open(source) as archive:
            archive.extractall(target, filter="data")
        _log.info("unpacked %s into %s in %.1f min", source, target, (time.monotonic() - start) / 60)
        partial = f"{signal}.partial"
        with open(partial, "w", encoding="utf-8") as f:
            f.write("Done copying locally.\n")
        os.replace(partial, signal)
    else:
        while not os.path.exists(signal):
            _log.info("local rank %d: waiting for %s", local_rank, signal)
            time.sleep(poll_s)
    return data_path


def make_imagefolder(transform: Any, batch_size: int, collator: Any = None, pin_mem: bool = True,
                     num_workers: int = 8, world_size: int = 1, rank: int = 0,
                     root_path: str | None = None, image_folder: str | None = None,
                     drop_last: bool = True, val_split: float | None = None, *,
                     split: str = "train", split_seed: int = 0) -> tuple:
    """``(dataset, data_loader, dist_sampler)`` of the :class:`ImageFolder` at
    ``root_path/image_folder`` (or ``root_path``); ``val_split``: the fraction held out (see
    the module docstring; ``split`` picks the side)."""
    import torch

    if split not in ("train", "val"):
        raise ValueError(f"make_imagefolder split must be 'train' or 'val', got {split!r}")
    if root_path is None:
        raise DatasetNotFoundError("make_imagefolder needs root_path: the folder holding "
                                   "<class name>/<image file> (one subfolder per class)")
    dataset: Any = ImageFolder(os.path.join(root_path, image_folder) if image_folder else root_path,
                               transform=transform)
    if val_split:
        if not 0.0 < float(val_split) < 1.0:
            raise ValueError(f"make_imagefolder val_split must be in (0, 1), got {val_split!r}")
        order = np.random.default_rng(split_seed).permutation(len(dataset))
        held = int(len(dataset) * float(val_split))
        chosen = order[:held] if split == "val" else order[held:]
        dataset = torch.utils.data.Subset(dataset, sorted(chosen.tolist()))
    return distributed_loader(dataset, batch_size, collator=collator, pin_mem=pin_mem,
                              num_workers=num_workers, world_size=world_size, rank=rank,
                              drop_last=drop_last)
