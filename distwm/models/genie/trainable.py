"""Genie as a dataset-trained :class:`~distwm.agent.Trainable`: what Ray Train workers (and the
seed's single-process :class:`~distwm.training.train_genie.GenieTrainer`) update.

One sample, ``clips``: ``batch_size`` clips of ``num_frames`` frames from the collected
dataset (``image`` ``(B, T, C, H, W)`` uint8; other stream keys are ignored: Genie learns from
video only). Frames of another size are resized (area interpolation) to ``image_size``.

Phases (``GenieConfig.stage``; see :mod:`distwm.configs.genie_config`): the tokenizer alone
(VQ-VAE loss), the LAM alone, the dynamics model alone (on the frozen tokenizer's tokens and
the frozen LAM's actions), or the LAM and the dynamics model together, the dynamics model
reading the LAM's actions through a stop-gradient (the paper's second phase). ``stage="all"``
runs the tokenizer phase for ``tokenizer_phase_updates`` updates, then the co-training phase.

Each part has its own AdamW (``learning_rate``, ``weight_decay``; PyTorch's fused kernel,
:func:`~distwm.utils.optim.fused_adamw`) with a linear warmup over
``warmup_steps`` and a cosine decay to 0 at ``max_steps``, counted in that part's own
updates. ``autocast="bf16"`` runs the losses' forward passes (and play) under bf16 autocast
(:meth:`Genie.precision <distwm.models.genie.genie.Genie.precision>`); the weights, gradients
and optimizer state stay float32. ``keep_freed_memory`` (on by default) makes the process keep
the memory it frees from the first update on (:mod:`distwm.utils.allocator`). Gradients are averaged over the ``torch.distributed`` group (Ray Train's DDP group)
before clipping to ``max_grad_norm``; a non-finite loss or gradient skips the step on every
rank. ``max_nonfinite_updates`` consecutive skips raise
:class:`~distwm.agent.NonFiniteLossError`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from distwm.agent import DataSpec, NonFiniteLossError, SampleSpec
from distwm.configs.genie_config import GenieConfig, GenieSmallConfig
from distwm.utils import distributed
from distwm.utils.allocator import keep_freed_memory
from distwm.utils.checkpoint import check_state, checkpoint_format, cpu_state, make_state
from distwm.utils.devices import resolve_device
from distwm.utils.optim import fused_adamw
from distwm.utils.precision import check_autocast

__all__ = ["GenieTrainable", "PARTS", "PHASE_PARTS", "SAMPLE", "video_from_batch"]

SAMPLE = "clips"
PARTS = ("video_tokenizer", "latent_action_model", "dynamics_model")
#: phase -> parts it trains
PHASE_PARTS = {"tokenizer": ("video_tokenizer",), "lam": ("latent_action_model",),
               "dynamics": ("dynamics_model",),
               "lam_dynamics": ("latent_action_model", "dynamics_model")}
MAX_NONFINITE_UPDATES = 20
ARCHITECTURE_FIELDS = ("num_frames", "image_size", "in_channels", "tokenizer_vocab_size",
                       "tokenizer_embedding_dim", "tokenizer_encoder_dim", "tokenizer_decoder_dim",
                       "tokenizer_encoder_depth", "tokenizer_decoder_depth", "tokenizer_num_heads",
                       "tokenizer_patch_size", "action_vocab_size", "action_embedding_dim",
                       "action_encoder_dim", "action_encoder_depth", "action_num_heads",
                       "action_decoder_dim", "action_decoder_depth", "action_patch_size",
                       "action_pooling", "window_attention_heads", "dynamics_dim",
                       "dynamics_depth", "dynamics_num_heads")


#: the config classes a checkpoint may name (the seed's training GenieConfig is a subclass)
_CONFIG_CLASSES = {"GenieConfig": GenieConfig, "GenieSmallConfig": GenieSmallConfig}


def video_from_batch(batch: Mapping[str, Any], image_size: int, in_channels: int,
                     device) -> Tensor:
    """``batch["image"]`` ``(B, T, C, H, W)`` uint8 -> video ``(B, C, T, H, W)`` float in
    ``[0, 1]`` at ``image_size``; a ``ValueError`` names a missing key or a bad shape."""
    if "image" not in batch:
        raise ValueError(f"Genie learns from frames: the batch has no 'image' (keys: "
                         f"{', '.join(sorted(batch))}); collect a dataset with pixels")
    frames = torch.as_tensor(np.asarray(batch["image"]), device=device)
    if frames.dim() != 5 or frames.shape[2] != in_channels:
        raise ValueError(f"Genie expects image (B, T, {in_channels}, H, W), got shape "
                         f"{tuple(frames.shape)}")
    B, T, C, H, W = frames.shape
    video = frames.reshape(B * T, C, H, W).float()
    if frames.dtype == torch.uint8:
        video = video / 255.0
    if (H, W) != (image_size, image_size):
        video = F.interpolate(video, size=(image_size, image_size), mode="area")
    return video.reshape(B, T, C, image_size, image_size).permute(0, 2, 1, 3, 4).contiguous()


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


class GenieTrainable:
    """The :class:`Genie` model, one optimizer per part, counters, checkpoints and report."""

    FAMILY = "genie"
    CHECKPOINT_FORMAT = checkpoint_format("genie", 1)

    def __init__(self, config: GenieConfig, device: str | torch.device = "cpu", model=None):
        """``model``: a :class:`~distwm.models.genie.genie.Genie` to train (default: built from
        ``config``, seeded with ``config.seed``)."""
        from distwm.models.genie.factory import genie_from_config

        if not isinstance(config, GenieConfig):
            raise ValueError(f"GenieTrainable needs a GenieConfig, got {type(config).__name__}")
        self.config = config
        self.device = resolve_device(device)
        if model is None:
            torch.manual_seed(config.seed)
            model = genie_from_config(config)
        self.model = model.to(self.device)
        check_autocast(self.model.autocast, self.device.type, "GenieConfig.autocast")
        self.optimizers = {}
        self.schedulers = {}
        for part in PARTS:
            opt = fused_adamw(getattr(self.model, part).parameters(), lr=config.learning_rate,
                              weight_decay=config.weight_decay)
            self.optimizers[part] = opt
            self.schedulers[part] = torch.optim.lr_scheduler.LambdaLR(
                opt, _warmup_cosine(config.warmup_steps, config.max_steps))
        self.updates = 0
        self.part_updates = {part: 0 for part in PARTS}
        self.nonfinite_updates = 0

    # -- construction (the dataset-trained protocol) --------------------------------------------
    @classmethod
    def from_config(cls, config: GenieConfig, dataset_info: Mapping[str, Any] | None = None,
                    device: str = "cpu") -> "GenieTrainable":
        """Build for a dataset (its manifest): its frames' channels must be ``in_channels``."""
        shape = (dataset_info or {}).get("frame_shape")
        if shape is not None and int(shape[0]) != config.in_channels:
            raise ValueError(f"the dataset's frames have {shape[0]} channels (frame_shape "
                             f"{list(shape)}) but GenieConfig.in_channels is {config.in_channels}")
        return cls(config, device)

    def data_spec(self) -> DataSpec:
        return DataSpec(samples=[SampleSpec(SAMPLE, self.config.batch_size, self.config.num_frames)],
                        train_ratio=0.0)

    # -- schedule -------------------------------------------------------------------------------
    def phase(self, update_index: int | None = None) -> str:
        """The phase update ``update_index`` (default: the next one) trains."""
        k = self.updates if update_index is None else update_index
        stage = self.config.stage
        if stage == "all":
            return "tokenizer" if k < self.config.tokenizer_phase_updates else "lam_dynamics"
        return stage

    # -- learning -------------------------------------------------------------------------------
    def update(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        if SAMPLE not in batches:
            raise ValueError(f"Genie updates on sample {SAMPLE!r}; got {', '.join(batches) or 'none'}")
        c = self.config
        return self.update_video(video_from_batch(batches[SAMPLE], c.image_size, c.in_channels,
                                                  self.device))

    def update_video(self, video: Tensor) -> dict[str, float]:
        """One update of the current phase's parts on ``video`` ``(B, C, T, H, W)`` in [0, 1]."""
        if self.config.keep_freed_memory:
            keep_freed_memory()
        phase = self.phase()
        parts = PHASE_PARTS[phase]
        self.model.train()
        losses = self.model.phase_losses(video.to(self.device), phase,
                                         (self.config.mask_prob_min, self.config.mask_prob_max))
        params = [p for part in parts for p in getattr(self.model, part).parameters()]
        for part in parts:
            self.optimizers[part].zero_grad(set_to_none=True)
        loss = losses["loss"]
        if bool(torch.isfinite(loss)):
            loss.backward()
            distributed.reduce_gradients(params)
        else:
            distributed.join_skipped(params)
        metrics = {k: float(v.detach()) for k, v in losses.items()}
        norms = {part: float(torch.nn.utils.clip_grad_norm_(getattr(self.model, part).parameters(),
                                                            self.config.max_grad_norm))
                 for part in parts}
        ok = bool(torch.isfinite(loss)) and all(math.isfinite(n) for n in norms.values())
        for part in parts:
            metrics[f"{part}/grad_norm"] = norms[part]
            if ok:
                self.optimizers[part].step()
                self.schedulers[part].step()
                self.part_updates[part] += 1
            self.optimizers[part].zero_grad(set_to_none=True)
            metrics[f"{part}/learning_rate"] = self.optimizers[part].param_groups[0]["lr"]
        self.updates += 1
        self.nonfinite_updates = 0 if ok else self.nonfinite_updates + 1
        metrics.update({"loss": float(loss.detach()), "skipped": 0.0 if ok else 1.0,
                        "updates": float(self.updates),
                        **{f"phase/{p}": float(p == phase) for p in PHASE_PARTS}})
        if self.nonfinite_updates >= MAX_NONFINITE_UPDATES:
            raise NonFiniteLossError(f"Genie: {self.nonfinite_updates} consecutive updates had a "
                                     f"non-finite loss or gradient (phase {phase})")
        return metrics

    # -- weights and checkpoints ----------------------------------------------------------------
    def get_weights(self) -> dict[str, Any]:
        return cpu_state(self.model.state_dict())

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        self.model.load_state_dict(weights)

    def _architecture(self) -> dict[str, Any]:
        return {name: getattr(self.config, name) for name in ARCHITECTURE_FIELDS}

    def state_dict(self) -> dict[str, Any]:
        return make_state(
            self.CHECKPOINT_FORMAT, self._architecture(), config=self.config.to_dict(),
            config_class=type(self.config).__name__, networks=cpu_state(self.model.state_dict()),
            optimizers={p: o.state_dict() for p, o in self.optimizers.items()},
            schedulers={p: s.state_dict() for p, s in self.schedulers.items()},
            updates=self.updates, part_updates=dict(self.part_updates),
            nonfinite_updates=self.nonfinite_updates)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, self.CHECKPOINT_FORMAT, self._architecture(), self.FAMILY,
                    ("networks", "optimizers", "updates"))
        try:
            self.model.load_state_dict(state["networks"])
            for part, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][part])
                if "schedulers" in state:
                    self.schedulers[part].load_state_dict(state["schedulers"][part])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"genie checkpoint tensors do not fit this model: {exc}") from exc
        self.updates = int(state["updates"])
        self.part_updates.update({k: int(v) for k, v in state.get("part_updates", {}).items()})
        self.nonfinite_updates = int(state.get("nonfinite_updates", 0))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: str = "cpu") -> "GenieTrainable":
        """Rebuild from a checkpoint state alone (its config travels with it)."""
        config_cls = _CONFIG_CLASSES.get(state.get("config_class"), GenieConfig)
        trainable = cls(config_cls.from_dict(state["config"]), device)
        trainable.load_state_dict(state)
        return trainable

    # -- report ---------------------------------------------------------------------------------
    def report(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Reconstruction PSNR, Delta_t PSNR, a reconstruction grid and generated rollouts."""
        from distwm.models.genie.report import genie_report

        c = self.config
        video = video_from_batch(batch, c.image_size, c.in_channels, self.device)
        return genie_report(self.model, video, c)

    # -- play -----------------------------------------------------------------------------------
    @torch.no_grad()
    def play_video(self, prompt: np.ndarray, actions, maskgit_steps: int | None = None,
                   seed: int = 0) -> np.ndarray:
        """``(1 + len(actions), H, W, 3)`` uint8: the prompt image (``(H, W, C)`` or
        ``(C, H, W)`` uint8, any size) then the frames the latent ``actions`` (ids in
        ``[0, action_vocab_size)``) lead to, generated on the player's caches."""
        from distwm.models.genie.genie import GeniePlayer
        from distwm.models.genie.maskgit import MaskGITSampler
        from distwm.models.genie.report import frames_uint8

        c = self.config
        actions = [int(a) for a in actions]
        bad = [a for a in actions if not 0 <= a < c.action_vocab_size]
        if not actions or bad:
            raise ValueError(f"latent actions must be ids in [0, {c.action_vocab_size}); got "
                             f"{actions if not bad else bad}")
        image = np.asarray(prompt)
        if image.ndim == 3 and image.shape[-1] in (1, 3, 4) and image.shape[0] not in (1, 3):
            image = image.transpose(2, 0, 1)
        if image.ndim != 3:
            raise ValueError(f"the prompt must be one image (H, W, C) or (C, H, W), got shape "
                             f"{image.shape}")
        image = image[: c.in_channels]
        if image.shape[0] != c.in_channels:
            raise ValueError(f"the prompt has {image.shape[0]} channels; this model takes "
                             f"{c.in_channels}")
        video = video_from_batch({"image": image[None, None]}, c.image_size, c.in_channels,
                                 self.device)
        self.model.eval()
        sampler = MaskGITSampler(maskgit_steps or c.maskgit_steps, c.sample_temperature)
        player = GeniePlayer(self.model, video[:, :, 0], sampler,
                             torch.Generator(device=self.device).manual_seed(seed))
        frames = [video[:, :, 0]]
        for a in actions:
            frames.append(player.step(torch.tensor([a], device=self.device)))
        return frames_uint8(torch.stack(frames, 2)[0])
