"""The seed's single-process I-JEPA training entry point (``world_models.training.train_jepa``).

:func:`main` takes ijepa's nested config (the ``meta`` / ``data`` / ``mask`` / ``optimization``
/ ``logging`` sections of facebookresearch/ijepa's ``configs/*.yaml``, plus distwm's ``probe``
section; missing fields keep :class:`~distwm.configs.jepa_config.JEPAConfig`'s defaults), a
flat dict of field names or a ``JEPAConfig``, and trains the
:class:`~distwm.models.jepa.trainable.JEPATrainable` that Ray Train workers run (``distwm train
jepa --data DIR --workers N`` is the distributed form of the same update):

* ``dataset`` ``imagenet`` / ``cifar10`` / ``imagefolder``: the seed's loaders
  (:func:`~distwm.datasets.imagenet1k.make_imagenet1k`, :func:`~distwm.datasets.cifar10.make_cifar10`,
  :func:`~distwm.datasets.imagenet1k.make_imagefolder`) with the trainable's augmentations in
  the loader workers and the multiblock :class:`~distwm.masks.multiblock.MaskCollator` as the
  collate function, as ijepa; each batch goes to :meth:`JEPATrainable.train_step`;
* ``digits``: scikit-learn's digits at ``crop_size``
  (:func:`distwm.datasets.training_data.open_training_data`), uint8 batches to
  :meth:`JEPATrainable.update`, exactly as on Ray Train.

It joins a ``torch.distributed`` group when torchrun or SLURM variables describe one
(:func:`~distwm.utils.jepa_utils.init_distributed`). Each epoch ends with a checkpoint
``<folder>/<write_tag>-latest.pth.tar`` (distwm's checkpoint format, read with
``weights_only=True``; ``-ep<N>`` copies every ``checkpoint_freq`` epochs); ``load_checkpoint``
or ``resume_preempt`` continues from ``read_checkpoint`` (default: the latest). Every
``probe_every`` updates and at the end, the trainable's report runs on ``probe_size`` held-out
images (the test split; an image folder's ``val_split``) with ``probe_size`` training images to
fit the probe on: the linear-probe accuracy of the target encoder and of a random encoder, appended to ``<write_tag>-probe.jsonl``, and the mask image
``<write_tag>-masks.png``. Progress (loss, steps/s, ETA) is printed every ``log_freq`` updates
and logged per update to ``<write_tag>_r<rank>.csv``.

``logging.enable_sweep``: a wandb sweep over ``sweep_config`` whose trials run
:func:`sweep_train`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Iterator, Mapping

import numpy as np

from distwm.configs.jepa_config import JEPAConfig

__all__ = ["as_config", "main", "run_training", "sweep_train"]

logger = logging.getLogger(__name__)

log_freq = 10
checkpoint_freq = 50
#: ``dataset`` values :func:`main` reads
DATASETS = ("imagenet", "cifar10", "imagefolder", "digits")


def as_config(args: Any) -> JEPAConfig:
    """A ``JEPAConfig`` from a ``JEPAConfig``, a nested dict (ijepa's YAML layout) or a flat one."""
    if isinstance(args, JEPAConfig):
        return args
    if isinstance(args, Mapping):
        return JEPAConfig.from_dict(args)
    raise ValueError(f"train_jepa.main takes a JEPAConfig or a config dict, got {type(args).__name__}")


def _require_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise ImportError("JEPA sweeps need Weights & Biases: pip install wandb") from exc
    return wandb


def main(args: Any, resume_preempt: bool = False) -> dict[str, Any]:
    """Run JEPA training using a nested config dict or JEPAConfig instance (see the module
    docstring); returns the run's summary (updates, last loss, probe accuracies, checkpoint)."""
    config = as_config(args)
    if config.enable_sweep:
        wandb = _require_wandb()
        sweep_id = wandb.sweep(dict(config.sweep_config), project=config.wandb_project,
                               entity=config.wandb_entity or None)
        wandb.agent(sweep_id, function=sweep_train)
        return {"sweep_id": sweep_id}
    return run_training(config, resume=resume_preempt)[1]


def sweep_train() -> None:
    """Function for WandB sweep agent: one trial with the sweep's values of JEPAConfig fields."""
    wandb = _require_wandb()
    with wandb.init():
        names = set(JEPAConfig.field_names())
        values = {k: v for k, v in dict(wandb.config).items() if k in names}
        config = JEPAConfig().replace(**values, enable_sweep=False)
        summary = run_training(config)[1]
        wandb.log({k: v for k, v in summary.items() if isinstance(v, (int, float))})


# -- data -------------------------------------------------------------------------------------

def _uint8_batch(images: list, labels: list) -> dict[str, np.ndarray]:
    return {"image": np.stack([np.asarray(im) for im in images]).astype(np.uint8),
            "label": np.asarray(labels, dtype=np.int64)}


def _spread(size: int, n: int) -> np.ndarray:
    """``min(n, size)`` row numbers spread evenly over ``range(size)``."""
    return np.linspace(0, size - 1, min(n, size)).round().astype(int)


def _probe_batch(held: dict[str, np.ndarray] | None,
                 fit: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """The report batch: the held-out rows, with the training rows the probe is fitted on."""
    if held is None or fit is None:
        return held
    return {**held, "train_image": fit["image"], "train_label": fit["label"]}


def _heldout_rows(dataset: Any, n: int, size: int) -> dict[str, np.ndarray] | None:
    """``n`` rows of ``dataset`` (``(PIL image, label)`` items) spread evenly over it, each
    resized to ``size`` x ``size``: ``{"image": (n, 3, size, size) uint8, "label"}``."""
    if dataset is None or len(dataset) == 0:
        return None
    images, labels = [], []
    for row in _spread(len(dataset), n):
        image, label = dataset[int(row)]
        images.append(np.asarray(image.convert("RGB").resize((size, size))).transpose(2, 0, 1))
        labels.append(int(label))
    return _uint8_batch(images, labels)


class _Source:
    """One rank's training batches per epoch and the held-out rows of a config's data set."""

    def __init__(self, config: JEPAConfig, transform: Any, world_size: int, rank: int):
        from distwm.models.jepa.trainable import make_mask_collator

        c = self.config = config
        self.world_size, self.rank = world_size, rank
        if c.dataset not in DATASETS:
            raise ValueError(f"JEPAConfig.dataset {c.dataset!r} is not one of {', '.join(DATASETS)}")
        self.array_data = self.loader = self.sampler = self.collator = None
        self.heldout: dict[str, np.ndarray] | None = None
        if c.dataset == "digits":
            from distwm.datasets.training_data import open_training_data

            self.array_data = open_training_data(f"sklearn:digits:{c.crop_size}:rgb", 1, rank, world_size)
            held = self.array_data.holdout(c.probe_size)
            fit = self.array_data.batch(_spread(len(self.array_data), c.probe_size))
            self.heldout = _probe_batch(held, fit)
            self.size = len(self.array_data) * world_size
            self.per_epoch = len(self.array_data) // c.batch_size
            if self.per_epoch == 0:
                raise ValueError(f"JEPAConfig.batch_size {c.batch_size} exceeds the "
                                 f"{len(self.array_data)} digits this rank holds")
            return
        self.collator = make_mask_collator(c)
        common = dict(transform=transform, batch_size=c.batch_size, collator=self.collator,
                      pin_mem=c.pin_mem, num_workers=c.num_workers, world_size=world_size,
                      rank=rank, root_path=c.root_path, drop_last=True)
        if c.dataset == "imagenet":
            from distwm.datasets.imagenet1k import ImageNet, make_imagenet1k

            dataset, self.loader, self.sampler = make_imagenet1k(
                **common, image_folder=c.image_folder, training=True, copy_data=c.copy_data)
            held = ImageNet(c.root_path, image_folder=c.image_folder, train=False, copy_data=False)
            fit = ImageNet(c.root_path, image_folder=c.image_folder, train=True, copy_data=False)
        elif c.dataset == "cifar10":
            from distwm.datasets.cifar10 import CIFAR10, make_cifar10

            dataset, self.loader, self.sampler = make_cifar10(**common, train=True, download=c.download)
            held, fit = CIFAR10(c.root_path, train=False), CIFAR10(c.root_path, train=True)
        else:
            from distwm.datasets.imagenet1k import make_imagefolder

            dataset, self.loader, self.sampler = make_imagefolder(
                **common, image_folder=c.image_folder, val_split=c.val_split)
            held = fit = None
            if c.val_split:
                held, fit = (make_imagefolder(None, 1, root_path=c.root_path, image_folder=c.image_folder,
                                              val_split=c.val_split, split=split, num_workers=0)[0]
                             for split in ("val", "train"))
        self.size = len(dataset)
        self.per_epoch = len(self.loader)
        self.heldout = _probe_batch(_heldout_rows(held, c.probe_size, c.crop_size),
                                    _heldout_rows(fit, c.probe_size, c.crop_size))

    def skip(self, batches: int) -> None:
        """Advance the mask collator past ``batches`` batches (a resumed run, as ijepa)."""
        if self.collator is not None:
            for _ in range(batches):
                self.collator.step()

    def epoch(self, trainable: Any, epoch: int) -> Iterator[dict[str, float]]:
        """``trainable``'s metrics of each update of epoch ``epoch``."""
        if self.loader is not None:
            self.sampler.set_epoch(epoch)
            for (images, _labels), masks_enc, masks_pred in self.loader:
                yield trainable.train_step(images, masks_enc, masks_pred)
            return
        order = np.random.default_rng([self.config.seed, self.rank, epoch]).permutation(len(self.array_data))
        b = self.config.batch_size
        for i in range(self.per_epoch):
            batch = self.array_data.batch(order[i * b:(i + 1) * b])
            yield trainable.update({"images": batch})


# -- the run ----------------------------------------------------------------------------------

def _device() -> Any:
    import torch

    return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")


def _run_length(config: JEPAConfig, per_epoch: int) -> int:
    return config.total_updates if config.total_updates is not None else config.epochs * per_epoch


def run_training(config: JEPAConfig, resume: bool = False, device: Any = None) -> tuple[Any, dict[str, Any]]:
    """Train ``config`` in this process (see the module docstring); ``(trainable, summary)``."""
    from distwm.models.jepa.trainable import JEPATrainable, make_transform, schedule_length
    from distwm.utils.checkpoint import agent_state, load_file, save_file
    from distwm.utils.jepa_utils import CSVLogger, init_distributed
    from distwm.utils.media import save_png

    c = config
    world_size, rank = init_distributed()
    os.makedirs(c.folder, exist_ok=True)
    if rank == 0:
        c.to_yaml(os.path.join(c.folder, "params-ijepa.yaml"))
    latest = os.path.join(c.folder, f"{c.write_tag}-latest.pth.tar")
    source = _Source(c, make_transform(c), world_size, rank)
    run_length = _run_length(c, source.per_epoch)
    total = schedule_length(c, {"size": source.size}, world_size)
    trainable = JEPATrainable(c, total, device or _device())
    if resume or c.load_checkpoint:
        path = os.path.join(c.folder, c.read_checkpoint) if c.read_checkpoint else latest
        trainable.load_state_dict(agent_state(load_file(path, JEPATrainable.CHECKPOINT_FORMAT, "jepa")))
        source.skip(trainable.updates)
    csv = CSVLogger(os.path.join(c.folder, f"{c.write_tag}_r{rank}.csv"), c.enable_wandb, "",
                    c.wandb_project, c.wandb_entity, ("%d", "epoch"), ("%d", "itr"),
                    ("%.5f", "loss"), ("%.5f", "mask-A"), ("%.5f", "mask-B"), ("%d", "time (ms)"))
    summary: dict[str, Any] = {"updates": trainable.updates, "run_length": run_length,
                               "schedule_updates": total}

    def evaluate() -> None:
        if rank != 0 or source.heldout is None:
            return
        report = trainable.report(source.heldout)
        scalars = report["scalars"]
        summary.update(scalars)
        with open(os.path.join(c.folder, f"{c.write_tag}-probe.jsonl"), "a") as f:
            f.write(json.dumps(scalars) + "\n")
        save_png(report["images"]["masks"], os.path.join(c.folder, f"{c.write_tag}-masks.png"))
        probe = {k: v for k, v in scalars.items() if k.startswith("probe/") and "accuracy" in k}
        print(f"[jepa] report at update {trainable.updates}: loss {scalars['loss']:.4f} "
              + " ".join(f"{k} {v:.3f}" for k, v in probe.items()), flush=True)

    start, last_eval = time.monotonic(), trainable.updates
    first_update = trainable.updates
    epoch = trainable.updates // max(1, source.per_epoch)
    while trainable.updates < run_length:
        for itr, metrics in enumerate(source.epoch(trainable, epoch)):
            ms = 1000.0 * (time.monotonic() - start) / max(1, trainable.updates - first_update)
            csv.log(trainable.updates, epoch + 1, itr, metrics["loss"], metrics["context_patches"],
                    metrics["target_patches"], int(ms))
            summary["train_loss"] = metrics["loss"]
            done = trainable.updates
            if done % log_freq == 0 or done >= run_length or not np.isfinite(metrics["loss"]):
                rate = (done - first_update) / max(1e-9, time.monotonic() - start)
                eta = (run_length - done) / max(rate, 1e-9)
                print(f"[jepa] epoch {epoch + 1} update {done}/{run_length} loss {metrics['loss']:.4f} "
                      f"lr {metrics['learning_rate']:.2e} wd {metrics['weight_decay']:.3f} "
                      f"masks {metrics['context_patches']:.0f}/{metrics['target_patches']:.0f} "
                      f"{rate:.2f} updates/s ETA {eta / 60:.1f} min", flush=True)
            if c.probe_every and done - last_eval >= c.probe_every:
                evaluate()
                last_eval = done
            if done >= run_length:
                break
        epoch += 1
        if rank == 0:
            save_file(trainable.state_dict(), latest)
            if epoch % checkpoint_freq == 0:
                save_file(trainable.state_dict(), os.path.join(c.folder, f"{c.write_tag}-ep{epoch}.pth.tar"))
    if last_eval != trainable.updates or c.probe_every == 0:
        evaluate()
    summary.update(updates=trainable.updates, checkpoint=latest if rank == 0 else None)
    return trainable, summary
