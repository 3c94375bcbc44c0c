"""The tables an image training source is read into (:mod:`distwm.datasets.training_data`):
images in memory (scikit-learn's digits, CIFAR-10) or image files decoded on demand (an image
folder), each with ``len``, ``subset(rows)`` and ``take(rows) -> (images, labels)``."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from distwm.datasets import cifar10
from distwm.datasets.image_folder import find_classes, list_images, pil_loader

__all__ = ["DIGITS_TEST_FRACTION", "image_tables"]

DIGITS_TEST_FRACTION = 0.2
_TEST_DIRS = ("val", "test")


class _ArrayImages:
    """Images held in memory: ``(N, C, H, W)`` uint8 and ``(N,)`` int64 labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def frame_shape(self) -> list[int]:
        return [int(s) for s in self.images.shape[1:]]

    def subset(self, rows: np.ndarray) -> "_ArrayImages":
        return _ArrayImages(np.ascontiguousarray(self.images[rows]), self.labels[rows].copy())

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.images[rows], self.labels[rows]


class _FolderImages:
    """Image files ``[(path, label)]`` decoded on demand to ``frame_shape``."""

    def __init__(self, samples: Sequence[tuple[str, int]], frame_shape: Sequence[int]):
        self.samples, self.frame_shape = list(samples), [int(s) for s in frame_shape]

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, rows: np.ndarray) -> "_FolderImages":
        return _FolderImages([self.samples[int(i)] for i in rows], self.frame_shape)

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image, ImageOps

        _, height, width = self.frame_shape
        images = np.empty((len(rows), 3, height, width), np.uint8)
        labels = np.empty(len(rows), np.int64)
        for out, i in enumerate(rows):
            path, labels[out] = self.samples[int(i)]
            image = pil_loader(path)
            if image.size != (width, height):
                image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
            images[out] = np.asarray(image).transpose(2, 0, 1)
        return images, labels


def _first_image_shape(path: str) -> list[int]:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return [3, int(height), int(width)]


def _folder_splits(path: str) -> tuple[str, str | None]:
    """``(train folder, test folder or None)`` of an image folder (see the module docstring)."""
    train = os.path.join(path, "train")
    if os.path.isdir(train) and any(e.is_dir() for e in os.scandir(train)):
        tests = [os.path.join(path, d) for d in _TEST_DIRS if os.path.isdir(os.path.join(path, d))]
        return train, tests[0] if tests else None
    return path, None


def _folder_tables(path: str, with_test: bool = True) -> tuple[_FolderImages, _FolderImages | None, list[str]]:
    train_dir, test_dir = _folder_splits(path)
    classes, class_to_idx = find_classes(train_dir)
    samples = list_images(train_dir, class_to_idx)
    frame_shape = _first_image_shape(samples[0][0])
    test = None
    if with_test and test_dir is not None:
        test_classes, _ = find_classes(test_dir)
        unknown = sorted(set(test_classes) - set(class_to_idx))
        if unknown:
            raise ValueError(f"{test_dir} has the classes {unknown}, which {train_dir} does not have")
        test = _FolderImages(list_images(test_dir, {c: class_to_idx[c] for c in test_classes}),
                             frame_shape)
    return _FolderImages(samples, frame_shape), test, classes


def _digits_tables(options: Mapping[str, Any]) -> tuple[_ArrayImages, _ArrayImages, list[str]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(f"the training data source {options['source']!r} needs scikit-learn "
                          "(its digits ship inside it): pip install 'distwm[digits]' "
                          "(or pip install scikit-learn)") from exc
    digits = load_digits()
    pixels = np.asarray(digits.images, np.float64) * (255.0 / 16.0)  # 16 grey levels -> 0..255
    size = int(options["size"])
    if size != pixels.shape[-1]:
        weights = _resize_weights(pixels.shape[-1], size, options["resize"])
        pixels = np.einsum("oi,nij,pj->nop", weights, pixels, weights)
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)[:, None]
    images = np.ascontiguousarray(np.repeat(images, int(options["channels"]), axis=1))
    labels = np.asarray(digits.target, np.int64)
    cut = len(labels) - int(round(DIGITS_TEST_FRACTION * len(labels)))
    return (_ArrayImages(images[:cut], labels[:cut]), _ArrayImages(images[cut:], labels[cut:]),
            [str(d) for d in range(10)])


def _resize_weights(size_in: int, size_out: int, mode: str) -> np.ndarray:
    """``(size_out, size_in)`` interpolation matrix: pixel centres aligned (``align_corners``
    False, as PIL and ``torch.nn.functional.interpolate``), edges clamped."""
    rows = np.arange(size_out)
    weights = np.zeros((size_out, size_in))
    if mode == "nearest":
        source = np.floor((rows + 0.5) * size_in / size_out).astype(int)
        weights[rows, np.clip(source, 0, size_in - 1)] = 1.0
        return weights
    centres = np.clip((rows + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = centres - low
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def image_tables(kind: str, detail: Any, with_test: bool = True) -> tuple[Any, Any, list[str], str]:
    """``(train table, test table or None, classes, canonical source)``."""
    if kind == "digits":
        train, test, classes = _digits_tables(detail)
        return train, test, classes, detail["source"]
    if kind == "cifar10":
        train_images, train_labels, classes = cifar10.read_cifar10(detail, train=True)
        test = None
        if with_test:
            test_images, test_labels, _ = cifar10.read_cifar10(detail, train=False)
            test = _ArrayImages(test_images, test_labels)
        return _ArrayImages(train_images, train_labels), test, classes, detail
    train, test, classes = _folder_tables(detail, with_test)
    return train, test, classes, detail
