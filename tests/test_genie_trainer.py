"""The seed's single-process Genie trainer (:mod:`distwm.training.train_genie`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distwm.configs.genie_config import genie_preset
from distwm.training.train_genie import GenieConfig, GenieTrainer, VideoDataset, create_genie_trainer


def tiny_config(**overrides) -> GenieConfig:
    return GenieConfig.from_dict({**genie_preset("tiny").to_dict(), **overrides})


def test_seed_training_config_defaults():
    config = GenieConfig()
    assert (config.num_frames, config.image_size, config.tokenizer_encoder_depth,
            config.action_encoder_dim) == (16, 64, 12, 1024)


def test_train_validate_and_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    trainer, model = create_genie_trainer(tiny_config(tokenizer_updates=2).to_dict())
    assert trainer.model is model
    loader = [torch.rand(2, 3, 4, 16, 16) for _ in range(3)]
    history = trainer.train(loader, val_dataloader=loader, num_steps=5, log_interval=2,
                            val_interval=4)
    assert trainer.global_step == 5
    assert [h["step"] for h in history] == [2.0, 4.0, 5.0]
    assert "val/psnr" in history[1] and "val/loss" in history[1]
    assert "steps/s" in capsys.readouterr().out
    path = tmp_path / "genie.pt"
    trainer.save_checkpoint(str(path))
    other, _ = create_genie_trainer(tiny_config(tokenizer_updates=2, seed=5))
    other.load_checkpoint(str(path))
    assert other.global_step == 5
    for a, b in zip(model.parameters(), other.model.parameters()):
        torch.testing.assert_close(a, b)
    assert set(trainer.validate(loader[0])) >= {"val/loss", "val/psnr"}
    with pytest.raises(ValueError, match="no batches"):
        trainer.train([], num_steps=6)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        trainer.train_step(torch.rand(2, 3, 16, 16))


def test_video_dataset_reads_video_files(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (24, 24))
    for t in range(8):
        writer.write(np.full((24, 24, 3), 30 * t, np.uint8))
    writer.release()
    dataset = VideoDataset([path], num_frames=4, image_size=16)
    clip = dataset[0]
    assert clip.shape == (3, 4, 16, 16) and 0 <= clip.min() and clip.max() <= 1
    assert clip[:, -1].mean() > clip[:, 0].mean()  # frames in time order
    trainer = GenieTrainer(create_genie_trainer(tiny_config())[1], tiny_config())
    assert trainer.train_step(clip[None])["loss"].isfinite()
