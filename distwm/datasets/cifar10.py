"""CIFAR-10 from the data set's own files on disk (nothing downloads), and the seed's
``make_cifar10`` loader.

Either distribution of https://www.cs.toronto.edu/~kriz/cifar.html, unpacked:

* the python version (``cifar-10-python.tar.gz``): ``cifar-10-batches-py/`` holding
  ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and ``batches.meta``, each a pickled
  dict (``data``: ``(N, 3072)`` uint8 rows of 1024 red, 1024 green and 1024 blue values of a
  32 x 32 image in row-major order; ``labels``: N ints in 0..9; ``label_names`` in the meta);
* the binary version (``cifar-10-binary.tar.gz``): ``cifar-10-batches-bin/`` holding
  ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin`` (rows of 1 label byte
  and the same 3072 pixel bytes) and ``batches.meta.txt`` (the class names, one a line).

``root`` is the folder holding ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/`` (as
torchvision's ``root``) or that folder itself; the python version is used when both are there.

**No arbitrary unpickling.** The python batches are pickles, and a pickle can call any
importable function. :class:`RestrictedUnpickler` resolves only numpy's array reconstruction
(``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype``) and ``_codecs.encode`` (how Python 3 writes bytes in
pickle protocols 0-2); any other global is refused (:class:`UnsafePickleError` naming it)
before anything is called. The loaded batch must then be the dict described above.

The readers (:func:`read_cifar10`, :func:`describe_cifar10`) are numpy only: the Ray driver
and :mod:`distwm.datasets.training_data` use them. :class:`CIFAR10` is torchvision's dataset
(``data`` ``(N, 32, 32, 3)`` uint8, ``targets``, ``classes``; items ``(PIL image, label)``
through ``transform``), map-style without importing torch; :func:`make_cifar10` (imports
torch) adds the ``DistributedSampler`` and ``DataLoader``.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any, Callable

import numpy as np

from distwm.datasets.image_folder import DatasetNotFoundError, distributed_loader, transformed

__all__ = ["CIFAR10", "CLASSES", "RestrictedUnpickler", "UnsafePickleError", "describe_cifar10",
           "load_batch_file", "locate_cifar10", "make_cifar10", "read_cifar10"]

#: the class names, in label order (as ``batches.meta`` lists them)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PYTHON_DIR, BINARY_DIR = "cifar-10-batches-py", "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
PYTHON_META, BINARY_META = "batches.meta", "batches.meta.txt"
IMAGE_SHAPE = (3, 32, 32)
_ROW = 3072
_SOURCE = ("https://www.cs.toronto.edu/~kriz/cifar.html (cifar-10-python.tar.gz or "
           "cifar-10-binary.tar.gz), unpacked there")


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global that the restricted unpickler does not allow."""


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy arrays are rebuilt from (see the
    module docstring); anything else raises :class:`UnsafePickleError` naming the global."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(
                f"refusing to unpickle the global {module}.{name}: a CIFAR-10 batch holds only "
                f"dicts, lists, strings, numbers and numpy arrays (allowed: "
                f"{', '.join(sorted(f'{m}.{n}' for m, n in self.ALLOWED))})")
        if name == "_reconstruct":
            return _reconstruct()
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def load_batch_file(path: str) -> dict[str, Any]:
    """One python-version file (a batch or ``batches.meta``) through the
    :class:`RestrictedUnpickler`, as a dict with ``str`` keys (Python 2 strings decoded as
    latin-1, as they were written)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        loaded = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not the dict of a CIFAR-10 batch")
    return {_text(k): v for k, v in loaded.items()}


def _python_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_batch_file(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or \
            data.shape[1] != _ROW:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 array (N, {_ROW}), found {found}")
    return data, _labels(labels, len(data), path)


def _labels(labels: Any, rows: int, path: str) -> np.ndarray:
    try:
        array = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        array = None
    if array is None or len(array) != rows or (rows and not (0 <= array.min() and array.max() < 10)):
        raise ValueError(f"{path}: 'labels' must be {rows} integers in 0..9 (one per row of 'data')")
    return array


def _binary_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % (_ROW + 1):
        raise ValueError(f"{path} has {raw.size} bytes, not a whole number of {_ROW + 1}-byte "
                         "rows (1 label byte + 3072 pixel bytes): not a CIFAR-10 binary batch")
    rows = raw.reshape(-1, _ROW + 1)
    return rows[:, 1:], _labels(rows[:, 0], len(rows), path)


def locate_cifar10(root: str) -> tuple[str, str]:
    """``(version, folder)``: ``"python"`` or ``"binary"`` and the folder holding its files.
    ``DatasetNotFoundError`` naming the path, the missing files and where to get them."""
    root = os.path.expanduser(os.fspath(root))
    candidates = [("python", os.path.join(root, PYTHON_DIR)), ("binary", os.path.join(root, BINARY_DIR)),
                  ("python", root), ("binary", root)]
    for version, folder in candidates:
        names = _files(version)
        present = [n for n in names if os.path.isfile(os.path.join(folder, n))]
        if len(present) == len(names):
            return version, folder
        if present:
            missing = [n for n in names if n not in present]
            raise DatasetNotFoundError(
                f"CIFAR-10 ({version} version) at {folder} is incomplete: missing {missing}; "
                f"expected {', '.join(names)} from {_SOURCE}")
    raise DatasetNotFoundError(
        f"no CIFAR-10 at {root}: expected {PYTHON_DIR}/ ({', '.join(_files('python'))}) or "
        f"{BINARY_DIR}/ ({', '.join(_files('binary')[:-1])}) there, from {_SOURCE}; distwm "
        "never downloads data sets")


def _files(version: str) -> tuple[str, ...]:
    if version == "python":
        return (*TRAIN_BATCHES, TEST_BATCH, PYTHON_META)
    return (*(f"{n}.bin" for n in (*TRAIN_BATCHES, TEST_BATCH)), BINARY_META)


def _classes(version: str, folder: str) -> list[str]:
    if version == "binary":
        with open(os.path.join(folder, BINARY_META), encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [_text(n) for n in load_batch_file(os.path.join(folder, PYTHON_META)).get("label_names", [])]
    if len(names) != 10 or not all(isinstance(n, str) for n in names):
        return list(CLASSES)
    return names


def read_cifar10(root: str, train: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images, labels, classes)`` of the train (``data_batch_1..5``) or test
    (``test_batch``) split: images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` int64."""
    version, folder = locate_cifar10(root)
    names = TRAIN_BATCHES if train else (TEST_BATCH,)
    read = _python_batch if version == "python" else _binary_batch
    parts = [read(os.path.join(folder, n if version == "python" else f"{n}.bin")) for n in names]
    images = np.concatenate([p[0] for p in parts]).reshape(-1, *IMAGE_SHAPE)
    return images, np.concatenate([p[1] for p in parts]), _classes(version, folder)


def describe_cifar10(root: str) -> dict[str, Any]:
    """What is on disk, cheaply: ``{"version", "folder", "classes", "train_size", "test_size"}``
    (the python version's sizes from ``batches.meta``, the binary's from the file sizes)."""
    version, folder = locate_cifar10(root)
    if version == "python":
        per_batch = load_batch_file(os.path.join(folder, PYTHON_META)).get("num_cases_per_batch")
        if isinstance(per_batch, bool) or not isinstance(per_batch, int) or per_batch < 1:
            raise ValueError(f"{os.path.join(folder, PYTHON_META)}: 'num_cases_per_batch' must be "
                             f"a positive integer, got {per_batch!r}")
        train, test = per_batch * len(TRAIN_BATCHES), per_batch
    else:
        def rows(name: str) -> int:
            return os.path.getsize(os.path.join(folder, f"{name}.bin")) // (_ROW + 1)
        train, test = sum(rows(n) for n in TRAIN_BATCHES), rows(TEST_BATCH)
    return {"version": version, "folder": folder, "classes": _classes(version, folder),
            "train_size": train, "test_size": test}


class CIFAR10:
    """CIFAR-10's train (50,000 images) or test (10,000) split from ``root`` (see the module
    docstring), as torchvision's ``CIFAR10``: ``data`` ``(N, 32, 32, 3)`` uint8, ``targets``
    (list of int), ``classes``, ``class_to_idx``; ``ds[i]`` is ``(image, label)``, the image a
    ``PIL.Image`` passed through ``transform``. ``download=True`` downloads nothing: the files
    must be there."""

    def __init__(self, root: str, train: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None, download: bool = False):
        self.root, self.train = os.fspath(root), bool(train)
        self.transform, self.target_transform = transform, target_transform
        images, labels, self.classes = read_cifar10(self.root, self.train)
        self.data = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        self.targets = labels.tolist()
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        return transformed(Image.fromarray(self.data[index]), self.targets[index], self.transform,
                           self.target_transform)

    def __repr__(self) -> str:
        return f"CIFAR10(root={self.root!r}, {'train' if self.train else 'test'}, {len(self)} images)"


def make_cifar10(transform: Any, batch_size: int, collator: Any = None, pin_mem: bool = True,
                 num_workers: int = 8, world_size: int = 1, rank: int = 0,
                 root_path: str | None = None, drop_last: bool = True, train: bool = True,
                 download: bool = False) -> tuple:
    """The seed's CIFAR-10 factory: ``(dataset, data_loader, dist_sampler)``, a
    :class:`CIFAR10` from ``root_path``, a ``DistributedSampler`` for rank ``rank`` of
    ``world_size`` and a ``DataLoader`` (``collate_fn=collator``, e.g. a mask collator).
    Nothing downloads (``download`` is accepted for the seed's signature): a missing
    ``root_path`` is a :class:`DatasetNotFoundError` saying what belongs there."""
    if root_path is None:
        raise DatasetNotFoundError(f"make_cifar10 needs root_path: the folder holding "
                                   f"{PYTHON_DIR}/ or {BINARY_DIR}/ from {_SOURCE}")
    dataset = CIFAR10(root_path, train=train, transform=transform, download=download)
    return distributed_loader(dataset, batch_size, collator=collator, pin_mem=pin_mem,
                              num_workers=num_workers, world_size=world_size, rank=rank,
                              drop_last=drop_last)
