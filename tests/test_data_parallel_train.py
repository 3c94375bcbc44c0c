"""The data-parallel path (:mod:`distwm.runtime.data_parallel`) on the session's Ray instance,
with the tiny dataset-trained model of ``dataset_trainable`` on a moving-square shard directory.

Ray Train starts slowly, so one module-scoped run serves most checks: ``distwm train tiny-video
--data DIR --workers 2`` for 12 updates in which rank 1 fails once before update 7 (Ray Train
restarts the group from the checkpoint at 4), then ``distwm train --resume RUN --steps 16``.
A Tune trial runs one more (1 worker). The refusals run without Ray.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from distwm import cli as distwm_cli
from distwm.configs.runtime_config import DataParallelConfig, DataParallelRunConfig
from distwm.registry import deregister_model, register_model
from distwm.runtime import cli, placement
from distwm.runtime.data_parallel import make_plan
from distwm.runtime.run_report import read_metrics

MODEL, NO_STAGE = "tiny-video", "tiny-video-nostage"
TINY_RL = "runtime_agent:TinyAgentConfig"


@pytest.fixture(scope="module")
def models():
    register_model(MODEL, "dataset_trainable:TinyVideoModel", "dataset_trainable:TinyVideoConfig",
                   kind="dataset-trained", protocol_path="dataset_trainable:TinyVideoModel")
    register_model(NO_STAGE, "dataset_trainable:TinyVideoModel", "dataset_trainable:NoStageConfig",
                   kind="dataset-trained", protocol_path="dataset_trainable:TinyVideoModel")
    yield
    deregister_model(MODEL)
    deregister_model(NO_STAGE)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from dataset_trainable import write_moving_square

    directory = tmp_path_factory.mktemp("square")
    write_moving_square(directory, files=4)
    return directory


def parse(*argv: str):
    import argparse

    parser = argparse.ArgumentParser(prog="distwm")
    cli.add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


QUIET = ("--set", "data_parallel.report_interval=2", "--set", "data_parallel.checkpoint_interval=4",
         "--set", "data_parallel.verbose=false")


@pytest.fixture(scope="module")
def trained(ray_session, models, data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    run_dir, flag = root / "run", root / "failed-once"
    assert distwm_cli.main(["train", MODEL, "--data", str(data_dir), "--workers", "2",
                            "--gpus-per-worker", "0", "--steps", "12", "--stage", "all",
                            "--run-dir", str(run_dir), "--set", "lr=0.01",
                            "--set", "fail_once_at=7", "--set", f"fail_flag={flag}",
                            "--set", "data_parallel.max_failures=2", *QUIET]) == 0
    first = json.loads((run_dir / "summary.json").read_text())
    first_rows = read_metrics(str(run_dir / "metrics.jsonl"))
    assert distwm_cli.main(["train", "--resume", str(run_dir), "--steps", "16"]) == 0
    second = json.loads((run_dir / "summary.json").read_text())
    rows = [r for r in read_metrics(str(run_dir / "metrics.jsonl")) if "updates" in r]
    return SimpleNamespace(run_dir=run_dir, flag=flag, first=first, second=second,
                           first_rows=[r for r in first_rows if "updates" in r], rows=rows)


def test_two_workers_keep_identical_replicas_and_the_loss_falls(trained):
    for summary in (trained.first, trained.second):
        assert summary["workers"] == 2 and summary["batches"] == "clips 4x4"
        assert summary["replicas_identical"] is True
        prints = summary["fingerprints"]
        assert sorted(prints) == ["0", "1"] and len(set(prints.values())) == 1
    losses = [r["train/loss"] for r in trained.rows]
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(r["workers"] == 2 for r in trained.rows)


def test_a_failed_worker_restarts_the_group_from_the_last_checkpoint(trained):
    first = trained.first
    assert trained.flag.exists()  # rank 1 did fail
    assert first["updates"] == 12 and first["restarts"] == 1 and first["updates_redone"] == 2
    (event,) = first["events"]
    assert "injected failure before update 7" in event["cause"]
    assert event["restored_from"].endswith("ckpt-000000004") and event["updates"] == 6


def test_resume_continues_the_counters(trained):
    second = trained.second
    assert second["updates"] == 16 and second["epoch"] == 1 and second["restarts"] == 1
    steps = [r["step"] for r in trained.rows]
    assert steps == sorted(steps) and steps[-1] == 16  # counters never go backwards
    assert [s for s in steps if s > 12] == [14, 16]  # the resumed session did not redo 1..12
    assert len(trained.rows) - len(trained.first_rows) == 2
    config = DataParallelRunConfig.from_yaml(trained.run_dir / "run.yaml")
    assert config.data_parallel.total_updates == 16 and config.model_config["stage"] == "all"


def test_checkpoints_are_ray_train_checkpoints_that_load(trained, data_dir):
    from dataset_trainable import TinyVideoConfig, TinyVideoModel

    from distwm.datasets.video_shards import read_manifest
    from distwm.runtime.checkpoints import load_checkpoint
    from distwm.runtime.data_parallel_loop import state_fingerprint

    kept = sorted(p.name for p in (trained.run_dir / "train").glob("ckpt-*"))
    assert kept == ["ckpt-000000012", "ckpt-000000016"]  # keep_checkpoints = 2
    assert trained.second["checkpoint"].endswith("ckpt-000000016")
    state = load_checkpoint(trained.second["checkpoint"])
    assert state["updates"] == 16 and state["agent"]["updates"] == 16
    assert state_fingerprint(state["agent"]) == trained.second["fingerprints"]["0"]
    model = TinyVideoModel.from_config(TinyVideoConfig(), read_manifest(data_dir))
    model.load_state_dict(state["agent"])
    assert model.updates == 16


def test_the_run_directory_has_metrics_media_and_the_report(trained):
    run_dir = trained.run_dir
    report = (run_dir / "report.md").read_text()
    assert "16 of 16" in report and "| replicas identical at the last checkpoint | yes |" in report
    assert "ckpt-000000004" in report  # the restart, and where it restarted from
    assert (run_dir / "loss_curve.png").stat().st_size > 0
    assert list((run_dir / "media").glob("prediction_*.png"))
    assert list(run_dir.glob("events.out.tfevents.*"))
    progress = (run_dir / "progress.log").read_text()
    assert "updates/s" in progress and "ETA" in progress and "restarted" in progress
    assert json.loads((run_dir / "counters.json").read_text())["updates"] == 16


def test_a_tune_trial_is_a_ray_train_run(ray_session, data_dir, tmp_path):
    from ray import tune

    from distwm.tune.trainable import data_parallel_tuner

    base = DataParallelRunConfig(
        model="dataset_trainable:TinyVideoConfig",  # found in the trial's process unregistered
        data_parallel=DataParallelConfig(data=str(data_dir), workers=1, gpus_per_worker=0,
                                         total_updates=4, report_interval=2, checkpoint_interval=4,
                                         verbose=False))
    tuner = data_parallel_tuner(base, {"model_config": {"lr": tune.grid_search([0.01])}},
                                storage_path=str(tmp_path / "tune"), name="tiny")
    previous = signal.getsignal(signal.SIGINT)
    try:
        (result,) = list(tuner.fit())
    finally:  # Tune's fit leaves its own SIGINT handler installed; later tests need the default
        signal.signal(signal.SIGINT, previous)
    assert result.error is None
    metrics = result.metrics
    assert metrics["final"] is True and metrics["updates"] == 4
    assert metrics["score"] == -metrics["loss"] and metrics["loss"] > 0
    (run_dir,) = (tmp_path / "tune" / "tiny" / "runs").iterdir()
    assert (run_dir / "report.md").is_file()
    assert DataParallelRunConfig.from_yaml(run_dir / "run.yaml").model_config == {"lr": 0.01}


# -- refusals: before Ray starts ---------------------------------------------------------------

@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the run was checked")

    monkeypatch.setattr(placement, "connect", refuse)


def test_refusals_are_clear_and_come_before_ray(models, data_dir, tmp_path, no_ray):
    def train(*argv):
        return cli.cmd_train(parse(*argv))

    with pytest.raises(ValueError, match="--envs-per-worker, --shards: a dataset-trained model"):
        train(MODEL, "--data", str(data_dir), "--envs-per-worker", "2", "--shards", "2")
    with pytest.raises(ValueError, match="--data: model 'runtime_agent:TinyAgentConfig' is of "
                                         "kind 'rl-agent'.*tiny-video"):
        train(TINY_RL, "--data", str(data_dir))
    with pytest.raises(ValueError, match="--stage all: model 'tiny-video-nostage' has no "
                                         "training stages .*NoStageConfig"):
        train(NO_STAGE, "--data", str(data_dir), "--stage", "all")
    with pytest.raises(ValueError, match="'bogus' is not one of 'predictor', 'all'"):
        train(MODEL, "--data", str(data_dir), "--stage", "bogus")
    with pytest.raises(ValueError, match="data_parallel.data is required"):
        train(MODEL)
    with pytest.raises(ValueError, match="use --set data_parallel.report_interval"):
        train(MODEL, "--data", str(data_dir), "--set", "runtime.report_interval=3")
    with pytest.raises(ValueError, match="no shard manifest"):
        train(MODEL, "--data", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "r0"))
    run_dir = tmp_path / "r"
    with pytest.raises(ValueError, match="4 shard files but 5 data-parallel ranks"):
        train(MODEL, "--data", str(data_dir), "--workers", "5", "--run-dir", str(run_dir))
    assert not run_dir.exists()


def test_print_config_resolves_flags_stage_and_set(models, data_dir, capsys):
    assert cli.cmd_train(parse(MODEL, "--data", str(data_dir), "--workers", "3", "--steps", "50",
                               "--seed", "7", "--stage", "predictor", "--set", "batch_size=2",
                               "--set", "data_parallel.checkpoint_interval=5",
                               "--print-config")) == 0
    run = DataParallelRunConfig.from_yaml(capsys.readouterr().out)
    assert run.model == MODEL and run.model_config == {"stage": "predictor", "batch_size": 2}
    dp = run.data_parallel
    assert (dp.workers, dp.total_updates, dp.seed, dp.checkpoint_interval) == (3, 50, 7, 5)
    assert dp.data == str(data_dir)


def test_the_driver_side_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, distwm.runtime.data_parallel, distwm.runtime.cli, distwm.tune.trainable; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


class _ListQueue(list):
    put = list.append

    def qsize(self):
        return len(self)

    def get_nowait_batch(self, n):
        items, self[:] = self[:n], self[n:]
        return items


def test_a_config_error_at_worker_setup_is_fatal_not_retried(models, data_dir, monkeypatch):
    """A clip longer than every episode fails the worker's set-up with a ValueError that goes to
    the driver as ``fatal`` (which stops the run at once instead of letting FailureConfig retry
    it); checked without Ray Train (its context faked)."""
    import ray.train

    from distwm.runtime.data_parallel import DataParallelDriver
    from distwm.runtime.data_parallel_loop import train_loop_per_worker

    run = DataParallelRunConfig(model=MODEL, model_config={"seq_len": 50},
                                data_parallel=DataParallelConfig(data=str(data_dir)))
    queue = _ListQueue()
    plan = {**make_plan(run, {"CPU": 2}), "queue": queue}
    context = SimpleNamespace(get_world_rank=lambda: 0, get_world_size=lambda: 1)
    monkeypatch.setattr(ray.train, "get_context", lambda: context)
    with pytest.raises(ValueError, match="hold no clip of 50 steps inside one episode"):
        train_loop_per_worker(plan)
    (item,) = queue
    assert item["kind"] == "fatal" and "clip of 50 steps" in item["error"]
    driver = DataParallelDriver(run)
    driver._drain(queue)
    assert "clip of 50 steps" in driver.fatal and not queue


def test_auto_layout_follows_the_cluster_and_the_shard_files(models, data_dir):
    from distwm.runtime.data_parallel_setup import check_fits

    run = DataParallelRunConfig(model=MODEL, data_parallel=DataParallelConfig(
        data=str(data_dir), workers="auto", gpus_per_worker="auto"))
    cpu = make_plan(run, {"CPU": 3.0})
    assert (cpu["workers"], cpu["use_gpu"]) == (3, False)
    assert make_plan(run, {"CPU": 16.0})["workers"] == 4  # at most one worker per shard file
    gpu = make_plan(run, {"CPU": 16.0, "GPU": 2.0})
    assert (gpu["workers"], gpu["gpus_per_worker"], gpu["use_gpu"]) == (2, 1.0, True)
    assert gpu["protocol_path"] == "dataset_trainable:TinyVideoModel"
    with pytest.raises(ValueError, match="need 4 CPUs and 2 GPUs; the cluster has 16 CPUs and 1 GPUs"):
        check_fits(2, 2.0, 1.0, {"CPU": 16.0, "GPU": 1.0})
