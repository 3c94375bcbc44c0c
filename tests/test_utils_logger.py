"""Logger: nothing at construction; JSONL, TensorBoard events, pickles and videos on write."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from conftest import require_module

from distwm.utils import Logger, setup_logging


def test_logger_creates_nothing_in_constructor(tmp_path):
    log_dir = tmp_path / "run"
    logger = Logger(str(log_dir), video_format="gif")
    assert not log_dir.exists()
    logger.close()
    assert not log_dir.exists()


def test_logger_writes_jsonl_and_tensorboard(tmp_path):
    log_dir = tmp_path / "run"
    with Logger(str(log_dir)) as logger:
        logger.log_scalar(1.5, "loss", 3)
        logger.log_scalars({"train": {"return": torch.tensor(2.0)}, "fps": np.float32(7)}, 4)
        logger.flush()
    lines = (log_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 3, "loss": 1.5},
        {"step": 4, "train/return": 2.0, "fps": 7.0},
    ]
    events = [f for f in os.listdir(log_dir) if f.startswith("events.out.tfevents")]
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/return")] == [(4, 2.0)]
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(3, 1.5)]


def test_logger_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="video_format"):
        Logger(str(tmp_path), video_format="webm")
    logger = Logger(str(tmp_path / "x"), enable_tensorboard=False)
    with pytest.raises(ValueError, match="one element"):
        logger.log_scalar(np.zeros(3), "bad", 0)


def test_logger_videos_and_pickle(tmp_path):
    import imageio.v2 as iio

    logger = Logger(str(tmp_path / "run"), video_format="gif", video_fps=10,
                    enable_tensorboard=False)
    videos = np.random.default_rng(0).random((2, 5, 3, 16, 16)).astype(np.float32)
    paths = logger.log_videos(videos, step=7, max_videos_to_save=2, video_title="rollout")
    assert [os.path.basename(p) for p in paths] == ["rollout_7_0.gif", "rollout_7_1.gif"]
    frames = iio.mimread(paths[0])
    assert len(frames) == 5 and frames[0].shape[:2] == (16, 16)
    pkl = logger.dump_scalars_to_pickle({"a": [1, 2]}, step=7, log_title="eval")
    with open(pkl, "rb") as f:
        assert pickle.load(f) == {"a": [1, 2]}
    logger.close()


def test_logger_wandb_mode_defaults_to_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert Logger(str(tmp_path), enable_wandb=True).wandb_mode() == "offline"
    assert Logger(str(tmp_path), enable_wandb=True, wandb_api_key="k").wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert Logger(str(tmp_path), enable_wandb=True, wandb_api_key="k").wandb_mode() == "disabled"


def test_setup_logging_file_and_levels(tmp_path):
    log_file = tmp_path / "logs" / "x.log"
    logger = setup_logging("distwm.test_utils_logger", "debug", str(log_file))
    setup_logging("distwm.test_utils_logger", "DEBUG", str(log_file))
    assert len(logger.handlers) == 2  # no duplicates on a second call
    logger.debug("hello %d", 5)
    for h in logger.handlers:
        h.flush()
    assert "hello 5" in log_file.read_text()
    with pytest.raises(ValueError, match="VERBOSE"):
        setup_logging("distwm.test_utils_logger", "VERBOSE")


def test_logger_wandb_offline_run(tmp_path, monkeypatch):
    require_module("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    logger = Logger(str(tmp_path / "run"), enable_wandb=True, enable_tensorboard=False)
    logger.log_scalar(1.0, "x", 1)
    logger.close()
    runs = os.listdir(tmp_path / "run" / "wandb")
    assert any(name.startswith("offline-run-") for name in runs)


def test_run_logger_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, tempfile\n"
            "from distwm.utils.run_logger import Logger\n"
            "d = tempfile.mkdtemp()\n"
            "with Logger(d) as lg:\n"
            "    lg.log_scalars({'a': 1.0}, 1)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    from distwm.utils import dreamer_utils, run_logger

    assert dreamer_utils.Logger is run_logger.Logger is Logger


def test_logger_images_and_videos_to_tensorboard_and_media(tmp_path):
    import imageio.v2 as iio
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    video = rng.integers(0, 256, (4, 12, 16, 3), dtype=np.uint8)
    with Logger(str(tmp_path / "run"), video_fps=5) as logger:
        png = logger.log_images({"openloop/frame": image}, step=3)
        gif = logger.log_videos({"openloop/video": video}, step=3)
        logger.flush()
    assert [os.path.relpath(p, tmp_path / "run") for p in png + gif] == [
        os.path.join("media", "openloop_frame_3.png"),
        os.path.join("media", "openloop_video_3.gif"),
    ]
    np.testing.assert_array_equal(iio.imread(png[0]), image)
    assert len(iio.mimread(gif[0])) == 4
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    (frame,) = acc.Images("openloop/frame")
    assert (frame.step, frame.width, frame.height) == (3, 16, 12)
    np.testing.assert_array_equal(iio.imread(frame.encoded_image_string), image)
    (clip,) = acc.Images("openloop/video")
    assert clip.step == 3 and len(iio.mimread(clip.encoded_image_string)) == 4
    with pytest.raises(ValueError, match="must be"):
        Logger(str(tmp_path / "y"), enable_tensorboard=False).log_images({"x": np.zeros(3)}, 0)
