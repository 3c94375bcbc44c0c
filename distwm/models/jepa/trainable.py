"""I-JEPA as a dataset-trained :class:`~distwm.agent.Trainable`: what Ray Train workers (``distwm
train jepa --data DIR``) and the seed's single-process :func:`distwm.training.train_jepa.main`
update.

One sample, ``images``: ``batch_size`` single images (``seq_len`` 1), ``{"image": (B, C, H, W)
uint8, "label": (B,)}`` (the label is used by the report only). An update converts the images
to float (a grey image is repeated to 3 channels), applies the config's augmentations
(:func:`distwm.transforms.transforms.make_transforms`: a random resized crop to ``crop_size``,
and flip / colour distortion / blur when switched on; the paper uses the crop alone), draws the
multiblock masks (:class:`distwm.masks.multiblock.MaskCollator`) and takes one
:class:`~distwm.models.jepa.model.JEPALearner` step. The masks' block sizes depend on the update
number only (the collator's iteration counter, as in ijepa), so every rank draws the same sizes
for the same update; the crops and block positions come from torch's RNG seeded by ``(seed,
rank, update)`` inside ``torch.random.fork_rng`` (reproducible, different per rank, and the
global RNG is left as it was).

:meth:`JEPATrainable.report` (rank 0, at every checkpoint, on held-out rows when the data set
has a test split): the loss on the report batch (images resized to ``crop_size``, no
augmentation, masks from a fixed seed), the linear-probe accuracy of the current target encoder
and of a randomly initialised encoder of the same architecture
(:mod:`distwm.models.jepa.probe`; every ``probe_every`` updates): fitted on the batch's
``train_image`` / ``train_label`` rows and tested on its ``image`` / ``label`` rows when it
carries both, else fitted on ``probe_train_fraction`` of the batch and tested on the rest, or,
with ``probe_folds`` k >= 2, k-fold cross-validated over the batch (every image tested once),
plus a low-shot probe fitted on one fold at a time (``probe/low_shot_accuracy``; the paper's
low-shot evaluation uses 1% of ImageNet's labels); and an image of the masks over the first
image.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from distwm.agent import DataSpec, NonFiniteLossError, SampleSpec
from distwm.configs.jepa_config import JEPAConfig
from distwm.models.jepa.model import IJEPA, JEPALearner, build_networks
from distwm.utils import distributed
from distwm.utils.checkpoint import check_state, checkpoint_format, cpu_state, make_state
from distwm.utils.devices import resolve_device

__all__ = ["JEPATrainable", "NORMALIZATION", "SAMPLE", "images_from_batch", "make_mask_collator",
           "make_transform", "mask_image", "schedule_length"]

SAMPLE = "images"
#: the mean / std images are normalised with (ImageNet's, as ijepa)
NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
ARCHITECTURE_FIELDS = ("model_name", "embed_dim", "depth", "num_heads", "patch_size", "crop_size",
                       "pred_depth", "pred_emb_dim")
MAX_NONFINITE_UPDATES = 20
#: target-block colours of the mask image
_BLOCK_COLOURS = np.array([[1.0, 0.2, 0.2], [0.2, 0.9, 0.2], [0.3, 0.5, 1.0], [1.0, 0.8, 0.1],
                           [0.9, 0.3, 0.9], [0.2, 0.9, 0.9]])


def images_from_batch(batch: Mapping[str, Any]) -> Tensor:
    """``batch["image"]`` ``(B, C, H, W)`` (or ``(B, 1, C, H, W)``) uint8 -> ``(B, 3, H, W)``
    float in ``[0, 1]`` on the CPU; a ``ValueError`` names a missing key or a bad shape."""
    if not isinstance(batch, Mapping) or "image" not in batch:
        keys = ", ".join(sorted(batch)) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"I-JEPA learns from images: the batch has no 'image' (got {keys}); "
                         "train on an image data set (CIFAR-10, an image folder, sklearn:digits)")
    images = torch.as_tensor(np.asarray(batch["image"]))
    if images.dim() == 5:
        if images.shape[1] != 1:
            raise ValueError(f"I-JEPA takes single images (seq_len 1), got clips of "
                             f"{images.shape[1]} frames (shape {tuple(images.shape)})")
        images = images[:, 0]
    if images.dim() != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"I-JEPA expects image (B, C, H, W) with C 1 or 3, got shape "
                         f"{tuple(images.shape)}")
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def schedule_length(config: JEPAConfig, dataset_info: Mapping[str, Any] | None,
                    world_size: int = 1) -> int:
    """Updates of the lr / weight-decay / EMA schedules: ``total_updates``, else ``ipe_scale *
    epochs * iterations per epoch`` (``size // (batch_size * world_size)``, ijepa's drop_last)."""
    if config.total_updates is not None:
        return config.total_updates
    size = (dataset_info or {}).get("size")
    if not size:
        raise ValueError("JEPAConfig.total_updates is not set and the data set's size is unknown: "
                         "set total_updates (the schedules' length in updates)")
    per_epoch = max(1, int(size) // (config.batch_size * world_size))
    return max(1, int(config.ipe_scale * config.epochs * per_epoch))


def make_transform(config: JEPAConfig) -> Any:
    """The training augmentations of ``config``
    (:func:`~distwm.transforms.transforms.make_transforms`, normalised with :data:`NORMALIZATION`)."""
    from distwm.transforms.transforms import make_transforms

    c = config
    return make_transforms(crop_size=c.crop_size, crop_scale=c.crop_scale,
                           color_jitter=c.color_jitter_strength, horizontal_flip=c.use_horizontal_flip,
                           color_distortion=c.use_color_distortion, gaussian_blur=c.use_gaussian_blur,
                           normalization=NORMALIZATION)


def make_mask_collator(config: JEPAConfig, seed: int | None = None) -> Any:
    """The multiblock :class:`~distwm.masks.multiblock.MaskCollator` of ``config`` (``seed``:
    block positions from a seeded generator instead of torch's global RNG)."""
    from distwm.masks.multiblock import MaskCollator

    c = config
    return MaskCollator(input_size=c.crop_size, patch_size=c.patch_size,
                        enc_mask_scale=c.enc_mask_scale, pred_mask_scale=c.pred_mask_scale,
                        aspect_ratio=c.aspect_ratio, nenc=c.num_enc_masks, npred=c.num_pred_masks,
                        min_keep=c.min_keep, allow_overlap=c.allow_overlap, seed=seed)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class JEPATrainable:
    """The I-JEPA networks, optimiser, schedules, counters, checkpoints and report."""

    FAMILY = "jepa"
    CHECKPOINT_FORMAT = checkpoint_format("jepa", 1)

    def __init__(self, config: JEPAConfig, total_updates: int, device: Any = "cpu",
                 num_classes: int | None = None):
        """``total_updates``: the schedules' length (:func:`schedule_length`);
        ``num_classes``: the probe's classes (None: the largest label + 1 of a report batch).
        The networks are built from ``config.seed`` without touching torch's global RNG."""
        if not isinstance(config, JEPAConfig):
            raise ValueError(f"JEPATrainable needs a JEPAConfig, got {type(config).__name__}")
        c = self.config = config
        self.device = resolve_device(device)
        self.num_classes = None if num_classes is None else int(num_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            model = IJEPA(*build_networks(c, "cpu"))
        self.learner = JEPALearner(c, total_updates, self.device, model=model)
        self.transform = make_transform(c)
        self.collator = make_mask_collator(c)
        self._collator_batches = 0  # batches the training collator has numbered
        #: held-out rows the data-parallel runtime hands ``report``
        self.report_rows = c.probe_size
        self._random_encoder: torch.nn.Module | None = None
        self._last_probe_update: int | None = None

    # -- construction (the dataset-trained protocol) --------------------------------------------
    @classmethod
    def from_config(cls, config: JEPAConfig, dataset_info: Mapping[str, Any] | None = None,
                    device: Any = "cpu") -> "JEPATrainable":
        """Build for a data set (its ``dataset_info``): it must hold images of 1 or 3 channels."""
        info = dict(dataset_info or {})
        kind = info.get("kind")
        if kind is not None and kind != "images":
            raise ValueError(f"I-JEPA trains on images, but the data set is {kind!r} (source "
                             f"{info.get('source')!r}); give a CIFAR-10 folder, an image folder "
                             "or sklearn:digits")
        shape = info.get("frame_shape")
        if shape is not None and int(shape[0]) not in (1, 3):
            raise ValueError(f"I-JEPA takes grey or RGB images; the data set's have {shape[0]} "
                             f"channels (frame_shape {list(shape)})")
        total = schedule_length(config, info, distributed.world_size())
        return cls(config, total, device, info.get("num_classes"))

    def data_spec(self) -> DataSpec:
        return DataSpec(samples=[SampleSpec(SAMPLE, self.config.batch_size, 1)], train_ratio=0.0)

    @property
    def model(self) -> IJEPA:
        return self.learner.model

    @property
    def updates(self) -> int:
        return self.learner.updates

    @property
    def total_updates(self) -> int:
        return self.learner.total_updates

    # -- views and masks ------------------------------------------------------------------------
    def training_views(self, images: Tensor, update: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Augmented, normalised crops of ``images`` (:func:`images_from_batch`) and the
        multiblock masks of update ``update`` (see the module docstring)."""
        if self._collator_batches > update:  # rolled back (a checkpoint was loaded)
            self.collator, self._collator_batches = make_mask_collator(self.config), 0
        while self._collator_batches < update:
            self.collator.step()
            self._collator_batches += 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(self.config.seed, distributed.rank(), update))
            views = self.transform(images)
            masks_enc, masks_pred = self.collator.sample_masks(len(images))
        self._collator_batches += 1
        return views, masks_enc, masks_pred

    def eval_views(self, images: Tensor) -> Tensor:
        """``images`` resized to ``crop_size`` (bilinear, antialiased) and normalised."""
        from distwm.transforms.tensor_ops import normalize

        size = self.config.crop_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=True)
        return torch.stack([normalize(image, *NORMALIZATION) for image in images])

    # -- learning -------------------------------------------------------------------------------
    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        if SAMPLE not in batches:
            raise ValueError(f"I-JEPA updates on sample {SAMPLE!r}; got {', '.join(batches) or 'none'}")
        images = images_from_batch(batches[SAMPLE])
        return self.train_step(*self.training_views(images, self.updates))

    def train_step(self, views: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor]) -> dict[str, float]:
        """One update on already augmented, normalised ``views`` ``(B, 3, crop, crop)`` and
        their masks (what a loader with ``MaskCollator`` yields: the seed's training loop)."""
        metrics = self.learner.step(views, list(masks_enc), list(masks_pred))
        metrics["updates"] = float(self.updates)
        if self.learner.nonfinite_updates >= MAX_NONFINITE_UPDATES:
            raise NonFiniteLossError(f"I-JEPA: {self.learner.nonfinite_updates} consecutive updates "
                                     "had a non-finite loss or gradient")
        return metrics

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Average-pooled target-encoder features ``(B, D)`` of ``images`` (``(B, C, H, W)``
        uint8 or float in [0, 1]): the representation the probe evaluates."""
        from distwm.models.jepa.probe import pooled_features

        views = self.eval_views(images_from_batch({"image": images})).to(self.device)
        return pooled_features(self.model.target_encoder, views).float()

    # -- weights and checkpoints ----------------------------------------------------------------
    def get_weights(self) -> dict[str, Any]:
        return cpu_state(self.model.state_dict())

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        self.model.load_state_dict(weights)

    def _architecture(self) -> dict[str, Any]:
        return {name: getattr(self.config, name) for name in ARCHITECTURE_FIELDS}

    def state_dict(self) -> dict[str, Any]:
        return make_state(self.CHECKPOINT_FORMAT, self._architecture(), config=self.config.to_dict(),
                          total_updates=self.total_updates, num_classes=self.num_classes,
                          **self.learner.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, self.CHECKPOINT_FORMAT, self._architecture(), self.FAMILY,
                    ("networks", "optimizer", "lr_schedule", "wd_schedule", "updates"))
        try:
            self.learner.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"jepa checkpoint tensors do not fit this model: {exc}") from exc

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: Any = "cpu") -> "JEPATrainable":
        """Rebuild from a checkpoint state alone (its config travels with it)."""
        if not isinstance(state, Mapping) or "config" not in state or "total_updates" not in state:
            raise ValueError("not a jepa checkpoint state: it needs 'config' and 'total_updates'")
        trainable = cls(JEPAConfig.from_dict(state["config"]), int(state["total_updates"]), device,
                        state.get("num_classes"))
        trainable.load_state_dict(state)
        return trainable

    # -- report ---------------------------------------------------------------------------------
    def probe_due(self) -> bool:
        """True when ``report`` runs the linear probe now (every ``probe_every`` updates)."""
        last = self._last_probe_update
        return last is None or self.updates - last >= self.config.probe_every

    def random_encoder(self) -> torch.nn.Module:
        """The probe's baseline: a randomly initialised encoder of this architecture (seeded
        by ``seed + 1``, built on first use and kept; not part of the state)."""
        if self._random_encoder is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.config.seed + 1)
                encoder, _ = build_networks(self.config, "cpu")
            self._random_encoder = encoder.to(self.device).eval().requires_grad_(False)
        return self._random_encoder

    @torch.no_grad()
    def report(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Loss, linear-probe accuracies and the mask image (see the module docstring)."""
        c = self.config
        images = images_from_batch(batch)
        views = self.eval_views(images).to(self.device)
        masks_enc, masks_pred = make_mask_collator(c, seed=c.seed).sample_masks(len(views))
        self.model.eval()
        loss = self.model.loss(views, [m.to(self.device) for m in masks_enc],
                               [m.to(self.device) for m in masks_pred])
        scalars = {"loss": float(loss), "updates": float(self.updates),
                   "learning_rate": float(self.learner.optimizer.param_groups[0]["lr"])}
        if batch.get("label") is not None and self.probe_due():
            labels = torch.as_tensor(np.asarray(batch["label"])).reshape(-1).long()
            if batch.get("train_image") is not None:
                train_views = self.eval_views(images_from_batch({"image": batch["train_image"]}))
                train_labels = torch.as_tensor(np.asarray(batch["train_label"])).reshape(-1).long()
                scalars.update(self._probe(torch.cat([train_views.to(self.device), views]),
                                           torch.cat([train_labels, labels]), len(train_views)))
            elif len(views) >= 2:
                scalars.update(self._probe(views, labels))
        image = mask_image(images[0], masks_enc, masks_pred, c.crop_size, c.patch_size, row=0)
        return {"scalars": scalars, "images": {"masks": image}}

    def _probe(self, views: Tensor, labels: Tensor, n_train: int | None = None) -> dict[str, float]:
        """Probe accuracies (fitted on the first ``n_train`` rows and tested on the rest, else
        ``probe_folds``-fold cross-validated over all rows, with the low-shot probe, else on a
        seeded ``probe_train_fraction`` split) and the pooled features' spread (the mean over features
        of their standard deviation over the test images: near 0 when the representation has
        collapsed)."""
        from distwm.models.jepa.probe import (cross_validated_accuracy, pooled_features,
                                              probe_accuracy, split_indices)

        c = self.config
        k = self.num_classes if self.num_classes is not None else int(labels.max()) + 1
        folds = min(c.probe_folds, len(views)) if n_train is None else 0
        if folds >= 2:
            train = test = torch.arange(len(views))
            out = {"probe/train_images": float(len(views) - math.ceil(len(views) / folds)),
                   "probe/test_images": float(len(views)),
                   "probe/low_shot_train_images": float(len(views) // folds)}
        else:
            if n_train is None:
                train, test = split_indices(len(views), c.probe_train_fraction, seed=c.seed)
            else:
                train, test = torch.arange(n_train), torch.arange(n_train, len(views))
            out = {"probe/train_images": float(len(train)), "probe/test_images": float(len(test))}
        for name, encoder in (("", self.model.target_encoder), ("random_encoder_", self.random_encoder())):
            features = pooled_features(encoder, views)
            if folds >= 2:
                for kind, low_shot in (("", False), ("low_shot_", True)):
                    out[f"probe/{name}{kind}accuracy"] = cross_validated_accuracy(
                        features, labels, k, folds, c.probe_penalty, seed=c.seed, low_shot=low_shot)
            else:
                out[f"probe/{name}accuracy"] = probe_accuracy(
                    features[train], labels[train], features[test], labels[test], k, c.probe_penalty)
            out[f"probe/{name}feature_std"] = float(features[test].std(dim=0).mean())
        self._last_probe_update = self.updates
        return out


def mask_image(image: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor], crop_size: int,
               patch_size: int, row: int = 0, min_side: int = 128) -> np.ndarray:
    """Three panels ``(H, W, 3)`` uint8 of ``image`` (``(3, h, w)`` in [0, 1], resized to
    ``crop_size``): the image, its context block (the other patches dimmed) and its target
    blocks (one colour each over the dimmed image); ``row``: which sample of the masks.
    Upscaled (nearest) to at least ``min_side`` pixels high."""
    if image.shape[-2:] != (crop_size, crop_size):
        image = F.interpolate(image[None], size=(crop_size, crop_size), mode="bilinear",
                              align_corners=False, antialias=True)[0]
    picture = image.clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float64)
    grid = crop_size // patch_size

    def patch_map(indices: list[Tensor]) -> np.ndarray:
        cells = np.zeros(grid * grid, dtype=bool)
        for mask in indices:
            cells[mask[row].cpu().numpy()] = True
        return np.kron(cells.reshape(grid, grid), np.ones((patch_size, patch_size), dtype=bool))

    context = patch_map(masks_enc)[..., None]
    dimmed = 0.25 * picture
    context_panel = np.where(context, picture, dimmed)
    target_panel = dimmed.copy()
    for j, mask in enumerate(masks_pred):
        covered = patch_map([mask])[..., None]
        colour = _BLOCK_COLOURS[j % len(_BLOCK_COLOURS)]
        target_panel = np.where(covered, 0.5 * picture + 0.5 * colour, target_panel)
    border = np.ones((crop_size, max(1, crop_size // 16), 3))
    strip = np.concatenate([picture, border, context_panel, border, target_panel], axis=1)
    scale = max(1, math.ceil(min_side / crop_size))
    strip = strip.repeat(scale, axis=0).repeat(scale, axis=1)
    return (strip * 255.0).round().clip(0, 255).astype(np.uint8)
