"""The data-parallel path on an image data set: ``distwm train dataset_trainable:TinyImageConfig
--data sklearn:digits:8 --workers 2`` on the session's Ray instance (a linear classifier of
``dataset_trainable``), and its checks before Ray starts."""

from __future__ import annotations

import json

import pytest

from distwm import cli as distwm_cli
from distwm.configs.runtime_config import DataParallelConfig, DataParallelRunConfig
from distwm.runtime import placement
from distwm.runtime.data_parallel import make_plan

MODEL = "dataset_trainable:TinyImageConfig"  # found in every process by its TRAINABLE_CLASS
DIGITS = "sklearn:digits:8"


def test_two_workers_train_an_image_classifier_on_digits(ray_session, tmp_path):
    run_dir = tmp_path / "run"
    assert distwm_cli.main(["train", MODEL, "--data", DIGITS, "--workers", "2",
                            "--gpus-per-worker", "0", "--steps", "20", "--run-dir", str(run_dir),
                            "--set", "data_parallel.report_interval=10",
                            "--set", "data_parallel.checkpoint_interval=20",
                            "--set", "data_parallel.verbose=false"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"] == 2 and summary["batches"] == "images 16x1"
    assert summary["replicas_identical"] is True and summary["updates"] == 20
    assert summary["data"] == DIGITS and summary["data_name"] == "sklearn-digits-8"
    assert summary["data_layout"].startswith("1,438 images 1x8x8 of 10 classes, 359 held out")
    scalars = summary["media"]["scalars"]
    assert scalars["rows"] == 359  # report() got the held-out split, not a training batch
    assert scalars["accuracy"] > 0.5, scalars  # chance is 0.1
    assert list((run_dir / "media").glob("digits_*.png"))
    config = DataParallelRunConfig.from_yaml(run_dir / "run.yaml")
    assert config.data_parallel.data == DIGITS  # not made a path


def test_image_sources_are_checked_before_ray(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the run was checked")

    monkeypatch.setattr(placement, "connect", refuse)
    plan = make_plan(DataParallelRunConfig(model=MODEL, data_parallel=DataParallelConfig(
        data=DIGITS, workers="auto", gpus_per_worker=0)), {"CPU": 4})
    assert plan["workers"] == 4 and plan["data"] == DIGITS
    assert plan["dataset_info"]["kind"] == "images" and plan["dataset_info"]["size"] == 1438
    with pytest.raises(ValueError, match="has 1438 images but 2000 data-parallel ranks"):
        make_plan(DataParallelRunConfig(model=MODEL, data_parallel=DataParallelConfig(
            data=DIGITS, workers=2000, gpus_per_worker=0)))
    assert distwm_cli.main(["train", MODEL, "--data", "sklearn:faces",
                            "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown scikit-learn data set 'faces'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
