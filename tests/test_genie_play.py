"""``distwm play`` (:mod:`distwm.runtime.play`) on a tiny Genie checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest

from distwm import cli
from distwm.runtime.play import find_checkpoint_file, parse_actions


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from distwm.configs.genie_config import genie_preset
    from distwm.models.genie.trainable import GenieTrainable
    from distwm.utils.checkpoint import save_file

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("run")
    ckpt = root / "train" / "ckpt-000000002"
    ckpt.mkdir(parents=True)
    save_file({"agent": GenieTrainable(genie_preset("tiny")).state_dict(), "updates": 2,
               "version": 2}, str(ckpt / "learner.pt"))
    return root


def test_parse_actions():
    assert parse_actions("0,3, 2x3") == [0, 3, 2, 2, 2]
    with pytest.raises(ValueError, match="'a' is not an action id"):
        parse_actions("1,a")
    with pytest.raises(ValueError, match="names no action"):
        parse_actions(",")


def test_play_from_an_image_prompt_writes_a_video(checkpoint, tmp_path, capsys):
    import imageio.v3 as iio

    prompt = tmp_path / "frame.png"
    iio.imwrite(prompt, np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    out = tmp_path / "play.gif"
    assert cli.main(["play", "genie", "--checkpoint", str(checkpoint), "--prompt", str(prompt),
                     "--actions", "1,2x2", "--out", str(out), "--maskgit-steps", "2"]) == 0
    frames = iio.imread(out)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (16, 16)  # prompt + 3, at image_size
    strip = iio.imread(tmp_path / "play.png")
    assert strip.shape[:2] == (16, 64)
    assert "played 3 latent actions" in capsys.readouterr().out
    assert find_checkpoint_file(str(checkpoint)).endswith(os.path.join("ckpt-000000002", "learner.pt"))


def test_play_from_a_dataset_prompt(checkpoint, tmp_path):
    from distwm.datasets.video_shards import ShardWriter, write_manifest

    data = tmp_path / "data"
    steps = 5
    chunk = {"image": np.full((steps, 3, 16, 16), 200, np.uint8),
             "action": np.zeros((steps, 2), np.float32), "reward": np.zeros(steps, np.float32),
             "is_first": np.eye(1, steps, dtype=bool)[0], "is_terminal": np.zeros(steps, bool),
             "is_last": np.eye(1, steps, steps - 1, dtype=bool)[0]}
    with ShardWriter(data, "worker-000") as writer:
        writer.add_chunk(chunk)
    write_manifest(data, writer.close(), {"env": "test", "frame_shape": [3, 16, 16]})
    out = tmp_path / "play.gif"
    assert cli.main(["play", "genie", "--checkpoint", str(checkpoint), "--prompt", str(data),
                     "--prompt-index", "2", "--actions", "0", "--out", str(out),
                     "--maskgit-steps", "1"]) == 0
    assert out.exists()


def test_play_errors_name_the_bad_value(checkpoint, tmp_path, capsys):
    prompt = tmp_path / "frame.npy"
    np.save(prompt, np.zeros((16, 16, 3), np.uint8))
    base = ["play", "genie", "--checkpoint", str(checkpoint), "--prompt", str(prompt),
            "--out", str(tmp_path / "x.gif")]
    assert cli.main(base + ["--actions", "9"]) == 2
    assert "latent actions must be ids in [0, 8)" in capsys.readouterr().err
    assert cli.main(["play", "genie", "--checkpoint", str(tmp_path / "none"), "--prompt",
                     str(prompt), "--actions", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["play", "dreamer", "--checkpoint", str(checkpoint), "--prompt", str(prompt),
                     "--actions", "0"]) == 2
    assert "cannot be played" in capsys.readouterr().err
