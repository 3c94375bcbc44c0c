"""The runtime on a local Ray instance with the tiny test agent: a 2 workers x 2 shards run,
a killed env worker, a killed learner, and resuming from a run directory."""

from __future__ import annotations

import os

import pytest

from distwm.configs.runtime_config import RuntimeConfig
from runtime_agent import TinyAgentConfig

pytestmark = pytest.mark.ray


def runtime(tmp_path, name: str, **overrides) -> RuntimeConfig:
    base = dict(workers=2, envs_per_worker=2, shards=2, steps=640, chunk_length=16, capacity=4096,
                train_ratio=16.0,
                min_fill=64, broadcast_interval=5, checkpoint_interval=60, eval_interval=320,
                eval_episodes=2, progress_seconds=1.0, collect_seconds=0.3, train_seconds=0.5,
                env_factory="runtime_agent:make_env", run_dir=str(tmp_path / name), verbose=False)
    base.update(overrides)
    return RuntimeConfig(**base)


def assert_ratio_held(records, summary):
    """Every progress record keeps |sampled - ratio * (inserted - min_fill)| within the limiter's
    tolerance, and the run ends on the target ratio."""
    for rec in records:
        past = rec["replay_inserted"] - summary["min_fill_steps"]
        if past > 0:
            drift = rec["replay_sampled"] - summary["target_ratio"] * past
            assert abs(drift) <= summary["ratio_tolerance_steps"], (rec, summary["ratio_tolerance_steps"])
    assert records[-1]["replay_ratio"] == pytest.approx(summary["target_ratio"], rel=0.1)


@pytest.fixture(scope="module")
def basic_run(ray_session, tmp_path_factory):
    from distwm.runtime import run

    tmp = tmp_path_factory.mktemp("runtime")
    return run(TinyAgentConfig(seed=3), runtime(tmp, "basic"))


def test_two_workers_two_shards_and_a_learner(basic_run):
    s = basic_run.summary
    assert 640 <= s["env_steps"] <= 640 + 2 * 2 * 16
    assert sorted(s["worker_steps"]) == [0, 1] and min(s["worker_steps"].values()) > 0
    assert all(st["inserted"] > 0 and st["size"] > 0 for st in s["shard_stats"])
    assert sum(st["inserted"] for st in s["shard_stats"]) == s["env_steps"]
    assert s["updates"] > 100  # (640 - 64) * 16 / 32 = 288 owed
    assert min(s["worker_versions"].values()) > 0  # both workers received learner weights
    assert s["metric_max"]["seq_violations"] == 0  # every batch respected the replay format
    assert_ratio_held(basic_run.history, basic_run.summary)
    # every sampled step went into an update (plus at most the prefetched batch)
    assert s["updates"] * s["batch_steps"] <= s["replay_sampled"] <= (s["updates"] + 2) * s["batch_steps"]
    assert s["restarts"] == {} and s["final_eval"] is not None
    run_dir = basic_run.run_dir
    for name in ("report.md", "learning_curve.png", "metrics.jsonl", "run.yaml", "progress.log"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert "replay ratio" in basic_run.report and "learning_curve.png" in basic_run.report


def test_checkpoint_loads_with_weights_only(basic_run):
    import torch

    ckpt = basic_run.summary["checkpoint"]
    state = torch.load(os.path.join(ckpt, "learner.pt"), weights_only=True)
    assert state["updates"] == basic_run.summary["updates"]
    assert state["counters"]["env_steps"] == basic_run.summary["env_steps"]
    assert state["agent"]["updates"] == basic_run.summary["updates"]
    assert sorted(os.listdir(ckpt)) == ["learner.pt"]  # replay keeps its own snapshot + log
    replay = os.path.join(basic_run.run_dir, "replay")
    assert sorted(os.listdir(replay)) == ["shard_0", "shard_1"]
    for shard in ("shard_0", "shard_1"):
        assert any(f.startswith("log-") for f in os.listdir(os.path.join(replay, shard)))


def test_resume_from_run_directory_with_the_cli(basic_run):
    from distwm import cli
    from distwm.runtime import run
    from distwm.runtime.learner import latest_checkpoint, load_checkpoint
    from distwm.runtime.run_report import read_metrics
    from distwm.runtime.setup import load_run_config

    first, run_dir = basic_run.summary, basic_run.run_dir
    saved = load_run_config(run_dir)
    with pytest.raises(ValueError, match="runtime.shards cannot change on resume"):
        run(saved.replace(runtime=saved.runtime.replace(shards=1)), resume=run_dir)
    assert cli.main(["train", "--resume", run_dir, "--steps", "960",
                     "--set", "runtime.eval_interval=0"]) == 0
    state = load_checkpoint(latest_checkpoint(run_dir))
    counters = state["counters"]
    assert counters["epoch"] == 1 and 960 <= counters["env_steps"] <= 960 + 64
    assert state["updates"] > first["updates"]
    records = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "replay_inserted" in r]
    second = records[len(basic_run.history):]
    assert second, "the resumed session logged no progress"
    # counters and replay continue from the first session's
    assert second[0]["env_steps"] >= first["env_steps"] and second[0]["updates"] >= first["updates"]
    assert second[0]["replay_inserted"] >= first["replay_inserted"]
    assert all(r["train/seq_violations"] == 0 for r in second if "train/seq_violations" in r)
    assert_ratio_held(second, first)
    assert "resumed | 1 time(s)" in open(os.path.join(run_dir, "report.md")).read()


def test_killed_env_worker_and_replay_shard_are_restarted(ray_session, tmp_path):
    import ray

    from distwm.runtime import run

    killed = {}

    def kill(rec, driver):
        if "worker" not in killed and rec["env_steps"] >= 160:
            killed["worker"] = rec["env_steps"]
            ray.kill(driver.workers[0], no_restart=True)
        elif "worker" in killed and "shard" not in killed and rec["env_steps"] >= 400:
            killed["shard"] = rec["replay_inserted"]
            ray.kill(driver.shards[0], no_restart=True)

    # a budget well past the shard kill (the first checkpoint after the worker kill), so that
    # the restored shard always receives new chunks before the run ends
    rt = runtime(tmp_path, "kill-worker", shards=1, envs_per_worker=1, eval_episodes=0,
                 steps=1600, checkpoint_interval=20, progress_seconds=0.25)
    result = run(TinyAgentConfig(seed=4), rt, on_progress=kill)
    s = result.summary
    assert set(killed) == {"worker", "shard"}
    assert s["restarts"] == {"worker": 1, "shard": 1}
    assert s["worker_incarnations"] == [1, 0]
    assert s["env_steps"] >= 1600 and s["worker_steps"][0] > 0
    # the shard came back with everything it had (from its log) and went on filling
    event = next(e for e in s["events"] if e["role"] == "shard")
    assert event["restored_steps"] >= killed["shard"] > 0  # before any worker knew the new shard
    assert event["restored_log_steps"] > 0
    assert s["shard_stats"][0]["inserted"] > event["restored_steps"]
    assert s["metric_max"]["seq_violations"] == 0
    assert_ratio_held(result.history, result.summary)


def test_killed_learner_resumes_from_its_checkpoint(ray_session, tmp_path):
    import ray
    import torch

    from distwm.runtime import run

    killed = []

    def kill_learner(rec, driver):
        if not killed and driver.checkpoint is not None:
            killed.append((rec["updates"], driver.checkpoint))
            ray.kill(driver.learner, no_restart=True)

    # checkpoints every 40 env steps; enough steps that the learner has work left after the kill
    rt = runtime(tmp_path, "kill-learner", envs_per_worker=1, shards=1, eval_episodes=0,
                 checkpoint_interval=40, progress_seconds=0.25, steps=1600)
    result = run(TinyAgentConfig(seed=5), rt, on_progress=kill_learner)
    s = result.summary
    assert killed and s["restarts"] == {"learner": 1}
    updates = [rec["updates"] for rec in result.history]
    steps = [rec["env_steps"] for rec in result.history]
    versions = [rec["weight_version"] for rec in result.history]
    assert updates == sorted(updates) and steps == sorted(steps) and versions == sorted(versions)
    assert s["env_steps"] >= 640 and s["updates"] > killed[0][0]
    # the agent went on from the checkpoint: its own update count misses exactly the lost ones
    state = torch.load(os.path.join(s["checkpoint"], "learner.pt"), weights_only=True)
    assert state["agent"]["updates"] == s["updates"] - s["updates_lost"]
    assert s["metric_max"]["seq_violations"] == 0
    assert_ratio_held(result.history, result.summary)


def test_restarts_are_bounded(ray_session, tmp_path):
    """An env that keeps raising: its worker is restarted max_restarts times, then the run stops
    with the env's error (and cleans up its actors)."""
    from distwm.runtime import run

    rt = runtime(tmp_path, "failing", workers=1, envs_per_worker=1, shards=1, eval_episodes=0,
                 steps=10_000, max_restarts=1)
    with pytest.raises(RuntimeError, match=r"(?s)restart budget.*spent.*failure injected after 40"):
        run(TinyAgentConfig(fail_after=40), rt)
    log = open(os.path.join(tmp_path, "failing", "progress.log")).read()
    assert "worker 0 failed (RayTaskError" in log and "restarting (1/1)" in log
