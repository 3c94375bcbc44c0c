"""DiT as a dataset-trained :class:`~distwm.agent.Trainable`: what Ray Train workers (and the
seed's single-process ``DiT.train``) update.

One sample, ``images``: ``BATCH`` single images (seq_len 1) of an image data set, ``image``
``(B, C, H, W)`` uint8 (``(B, 1, C, H, W)`` too) and ``label`` ``(B,)`` int64. The model is
built for the data: :meth:`DiTTrainable.from_config` takes ``CHANNELS`` and ``IMG_SIZE`` from
the data set's ``frame_shape`` and, when ``num_classes`` is None, its classes from
``num_classes``.

An update: images to [-1, 1], uniform random timesteps, the hybrid loss of
:meth:`~distwm.models.dit.diffusion.DDPM.training_losses` (label dropout to the null class in
the network), AdamW (``LR``, ``weight_decay``) with the gradients averaged over the
``torch.distributed`` group before the optional clipping (:func:`distwm.utils.gradient_step.
apply_step`: a non-finite loss or gradient skips the step on every rank), then the EMA of the
weights (``EMA_DECAY``). ``autocast="bf16"``: the network's forward passes (training and
sampling) under bf16 autocast, float32 weights and loss terms (:class:`~distwm.models.dit.
network.DiT`). With ``eval_classifier`` the evaluation classifier
(:mod:`distwm.models.dit.evaluation`) takes one Adam step on the same clean images and labels.
``MAX_NONFINITE_UPDATES`` consecutive skips raise :class:`~distwm.agent.NonFiniteLossError`.
Timesteps and noise come from a generator seeded with (``seed``, the rank, the update count):
the workers draw different noise and a resumed run the same as an uninterrupted one.

:meth:`DiTTrainable.report` (rank 0, at every checkpoint; :mod:`distwm.models.dit.report`):
the EMA model's class-conditional sample grid (one row per class) and the sample-quality
evaluation.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from distwm.agent import DataSpec, NonFiniteLossError, SampleSpec
from distwm.configs.dit_config import DiTConfig
from distwm.models.dit.diffusion import DDPM
from distwm.models.dit.ema import ema_copy, ema_update
from distwm.models.dit.evaluation import SampleClassifier
from distwm.models.dit.factory import dit_from_config
from distwm.utils import distributed
from distwm.utils.checkpoint import check_state, checkpoint_format, cpu_state, make_state
from distwm.utils.devices import resolve_device
from distwm.utils.gradient_step import apply_step
from distwm.utils.precision import check_autocast

__all__ = ["ARCHITECTURE_FIELDS", "DiTTrainable", "SAMPLE", "images_from_batch"]

SAMPLE = "images"
MAX_NONFINITE_UPDATES = 20
ARCHITECTURE_FIELDS = ("IMG_SIZE", "CHANNELS", "PATCH", "WIDTH", "DEPTH", "HEADS", "num_classes",
                       "learn_sigma", "mlp_ratio", "t_dim", "TIMESTEPS", "BETA_START", "BETA_END",
                       "EMA", "eval_classifier", "classifier_width")


def images_from_batch(batch: Mapping[str, Any], channels: int, img_size: int, device
                      ) -> tuple[Tensor, Optional[Tensor]]:
    """``batch["image"]`` uint8 ``(B, C, H, W)`` or ``(B, 1, C, H, W)`` -> float ``(B, C, H, W)``
    in [-1, 1] on ``device``, and ``batch["label"]`` ``(B,)`` int64 (None when absent)."""
    if "image" not in batch:
        raise ValueError(f"DiT learns from images: the batch has no 'image' (keys: "
                         f"{', '.join(sorted(batch)) or 'none'})")
    images = torch.as_tensor(np.asarray(batch["image"]))
    if images.dim() == 5 and images.shape[1] == 1:
        images = images[:, 0]
    expected = (channels, img_size, img_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"DiT expects images (B, {channels}, {img_size}, {img_size}), got shape "
                         f"{tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise ValueError(f"DiT expects uint8 images in [0, 255], got dtype {images.dtype}")
    x = images.to(device).float() / 127.5 - 1.0
    labels = batch.get("label")
    if labels is None:
        return x, None
    y = torch.as_tensor(np.asarray(labels)).reshape(-1)
    if y.shape[0] != x.shape[0] or y.is_floating_point():
        raise ValueError(f"DiT expects integer labels ({x.shape[0]},), got {tuple(y.shape)} {y.dtype}")
    return x, y.long().to(device)


class DiTTrainable:
    """The DiT, its EMA, the diffusion process, the optimizer, the evaluation classifier,
    counters, checkpoints and the report."""

    FAMILY = "dit"
    CHECKPOINT_FORMAT = checkpoint_format("dit", 1)

    def __init__(self, config: DiTConfig, device: str | torch.device = "cpu",
                 data_classes: Optional[int] = None):
        """``config.num_classes`` must be resolved (not None: :meth:`from_config` takes it from
        the data set); ``data_classes``: the data set's classes, which the evaluation
        classifier learns (default ``config.num_classes``)."""
        if not isinstance(config, DiTConfig):
            raise ValueError(f"DiTTrainable needs a DiTConfig, got {type(config).__name__}")
        if config.num_classes is None:
            raise ValueError("DiTConfig.num_classes is None (the data set's): build with "
                             "DiTTrainable.from_config(config, dataset_info), or set it")
        self.config = config
        self.device = resolve_device(device)
        check_autocast(config.autocast, self.device.type, "DiTConfig.autocast")
        self.data_classes = int(config.num_classes if data_classes is None else data_classes)
        torch.manual_seed(config.seed)
        self.model = dit_from_config(config).to(self.device)
        self.ema = ema_copy(self.model) if config.EMA else None
        self.diffusion = DDPM(config.TIMESTEPS, config.BETA_START, config.BETA_END, self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.LR,
                                           weight_decay=config.weight_decay)
        self.classifier: Optional[SampleClassifier] = None
        self.classifier_optimizer = None
        if config.eval_classifier and self.data_classes >= 2:
            self.classifier = SampleClassifier(config.CHANNELS, self.data_classes,
                                               config.classifier_width).to(self.device)
            self.classifier_optimizer = torch.optim.Adam(self.classifier.parameters(),
                                                         lr=config.classifier_lr)
        self.updates = 0
        self.nonfinite_updates = 0
        self.generator = torch.Generator(device=self.device)

    def _noise_seed(self) -> int:
        """The seed of this update's timesteps and noise: (seed, rank, update count)."""
        return (self.config.seed * 1_000_003 + distributed.rank() * 7_919 + self.updates * 104_729
                ) % 2 ** 63

    # -- construction (the dataset-trained protocol) --------------------------------------------
    @classmethod
    def from_config(cls, config: DiTConfig, dataset_info: Mapping[str, Any] | None = None,
                    device: str = "cpu") -> "DiTTrainable":
        """Build for a data set: ``frame_shape`` ``[C, H, W]`` (H = W, a multiple of
        ``PATCH``) sets ``CHANNELS`` and ``IMG_SIZE``; ``num_classes`` None takes the data
        set's ``num_classes`` (0 without labels)."""
        if not isinstance(config, DiTConfig):
            raise ValueError(f"DiTTrainable needs a DiTConfig, got {type(config).__name__}")
        info = dict(dataset_info or {})
        changes: dict[str, Any] = {}
        shape = info.get("frame_shape")
        if shape is not None:
            if len(shape) != 3 or int(shape[1]) != int(shape[2]):
                raise ValueError(f"DiT trains on square images: the data set's frame_shape is "
                                 f"{list(shape)} (expected [C, H, H])")
            if int(shape[1]) % config.PATCH:
                raise ValueError(f"the data set's {shape[1]}x{shape[2]} images are not a multiple "
                                 f"of DiTConfig.PATCH ({config.PATCH})")
            changes.update(CHANNELS=int(shape[0]), IMG_SIZE=int(shape[1]))
        data_classes = int(info.get("num_classes") or 0)
        if config.num_classes is None:
            changes["num_classes"] = data_classes
        elif config.num_classes and data_classes and config.num_classes != data_classes:
            raise ValueError(f"DiTConfig.num_classes is {config.num_classes} but the data set has "
                             f"{data_classes} classes (set num_classes=None to use the data's, "
                             f"or 0 for an unconditional model)")
        if changes:
            config = config.replace(**changes)
        return cls(config, device, data_classes=data_classes or config.num_classes)

    def data_spec(self) -> DataSpec:
        return DataSpec(samples=[SampleSpec(SAMPLE, self.config.BATCH, 1)], train_ratio=0.0)

    @property
    def sampling_model(self):
        """The network the samples come from: the EMA when there is one."""
        return self.ema if self.ema is not None else self.model

    # -- learning -------------------------------------------------------------------------------
    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        if SAMPLE not in batches:
            raise ValueError(f"DiT updates on sample {SAMPLE!r}; got {', '.join(batches) or 'none'}")
        x, y = images_from_batch(batches[SAMPLE], self.config.CHANNELS, self.config.IMG_SIZE,
                                 self.device)
        return self.update_images(x, y)

    def _check_labels(self, x: Tensor, y: Optional[Tensor]) -> Optional[Tensor]:
        needs = self.model.conditional or self.classifier is not None
        if y is None:
            if needs:
                raise ValueError("this DiT needs class labels ('label' in the batch): it is "
                                 "class-conditional or trains the evaluation classifier")
            return None
        if y.shape != (x.shape[0],):
            raise ValueError(f"labels must be ({x.shape[0]},), got {tuple(y.shape)}")
        classes = max(self.model.num_classes, self.data_classes)
        if classes and y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise ValueError(f"labels must be in [0, {classes}), got values in "
                             f"[{int(y.min())}, {int(y.max())}]")
        return y.to(self.device).long()

    def update_images(self, x: Tensor, y: Optional[Tensor] = None) -> dict[str, float]:
        """One update on images ``x`` ``(B, C, H, W)`` in [-1, 1] and labels ``y`` ``(B,)``."""
        c = self.config
        x = x.to(self.device)
        y = self._check_labels(x, y)
        self.model.train()
        self.generator.manual_seed(self._noise_seed())
        t = torch.randint(0, self.diffusion.timesteps, (x.shape[0],), device=self.device,
                          generator=self.generator)
        noise = torch.randn(x.shape, device=self.device, generator=self.generator)
        losses = self.diffusion.training_losses(self.model, x, t,
                                                y if self.model.conditional else None, noise,
                                                c.vlb_weight)
        loss = losses["loss"].mean()
        metrics = {name: float(value.detach().mean()) for name, value in losses.items()}
        metrics = apply_step(self.model, self.optimizer, loss, metrics, c.max_grad_norm)
        ok = metrics["skipped"] == 0.0
        if ok and self.ema is not None:
            ema_update(self.ema, self.model, c.EMA_DECAY)
        if self.classifier is not None:
            metrics.update(self._classifier_step(x, y))
        self.updates += 1
        self.nonfinite_updates = 0 if ok else self.nonfinite_updates + 1
        metrics.update(updates=float(self.updates), learning_rate=self.optimizer.param_groups[0]["lr"])
        if self.nonfinite_updates >= MAX_NONFINITE_UPDATES:
            raise NonFiniteLossError(f"DiT: {self.nonfinite_updates} consecutive updates had a "
                                     "non-finite loss or gradient")
        return metrics

    def _classifier_step(self, x: Tensor, y: Tensor) -> dict[str, float]:
        self.classifier.train()
        logits = self.classifier(x)
        loss = F.cross_entropy(logits, y)
        accuracy = float((logits.detach().argmax(1) == y).float().mean())
        out = apply_step(self.classifier, self.classifier_optimizer, loss,
                         {"loss": float(loss.detach())}, None)
        return {f"classifier/{k}": v for k, v in out.items()} | {"classifier/accuracy": accuracy}

    # -- weights and checkpoints ----------------------------------------------------------------
    def get_weights(self) -> dict[str, Any]:
        """The sampling network's weights (the EMA's when there is one)."""
        return cpu_state(self.sampling_model.state_dict())

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        self.sampling_model.load_state_dict(weights)

    def _architecture(self) -> dict[str, Any]:
        arch = {name: getattr(self.config, name) for name in ARCHITECTURE_FIELDS}
        arch.update(null_class=self.config.class_dropout_prob > 0, data_classes=self.data_classes)
        return arch

    def state_dict(self) -> dict[str, Any]:
        networks = {"model": cpu_state(self.model.state_dict())}
        optimizers = {"model": self.optimizer.state_dict()}
        if self.ema is not None:
            networks["ema"] = cpu_state(self.ema.state_dict())
        if self.classifier is not None:
            networks["classifier"] = cpu_state(self.classifier.state_dict())
            optimizers["classifier"] = self.classifier_optimizer.state_dict()
        return make_state(self.CHECKPOINT_FORMAT, self._architecture(), config=self.config.to_dict(),
                          networks=networks, optimizers=optimizers, updates=self.updates,
                          nonfinite_updates=self.nonfinite_updates)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, self.CHECKPOINT_FORMAT, self._architecture(), self.FAMILY,
                    ("networks", "optimizers", "updates"))
        networks, optimizers = state["networks"], state["optimizers"]
        try:
            self.model.load_state_dict(networks["model"])
            self.optimizer.load_state_dict(optimizers["model"])
            if self.ema is not None:
                self.ema.load_state_dict(networks["ema"])
            if self.classifier is not None:
                self.classifier.load_state_dict(networks["classifier"])
                self.classifier_optimizer.load_state_dict(optimizers["classifier"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"dit checkpoint tensors do not fit this model: {exc}") from exc
        self.updates = int(state["updates"])
        self.nonfinite_updates = int(state.get("nonfinite_updates", 0))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: str = "cpu") -> "DiTTrainable":
        """Rebuild from a checkpoint state alone (its config travels with it)."""
        if not isinstance(state, Mapping) or "config" not in state or "architecture" not in state:
            raise ValueError("not a dit checkpoint state: it has no 'config' / 'architecture'")
        trainable = cls(DiTConfig.from_dict(state["config"]), device,
                        data_classes=int(state["architecture"].get("data_classes", 0)))
        trainable.load_state_dict(state)
        return trainable

    # -- sampling and the report ----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, labels=None, n: Optional[int] = None, seed: int = 0,
               sample_steps: Optional[int] = None, guidance_scale: Optional[float] = None
               ) -> Tensor:
        """Images ``(n, C, H, W)`` in [-1, 1] from the sampling network with the config's
        sampler, ``sample_steps`` and ``guidance_scale`` (unless given): for ``labels`` ``(n,)``
        (a class-conditional model) or ``n`` unconditional ones."""
        c = self.config
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long, device=self.device).reshape(-1)
            n = len(labels)
        if not n or n < 1:
            raise ValueError("sample needs labels or n >= 1 images")
        model = self.sampling_model
        was_training = model.training
        model.eval()
        try:
            return self.diffusion.sample(
                model, n, c.IMG_SIZE, c.CHANNELS, y=labels,
                guidance_scale=c.guidance_scale if guidance_scale is None else guidance_scale,
                sample_steps=c.sample_steps if sample_steps is None else sample_steps,
                sampler=c.sampler, eta=c.ddim_eta, clip_denoised=c.clip_denoised,
                generator=torch.Generator(device=self.device).manual_seed(seed))
        finally:
            model.train(was_training)

    def report(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The sample grid, the real images beside it and the sample-quality scalars."""
        from distwm.models.dit.report import dit_report

        x, y = images_from_batch(batch, self.config.CHANNELS, self.config.IMG_SIZE, self.device)
        return dit_report(self, x, y)
