"""A tiny dataset-trained model for the data-parallel tests (importable by Ray workers), and the
data it learns from.

``TinyVideoModel`` follows the contract of :mod:`distwm.runtime.data_parallel`: built with
``from_config(config, dataset_info, device)``, one sample of ``batch_size`` clips of
``seq_len`` frames, and each update a step of a two-layer conv net that predicts frame ``t+1``
from frame ``t`` and the action that led to ``t+1`` (MSE), its gradients averaged over the group
with ``reduce_gradients``. ``stage="predictor"`` trains only the last layer. ``fail_once_at``:
rank 1 raises just before that update, once (``fail_flag`` marks that it has), to test restarts.

``write_moving_square(directory, ...)``: episodes of a bright square on a dark 1 x 8 x 8 frame
moving left or right by one pixel with a one-hot action of two, written with ``ShardWriter``
(several files) plus a manifest.

``TinyImageClassifier``: the same contract on an image data set
(:mod:`distwm.datasets.training_data`): one sample of ``batch_size`` single images
(``seq_len`` 1), each update a step of a linear classifier on the pixels (cross-entropy), and
``report(batch)`` its accuracy on the batch it gets (held-out rows when the source has a test
split) and a strip of those images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

import numpy as np
import torch
from torch import nn

from distwm.agent import DataSpec, SampleSpec
from distwm.configs.base import ConfigBase
from distwm.utils import distributed
from distwm.utils.checkpoint import check_state, checkpoint_format, cpu_state, make_state

SAMPLE = "clips"


@dataclass
class TinyVideoConfig(ConfigBase):
    TRAINABLE_CLASS: ClassVar[str] = "dataset_trainable:TinyVideoModel"

    stage: Literal["predictor", "all"] = "all"
    batch_size: int = 4
    seq_len: int = 4
    channels: int = 8
    lr: float = 3e-3
    fail_once_at: int = 0
    fail_flag: str = ""


@dataclass
class NoStageConfig(ConfigBase):
    """The same model's config without a ``stage`` field."""

    batch_size: int = 4
    seq_len: int = 4
    channels: int = 8
    lr: float = 3e-3


class NetState:
    """``get_weights`` / ``state_dict`` / ``load_state_dict`` of a model made of one ``net``,
    one ``optimizer`` and an ``updates`` counter (``FORMAT``, ``NAME``, ``architecture``)."""

    FORMAT: ClassVar[str]
    NAME: ClassVar[str]

    def get_weights(self) -> dict[str, Any]:
        return cpu_state(self.net.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return make_state(self.FORMAT, self.architecture, net=cpu_state(self.net.state_dict()),
                          optimizer=self.optimizer.state_dict(), updates=self.updates)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, self.FORMAT, self.architecture, self.NAME,
                    required=("net", "optimizer", "updates"))
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])


class TinyVideoModel(NetState):
    NAME = "tiny-video"
    FORMAT = checkpoint_format(NAME, 1)

    def __init__(self, config: Any, frame_shape, action_dim: int, device: str = "cpu"):
        self.config = config
        self.frame_shape, self.action_dim = tuple(int(s) for s in frame_shape), int(action_dim)
        channels, ch = self.frame_shape[0], int(config.channels)
        self.device = torch.device(device)
        self.net = nn.Sequential(nn.Conv2d(channels + self.action_dim, ch, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(ch, channels, 3, padding=1)).to(self.device)
        stage = getattr(config, "stage", "all")
        self.params = list(self.net.parameters() if stage == "all" else self.net[2].parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr)
        self.updates = 0

    @classmethod
    def from_config(cls, config: Any, dataset_info: Mapping[str, Any], device: str = "cpu"):
        return cls(config, dataset_info["frame_shape"], dataset_info["action_dim"], device)

    @property
    def architecture(self) -> dict[str, Any]:
        return {"frame_shape": list(self.frame_shape), "action_dim": self.action_dim,
                "channels": int(self.config.channels)}

    def data_spec(self) -> DataSpec:
        return DataSpec(train_ratio=0.0, samples=[SampleSpec(SAMPLE, self.config.batch_size,
                                                             self.config.seq_len)])

    def _predict(self, batch: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.as_tensor(batch["image"], device=self.device).float() / 255.0  # B T C H W
        action = torch.as_tensor(batch["action"], device=self.device)[:, 1:]
        frames, target = image[:, :-1].flatten(0, 1), image[:, 1:].flatten(0, 1)
        planes = action.flatten(0, 1)[:, :, None, None].expand(-1, -1, *frames.shape[-2:])
        return self.net(torch.cat([frames, planes], dim=1)), target

    def update(self, batches: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
        c = self.config
        if (getattr(c, "fail_once_at", 0) and self.updates + 1 == c.fail_once_at
                and distributed.rank() == 1 and not os.path.exists(c.fail_flag)):
            open(c.fail_flag, "w").close()
            raise RuntimeError(f"injected failure before update {c.fail_once_at}")
        prediction, target = self._predict(batches[SAMPLE])
        loss = torch.nn.functional.mse_loss(prediction, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.reduce_gradients(self.params)
        self.optimizer.step()
        self.updates += 1
        return {"loss": float(loss.detach()), "trained_tensors": float(len(self.params))}

    def report(self, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """One image: the real next frame, the predicted one and their difference."""
        with torch.no_grad():
            prediction, target = self._predict({k: v[:1] for k, v in batch.items()})
        real, fake = target[0, 0].cpu().numpy(), prediction[0, 0].clamp(0, 1).cpu().numpy()
        row = np.concatenate([real, fake, np.abs(real - fake)], axis=1)
        image = np.repeat((row * 255).astype(np.uint8)[..., None], 3, axis=2)
        return {"scalars": {"mse": float(np.mean((real - fake) ** 2))}, "images": {"prediction": image},
                "videos": {}}


def write_moving_square(directory, *, files: int = 4, episodes_per_file: int = 4,
                        episode_length: int = 12, seed: int = 0) -> dict:
    """Write the moving-square data set (see the module docstring); returns the manifest."""
    from distwm.datasets.video_shards import ShardWriter, read_manifest, write_manifest

    rng = np.random.default_rng(seed)
    size = 8
    steps = episode_length * episodes_per_file
    with ShardWriter(directory, "square", steps_per_shard=steps, compression=None) as writer:
        for _ in range(files * episodes_per_file):
            x = int(rng.integers(1, size - 1))
            image = np.zeros((episode_length, 1, size, size), np.uint8)
            action = np.zeros((episode_length, 2), np.float32)
            for t in range(episode_length):
                if t:
                    move = int(rng.integers(0, 2))
                    action[t, move] = 1.0
                    x = min(max(x + (1 if move else -1), 0), size - 1)
                image[t, 0, 2:6, x] = 255
            first = np.zeros(episode_length, bool)
            first[0] = True
            last = np.zeros(episode_length, bool)
            last[-1] = True
            writer.add_chunk({"image": image, "action": action,
                              "reward": np.zeros(episode_length, np.float32), "is_first": first,
                              "is_terminal": np.zeros(episode_length, bool), "is_last": last})
    shards = writer.close()
    write_manifest(directory, shards, {"env": "moving-square", "frame_shape": [1, size, size],
                                       "action_dim": 2, "policy": "random", "workers": 1,
                                       "seed": seed})
    return read_manifest(directory)


# -- an image classifier ------------------------------------------------------------------------

IMAGES = "images"


@dataclass
class TinyImageConfig(ConfigBase):
    TRAINABLE_CLASS: ClassVar[str] = "dataset_trainable:TinyImageClassifier"

    batch_size: int = 16
    lr: float = 0.05


class TinyImageClassifier(NetState):
    NAME = "tiny-image-classifier"
    FORMAT = checkpoint_format(NAME, 1)

    def __init__(self, config: Any, frame_shape, num_classes: int, device: str = "cpu"):
        self.config = config
        self.frame_shape, self.num_classes = tuple(int(s) for s in frame_shape), int(num_classes)
        self.device = torch.device(device)
        self.net = nn.Linear(int(np.prod(self.frame_shape)), self.num_classes).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.updates = 0

    @classmethod
    def from_config(cls, config: Any, dataset_info: Mapping[str, Any], device: str = "cpu"):
        if dataset_info.get("kind") != "images":
            raise ValueError(f"TinyImageClassifier trains on image data sets, got {dataset_info!r}")
        return cls(config, dataset_info["frame_shape"], dataset_info["num_classes"], device)

    @property
    def architecture(self) -> dict[str, Any]:
        return {"frame_shape": list(self.frame_shape), "num_classes": self.num_classes}

    def data_spec(self) -> DataSpec:
        return DataSpec(train_ratio=0.0, samples=[SampleSpec(IMAGES, self.config.batch_size, 1)])

    def _logits(self, batch: Mapping[str, np.ndarray]) -> torch.Tensor:
        image = torch.as_tensor(batch["image"], device=self.device).float() / 255.0  # B C H W
        return self.net(image.flatten(1))

    def update(self, batches: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
        batch = batches[IMAGES]
        labels = torch.as_tensor(batch["label"], device=self.device)
        loss = torch.nn.functional.cross_entropy(self._logits(batch), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.reduce_gradients(list(self.net.parameters()))
        self.optimizer.step()
        self.updates += 1
        return {"loss": float(loss.detach())}

    def report(self, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Accuracy on ``batch`` (and how many rows it had), and its first 8 images in a row."""
        with torch.no_grad():
            predicted = self._logits(batch).argmax(-1).cpu().numpy()
        strip = np.concatenate(list(batch["image"][:8]), axis=2).transpose(1, 2, 0)  # H, 8W, C
        strip = np.repeat(strip, 3, axis=2) if strip.shape[2] == 1 else strip
        return {"scalars": {"accuracy": float(np.mean(predicted == batch["label"])),
                            "rows": float(len(batch["label"]))},
                "images": {"digits": np.ascontiguousarray(strip)}, "videos": {}}
