"""Class-per-folder image datasets, torchvision's ``ImageFolder`` layout (PIL; no torch,
no torchvision).

torchvision is not a distwm dependency, so this module is distwm's ``ImageFolder``: the same
layout, attributes and item format as ``torchvision.datasets.ImageFolder``::

    root/<class name>/<any subfolders>/<image>.<ext>

Classes are the immediate subfolders of ``root`` in sorted order (their index is the label),
images are the files with one of :data:`IMG_EXTENSIONS` (case-insensitive) anywhere under a
class folder, in sorted path order. ``ds[i]`` is ``(image, label)``: the image as an RGB
``PIL.Image`` (:func:`pil_loader`) passed through ``transform``. It is a map-style dataset
(``__len__`` / ``__getitem__``), which is all ``torch.utils.data.DataLoader`` needs;
:func:`distributed_loader` is the ``(dataset, loader, sampler)`` of the seed's ``make_*``
factories (``distwm.datasets.cifar10``, ``distwm.datasets.imagenet1k``).

A missing folder raises :class:`DatasetNotFoundError` (a ``FileNotFoundError`` and a
``ValueError``) naming the path and the layout expected there.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

__all__ = ["IMG_EXTENSIONS", "DatasetNotFoundError", "ImageFolder", "distributed_loader",
           "find_classes", "list_images", "pil_loader", "transformed"]

#: the file extensions read as images (torchvision's list)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

LAYOUT = "root/<class name>/<image file> (one subfolder per class)"


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A data set is not where it was looked for (the message names the path and what is
    expected there). Both a ``FileNotFoundError`` and a ``ValueError``: a data-parallel worker
    treats it as a configuration error (not retried)."""


def pil_loader(path: str) -> Any:
    """The image file at ``path`` as an RGB ``PIL.Image`` (decoded now, file closed)."""
    from PIL import Image

    with open(path, "rb") as f:
        image = Image.open(f)
        return image.convert("RGB")


def transformed(image: Any, target: Any, transform: Callable | None,
                target_transform: Callable | None) -> tuple[Any, Any]:
    """``(transform(image), target_transform(target))``, each only when given: a data set's
    item."""
    return (image if transform is None else transform(image),
            target if target_transform is None else target_transform(target))


def find_classes(directory: str) -> tuple[list[str], dict[str, int]]:
    """``(classes, class_to_idx)``: the subfolders of ``directory``, sorted, and their indices.
    ``DatasetNotFoundError`` when ``directory`` is missing or has no subfolder."""
    if not os.path.isdir(directory):
        raise DatasetNotFoundError(f"no image folder at {directory}: expected {LAYOUT}")
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"{directory} has no class subfolders: expected {LAYOUT}")
    return classes, {name: i for i, name in enumerate(classes)}


def list_images(directory: str, class_to_idx: dict[str, int],
                is_valid_file: Callable[[str], bool] | None = None) -> list[tuple[str, int]]:
    """``[(path, class index)]`` of every image under each class folder of ``directory``
    (class order, then sorted paths). ``DatasetNotFoundError`` naming the classes that hold no
    image."""
    valid = is_valid_file or (lambda path: path.lower().endswith(IMG_EXTENSIONS))
    samples, empty = [], []
    for name, index in sorted(class_to_idx.items(), key=lambda item: item[1]):
        found = []
        for folder, _, files in sorted(os.walk(os.path.join(directory, name), followlinks=True)):
            found += [(os.path.join(folder, f), index) for f in sorted(files)
                      if valid(os.path.join(folder, f))]
        if not found:
            empty.append(name)
        samples += found
    if empty:
        raise DatasetNotFoundError(
            f"{directory}: no image files ({', '.join(IMG_EXTENSIONS)}) in the class folders "
            f"{empty}: expected {LAYOUT}")
    return samples


class ImageFolder:
    """The images under ``root`` labelled by their class folder (see the module docstring).

    Attributes as torchvision's: ``root``, ``classes``, ``class_to_idx``, ``samples``
    (``[(path, label)]``), ``imgs`` (the same list), ``targets`` (the labels), ``loader``,
    ``transform``, ``target_transform``. The constructor lists the files; images are decoded
    on access."""

    def __init__(self, root: str, transform: Callable | None = None,
                 target_transform: Callable | None = None,
                 loader: Callable[[str], Any] = pil_loader,
                 is_valid_file: Callable[[str], bool] | None = None):
        self.root = os.fspath(root)
        self.transform, self.target_transform, self.loader = transform, target_transform, loader
        self.classes, self.class_to_idx = find_classes(self.root)
        self.samples: list[tuple[str, int]] = list_images(self.root, self.class_to_idx, is_valid_file)
        self.imgs = self.samples
        self.targets: Sequence[int] = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        return transformed(self.loader(path), target, self.transform, self.target_transform)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={self.root!r}, {len(self.classes)} classes, "
                f"{len(self)} images)")


def distributed_loader(dataset: Any, batch_size: int, *, collator: Callable | None = None,
                       pin_mem: bool = True, num_workers: int = 8, world_size: int = 1,
                       rank: int = 0, drop_last: bool = True, shuffle: bool = True) -> tuple:
    """``(dataset, loader, sampler)``: a ``DistributedSampler`` giving rank ``rank`` of
    ``world_size`` its share of ``dataset`` and a ``DataLoader`` over it (``collate_fn``
    ``collator``; workers kept alive across epochs). Call ``sampler.set_epoch(epoch)`` each
    epoch for a new order. Imports torch."""
    import torch

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=shuffle)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator,
        drop_last=drop_last, pin_memory=pin_mem and torch.cuda.is_available(),
        num_workers=num_workers, persistent_workers=num_workers > 0)
    return dataset, loader, sampler
