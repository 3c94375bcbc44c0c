"""The seed's single-process DiT training entry point, ``DiT.train(epochs, dataset, ...)``
(:func:`train_dit`): the degenerate case of the data-parallel path, the same
:class:`~distwm.models.dit.trainable.DiTTrainable` update that every Ray Train worker runs, in
this process, over a data set on disk. For many workers, checkpoints and resume use ``distwm
train dit --data SOURCE --workers N``.

Data sets (nothing downloads): ``cifar10`` (the data set's files under ``root_path``:
:func:`distwm.datasets.cifar10.make_cifar10`), ``imagenet`` (``root_path/image_folder`` with
``train/``: :func:`distwm.datasets.imagenet1k.make_imagenet1k`), ``imagefolder``
(``root_path[/image_folder]/<class>/<image>``, ``val_split`` held out:
:func:`~distwm.datasets.imagenet1k.make_imagefolder`), all through :class:`DiTImageTransform`
(DiT's ``center_crop_arr`` to ``img_size`` and a random horizontal flip, to [-1, 1]); and
``sklearn:digits[:SIZE][:rgb]`` (:func:`distwm.datasets.training_data.open_training_data`: the
CPU learning check's data).

At the end the trainable's state goes to ``workdir/dit_model.pth`` (:func:`distwm.utils.
checkpoint.save_file`; ``DiTTrainable.from_state(load_file(path, None, "dit"))`` reads it
back) and its report's sample grid to ``workdir/generated_samples.png``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from distwm.configs.dit_config import DiTConfig, get_dit_config
from distwm.models.dit.trainable import DiTTrainable

__all__ = ["DATASETS", "DiTImageTransform", "dit_batches", "fit_batches", "train_dit"]

_log = logging.getLogger(__name__)

DATASETS = ("cifar10", "imagenet", "imagefolder", "sklearn:digits[:SIZE][:rgb]")


class DiTImageTransform:
    """A PIL image -> ``(channels, img_size, img_size)`` float tensor in [-1, 1]: DiT's
    ``center_crop_arr`` (halve with a box filter while the short side is >= 2 * img_size,
    bicubic-resize the short side to img_size, centre-crop), then a random horizontal flip."""

    def __init__(self, img_size: int, channels: int = 3, flip: bool = True):
        if channels not in (1, 3):
            raise ValueError(f"DiTImageTransform: channels must be 1 or 3, got {channels}")
        self.img_size, self.channels, self.flip = img_size, channels, flip

    def __call__(self, image: Any) -> Tensor:
        from PIL import Image

        size = self.img_size
        while min(image.size) >= 2 * size:
            image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
        scale = size / min(image.size)
        image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
        arr = np.asarray(image.convert("L" if self.channels == 1 else "RGB"))
        top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
        arr = arr[top:top + size, left:left + size]
        if self.flip and np.random.random() < 0.5:
            arr = arr[:, ::-1]
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr)).float() / 127.5 - 1.0


def _digits_batches(source: str, batch_size: int, seed: int):
    from distwm.datasets.training_data import open_training_data

    data = open_training_data(source, 1)
    rng = np.random.default_rng(seed)

    def epoch() -> Iterator[tuple[Tensor, Tensor]]:
        order = rng.permutation(len(data))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            batch = data.batch(order[i:i + batch_size])
            yield (torch.from_numpy(batch["image"]).float() / 127.5 - 1.0,
                   torch.from_numpy(batch["label"]))

    return epoch, data.info


def dit_batches(config: DiTConfig, dataset: str, *, image_folder: Optional[str] = None,
                num_workers: int = 0, copy_data: bool = False, subset_file: Optional[str] = None,
                val_split: Optional[float] = None, download: bool = False):
    """``(epoch, info)``: ``epoch()`` iterates one epoch of ``(images in [-1, 1], labels)``
    batches of ``dataset`` (see :data:`DATASETS`); ``info`` has ``num_classes`` and
    ``frame_shape``."""
    name = str(dataset).lower()
    if name.startswith("sklearn:"):
        return _digits_batches(dataset, config.BATCH, config.seed)
    transform = DiTImageTransform(config.IMG_SIZE, config.CHANNELS)
    common = dict(transform=transform, batch_size=config.BATCH, pin_mem=False,
                  num_workers=num_workers, root_path=config.ROOT_PATH, drop_last=True)
    if name == "cifar10":
        from distwm.datasets.cifar10 import make_cifar10

        data, loader, _ = make_cifar10(**common, train=True, download=download)
    elif name == "imagenet":
        from distwm.datasets.imagenet1k import make_imagenet1k

        data, loader, _ = make_imagenet1k(**common, image_folder=image_folder, training=True,
                                          copy_data=copy_data, subset_file=subset_file)
    elif name == "imagefolder":
        from distwm.datasets.imagenet1k import make_imagefolder

        data, loader, _ = make_imagefolder(**common, image_folder=image_folder,
                                           val_split=val_split, split="train")
    else:
        raise ValueError(f"unknown DiT data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    classes = getattr(data, "classes", None) or getattr(getattr(data, "dataset", None), "classes", [])
    info = {"num_classes": len(classes),
            "frame_shape": [config.CHANNELS, config.IMG_SIZE, config.IMG_SIZE]}
    return (lambda: iter(loader)), info


def fit_batches(trainable: DiTTrainable, epoch, epochs: int, log_every: int = 100,
                max_updates: Optional[int] = None) -> list[dict[str, float]]:
    """Update ``trainable`` on ``epochs`` passes of ``epoch()`` (an iterable of ``(images in
    [-1, 1], labels)``), at most ``max_updates``; logs and returns every ``log_every``-th
    update's metrics."""
    history: list[dict[str, float]] = []
    start, first = time.perf_counter(), trainable.updates
    for e in range(epochs):
        batches: Iterable = epoch()
        for images, labels in batches:
            metrics = trainable.update_images(images, labels)
            if trainable.updates % log_every == 0:
                rate = (trainable.updates - first) / max(time.perf_counter() - start, 1e-9)
                _log.info("[dit] epoch %d update %d loss %.4f (%.2f updates/s)", e + 1,
                          trainable.updates, metrics["loss"], rate)
                history.append({"epoch": float(e + 1), **metrics})
            if max_updates is not None and trainable.updates - first >= max_updates:
                return history
    return history


def train_dit(epochs: int, dataset: str, batch_size: int = 128, lr: float = 0.0002,
              img_size: int = 32, channels: int = 3, patch: int = 4, width: int = 384,
              depth: int = 6, heads: int = 6, drop: float = 0.1, timesteps: int = 1000,
              beta_start: float = 0.0001, beta_end: float = 0.02, ema: bool = True,
              ema_decay: float = 0.999, workdir: str = "./dit_demo", root_path: str = "./data",
              image_folder: Optional[str] = None, crop_size: int = 224, download: bool = True,
              copy_data: bool = False, subset_file: Optional[str] = None,
              val_split: Optional[float] = None, *, device: Any = None, num_workers: int = 0,
              log_every: int = 100, max_updates: Optional[int] = None,
              **overrides: Any) -> DiTTrainable:
    """Train a class-conditional DiT on ``dataset`` for ``epochs`` epochs (the seed's
    ``DiT.train``; see the module docstring) and return the trained
    :class:`~distwm.models.dit.trainable.DiTTrainable`.

    ``overrides``: further :class:`~distwm.configs.dit_config.DiTConfig` fields (distwm's:
    ``num_classes``, ``sample_steps``, ``guidance_scale``, ...). ``crop_size`` is accepted for
    the seed's signature: images are centre-cropped to ``img_size`` (a 224 crop would not fit
    the model). ``download`` is accepted too: nothing downloads, the data must be on disk.
    """
    del crop_size
    config = get_dit_config(DATASET=dataset, BATCH=batch_size, EPOCHS=epochs, LR=lr,
                            IMG_SIZE=img_size, CHANNELS=channels, PATCH=patch, WIDTH=width,
                            DEPTH=depth, HEADS=heads, DROP=drop, TIMESTEPS=timesteps,
                            BETA_START=beta_start, BETA_END=beta_end, EMA=ema,
                            EMA_DECAY=ema_decay, WORKDIR=workdir, ROOT_PATH=root_path,
                            **overrides)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    epoch, info = dit_batches(config, dataset, image_folder=image_folder,
                              num_workers=num_workers, copy_data=copy_data,
                              subset_file=subset_file, val_split=val_split, download=download)
    trainable = DiTTrainable.from_config(config, info, device)
    fit_batches(trainable, epoch, epochs, log_every, max_updates)
    save_results(trainable, next(iter(epoch())), workdir)
    return trainable


def save_results(trainable: DiTTrainable, batch: tuple[Tensor, Tensor], workdir: str) -> dict[str, Any]:
    """Write ``dit_model.pth`` and ``generated_samples.png`` (the report's grid on ``batch``)
    to ``workdir``; returns the report."""
    from distwm.models.dit.report import dit_report
    from distwm.utils.checkpoint import save_file
    from distwm.utils.media import save_png

    os.makedirs(workdir, exist_ok=True)
    save_file(trainable.state_dict(), os.path.join(workdir, "dit_model.pth"))
    images, labels = batch
    report = dit_report(trainable, images.to(trainable.device), labels.to(trainable.device))
    save_png(report["images"]["samples"], os.path.join(workdir, "generated_samples.png"))
    _log.info("[dit] saved %s and the samples; %s", os.path.join(workdir, "dit_model.pth"),
              ", ".join(f"{k} {v:.3f}" for k, v in report["scalars"].items()))
    return report
