"""The seed's single-process Genie trainer (``world_models.training.train_genie``).

:class:`GenieTrainer` is the degenerate case of the data-parallel path: the same
:class:`~distwm.models.genie.trainable.GenieTrainable` update that every Ray Train worker
runs, on batches ``(B, C, T, H, W)`` in ``[0, 1]`` from any torch ``DataLoader`` (e.g.
:func:`distwm.datasets.video_datasets.create_video_dataloader`), in this process. For many
workers, a collected dataset and checkpoints with resume, use ``distwm train genie --data``.

:class:`GenieConfig` here is the seed's training config: the Genie config of
:mod:`distwm.configs.genie_config` with the seed's training defaults (64x64, 16 frames, the
paper's tokenizer and LAM widths and depths).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor

from distwm.configs import genie_config
from distwm.datasets.video_datasets import VideoFolderDataset
from distwm.models.genie.genie import Genie
from distwm.models.genie.trainable import GenieTrainable
from distwm.utils.checkpoint import load_file, save_file

__all__ = ["GenieConfig", "GenieTrainer", "VideoDataset", "create_genie_trainer"]


@dataclass
class GenieConfig(genie_config.GenieConfig):
    """Configuration for Genie training (the seed's defaults)."""

    num_frames: int = 16
    image_size: int = 64
    tokenizer_encoder_dim: int = 512
    tokenizer_decoder_dim: int = 1024
    tokenizer_encoder_depth: int = 12
    tokenizer_decoder_depth: int = 20
    action_encoder_dim: int = 1024
    action_encoder_depth: int = 20


class VideoDataset(VideoFolderDataset):
    """Dataset for video data: clips ``(C, num_frames, image_size, image_size)`` in ``[0, 1]``
    from a list of video files (decoded with OpenCV)."""

    def __init__(self, video_paths, num_frames: int = 16, image_size: int = 64):
        super().__init__(list(video_paths), num_frames, image_size)


def _video(batch: Any) -> Tensor:
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    if not isinstance(batch, Tensor) or batch.dim() != 5:
        raise ValueError(f"GenieTrainer expects video batches (B, C, T, H, W), got "
                         f"{getattr(batch, 'shape', type(batch).__name__)}")
    return batch


class GenieTrainer:
    """Trainer for a :class:`Genie` model: ``train_step``, ``validate``, ``train`` and
    checkpoints (``torch.load(weights_only=True)`` format)."""

    def __init__(self, model: Genie, config: genie_config.GenieConfig, device=None):
        self.config = config
        self.trainable = GenieTrainable(config, device or "cpu", model=model)
        self.model = self.trainable.model
        self.device = self.trainable.device
        self.history: list[dict[str, float]] = []

    @property
    def global_step(self) -> int:
        return self.trainable.updates

    def train_step(self, batch: Tensor) -> dict[str, Tensor]:
        """One update of the current phase on ``batch`` ``(B, C, T, H, W)``; its losses."""
        metrics = self.trainable.update_video(_video(batch))
        return {k: torch.tensor(v) for k, v in metrics.items()}

    @torch.no_grad()
    def validate(self, val_batch: Tensor) -> dict[str, Tensor]:
        """Losses of every part on ``val_batch`` (no update) and the reconstruction PSNR."""
        from distwm.models.genie.report import psnr

        video = _video(val_batch).to(self.device)
        self.model.eval()
        losses = self.model.phase_losses(
            video, "all", (self.config.mask_prob_min, self.config.mask_prob_max))
        recon = self.model.video_tokenizer(video)[0]
        self.model.train()
        return {**{f"val/{k}": v.detach() for k, v in losses.items()},
                "val/psnr": psnr(recon, video).mean()}

    def train(self, train_dataloader: Iterable, val_dataloader: Iterable | None = None,
              num_steps: int | None = None, log_interval: int = 100, val_interval: int = 1000
              ) -> list[dict[str, float]]:
        """Update until ``num_steps`` (default ``config.max_steps``) updates, cycling the
        loader; print loss, steps/s and ETA every ``log_interval``; validate on one batch of
        ``val_dataloader`` every ``val_interval``. Returns the logged metrics."""
        total = self.config.max_steps if num_steps is None else int(num_steps)
        start_step, start = self.global_step, time.perf_counter()
        while self.global_step < total:
            progressed = False
            for batch in train_dataloader:
                progressed = True
                metrics = {k: float(v) for k, v in self.train_step(batch).items()}
                step = self.global_step
                if val_dataloader is not None and step % val_interval == 0:
                    metrics.update({k: float(v) for k, v in
                                    self.validate(next(iter(val_dataloader))).items()})
                if step % log_interval == 0 or step == total:
                    rate = (step - start_step) / max(time.perf_counter() - start, 1e-9)
                    eta = (total - step) / max(rate, 1e-9)
                    print(f"[genie] step {step}/{total} phase {self.trainable.phase(step - 1)} "
                          f"loss {metrics['loss']:.4f} {rate:.2f} steps/s ETA {eta:.0f}s", flush=True)
                    self.history.append({"step": float(step), **metrics})
                if self.global_step >= total:
                    break
            if not progressed:
                raise ValueError("GenieTrainer.train: the train dataloader yielded no batches")
        return self.history

    def save_checkpoint(self, path: str) -> None:
        """Write the model, optimizers, schedules and counters to ``path``."""
        save_file({"agent": self.trainable.state_dict()}, path)

    def load_checkpoint(self, path: str) -> None:
        """Restore what :meth:`save_checkpoint` wrote (the architecture must match)."""
        state = load_file(path, None, "Genie checkpoint")
        self.trainable.load_state_dict(state.get("agent", state))


def create_genie_trainer(config: genie_config.GenieConfig | Mapping | None = None, device=None
                         ) -> tuple[GenieTrainer, Genie]:
    """A :class:`GenieTrainer` and its :class:`Genie` for ``config`` (default :class:`GenieConfig`)."""
    from distwm.models.genie.factory import genie_from_config

    if config is None:
        config = GenieConfig()
    elif isinstance(config, Mapping):
        config = GenieConfig.from_dict(config)
    model = genie_from_config(config)
    trainer = GenieTrainer(model, config, device)
    return trainer, trainer.model
