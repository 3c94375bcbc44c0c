"""The runtime on a local Ray instance with the tiny test agent: a 2 workers x 2 shards run,
a killed env worker, a killed learner, and resuming from a run directory.

The kills are event-driven, not keyed to how far a progress record (written every
``progress_seconds``) happens to be: the envs of a run stop at a *gate* (an env step count),
say so with a file, and wait there until the test's hook has done its kill and opened the gate.
So each kill happens at a known point of the run, and the run cannot end before it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import gymnasium
import pytest

from distwm.configs.runtime_config import RuntimeConfig
from runtime_agent import TinyAgentConfig, check_final_eval, make_env

pytestmark = pytest.mark.ray

GATE_WAIT_S = 240  # an env waits at most this long at a gate (the test fails, not hangs)


class _Gated(gymnasium.Wrapper):
    """Before its step number ``gate`` (for each gate): writes ``reached-<gate>`` in the gate
    folder and waits until ``open-<gate>`` exists (a restarted worker's env passes open gates)."""

    def __init__(self, env, folder: str, gates):
        super().__init__(env)
        self.folder, self.gates, self.steps = Path(folder), set(gates), 0

    def step(self, action):
        self.steps += 1
        if self.steps in self.gates:
            opened = self.folder / f"open-{self.steps}"
            if not opened.exists():
                (self.folder / f"reached-{self.steps}").touch()
                deadline = time.monotonic() + GATE_WAIT_S
                while not opened.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
        return self.env.step(action)


def gated_env(config, seed):
    """The runtime's env factory here: runtime_agent's SignEnv behind the gates named in
    ``config.env_kwargs`` (``gate_dir``, ``gates``)."""
    return _Gated(make_env(config, seed), config.env_kwargs["gate_dir"], config.env_kwargs["gates"])


class Gates:
    """The test's side of the gates: has an env reached one, open it."""

    def __init__(self, folder: Path, *gates: int):
        self.folder, self.gates = folder, gates
        folder.mkdir(parents=True, exist_ok=True)

    def env_kwargs(self) -> dict:
        return {"gate_dir": str(self.folder), "gates": list(self.gates)}

    def reached(self, gate: int) -> bool:
        return (self.folder / f"reached-{gate}").exists()

    def open(self, gate: int) -> None:
        (self.folder / f"open-{gate}").touch()


def runtime(tmp_path, name: str, **overrides) -> RuntimeConfig:
    base = dict(workers=2, envs_per_worker=2, shards=2, steps=640, chunk_length=16, capacity=4096,
                train_ratio=16.0,
                min_fill=64, broadcast_interval=5, checkpoint_interval=60, eval_interval=320,
                eval_episodes=2, progress_seconds=1.0, collect_seconds=0.3, train_seconds=0.5,
                env_factory="runtime_agent:make_env", run_dir=str(tmp_path / name), verbose=False)
    base.update(overrides)
    return RuntimeConfig(**base)


def expected_band(shards: int, streams_per_shard_insert: int, ratio: float = 16.0,
                  min_fill: int = 64, rate_tolerance: float = 0.1, batch_steps: int = 4 * 8,
                  chunk: int = 16) -> tuple[float, int, float]:
    """``(target ratio, min fill steps, tolerance band)`` derived here from the run's settings
    (not read from its summary): per shard ``min_size = ceil(min_fill / shards)`` and an error
    buffer of ``max(rate_tolerance * ratio * min_size, ratio * max_insert + batch_steps)``
    replayed steps (Reverb's no-deadlock bound, :func:`min_error_buffer`), ``max_insert`` the
    steps one worker sends a shard in one insert."""
    min_size = -(-min_fill // shards)
    buffer = max(rate_tolerance * ratio * min_size, ratio * streams_per_shard_insert * chunk + batch_steps)
    return ratio, min_size * shards, buffer * shards


def assert_ratio_held(records, summary, expected):
    """Every progress record keeps |sampled - ratio * (inserted - min_fill)| within the limiter's
    tolerance, and the run ends on the target ratio; ``expected`` is :func:`expected_band`."""
    ratio, min_fill, band = expected
    assert (summary["target_ratio"], summary["min_fill_steps"]) == (ratio, min_fill)
    assert summary["ratio_tolerance_steps"] == pytest.approx(band)
    for rec in records:
        past = rec["replay_inserted"] - min_fill
        if past > 0:
            drift = rec["replay_sampled"] - ratio * past
            assert abs(drift) <= band, (rec, band)
    assert records[-1]["replay_ratio"] == pytest.approx(ratio, rel=0.1)


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
    assert_ratio_held(basic_run.history, basic_run.summary, expected_band(2, 1))  # band 576
    # every sampled step went into an update (plus at most the prefetched batch)
    assert s["updates"] * s["batch_steps"] <= s["replay_sampled"] <= (s["updates"] + 2) * s["batch_steps"]
    assert s["restarts"] == {}
    check_final_eval(s["final_eval"], episodes=2, max_length=20)  # SignEnv: 20-step limit
    run_dir = basic_run.run_dir
    for name in ("report.md", "learning_curve.png", "metrics.jsonl", "run.yaml", "progress.log",
                 "summary.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    import json

    with open(os.path.join(run_dir, "summary.json")) as f:
        stored = json.load(f)
    assert (stored["env_steps"], stored["updates"]) == (s["env_steps"], s["updates"])
    assert stored["final_eval"]["returns"] == s["final_eval"]["returns"]
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        evals = [row["eval/return"] for row in map(json.loads, f) if "eval/return" in row]
    assert stored["best_eval"]["return"] == max(evals)
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


def test_resume_from_run_directory_with_the_cli(basic_run, tmp_path):
    from distwm import cli
    from distwm.runtime import run
    from distwm.runtime.learner import latest_checkpoint, load_checkpoint
    from distwm.runtime.run_report import read_metrics
    from distwm.runtime.setup import load_run_config

    # a copy of the basic run: the other tests read the basic run as it finished
    first, run_dir = basic_run.summary, str(tmp_path / "resumed")
    shutil.copytree(basic_run.run_dir, run_dir)
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
    assert_ratio_held(second, first, expected_band(2, 1))
    assert "resumed | 1 time(s)" in open(os.path.join(run_dir, "report.md")).read()


def test_killed_env_worker_and_replay_shard_are_restarted(ray_session, tmp_path):
    import ray

    from distwm.runtime import run

    killed = {}
    # every env stops before its step 48, then 160: worker 0 is killed at the first stop, the
    # shard at the second (with what both workers inserted), then the gate opens
    gates = Gates(tmp_path / "gates", 48, 160)

    def kill(rec, driver):
        if "worker" not in killed and gates.reached(48):
            killed["worker"] = rec["env_steps"]
            ray.kill(driver.workers[0], no_restart=True)
            gates.open(48)
        elif "worker" in killed and "shard" not in killed and gates.reached(160):
            killed["shard"] = rec["replay_inserted"]
            ray.kill(driver.shards[0], no_restart=True)
            gates.open(160)

    # the shard is killed at most 2 x 160 env steps (+ chunks in flight) in: the budget leaves
    # the restored shard hundreds of steps to receive
    rt = runtime(tmp_path, "kill-worker", shards=1, envs_per_worker=1, eval_episodes=0,
                 steps=800, checkpoint_interval=20, progress_seconds=0.25,
                 env_factory="test_runtime_ray:gated_env")
    result = run(TinyAgentConfig(seed=4, env_kwargs=gates.env_kwargs()), rt, on_progress=kill)
    s = result.summary
    assert set(killed) == {"worker", "shard"}
    assert s["restarts"] == {"worker": 1, "shard": 1}
    assert s["worker_incarnations"] == [1, 0]
    assert s["env_steps"] >= 800 and s["worker_steps"][0] > 0
    # the shard came back with everything it had (from its log) and went on filling
    event = next(e for e in s["events"] if e["role"] == "shard")
    assert event["restored_steps"] >= killed["shard"] > 0  # before any worker knew the new shard
    assert event["restored_log_steps"] > 0
    assert s["shard_stats"][0]["inserted"] > event["restored_steps"]
    assert s["metric_max"]["seq_violations"] == 0
    assert_ratio_held(result.history, result.summary, expected_band(1, 1))


def test_killed_learner_resumes_from_its_checkpoint(ray_session, tmp_path):
    import ray
    import torch

    from distwm.runtime import run

    killed = []
    # the envs stop before their step 100 (2 x 99 steps in: past min_fill, so the learner has
    # updated and checkpointed); the learner is killed once the driver knows a checkpoint
    gates = Gates(tmp_path / "gates", 100)

    def kill_learner(rec, driver):
        if not killed and driver.checkpoint is not None and gates.reached(100):
            killed.append((rec["updates"], driver.checkpoint))
            ray.kill(driver.learner, no_restart=True)
            gates.open(100)

    # checkpoints every 40 env steps; after the gate ~440 env steps (~220 updates) remain
    rt = runtime(tmp_path, "kill-learner", envs_per_worker=1, shards=1, eval_episodes=0,
                 checkpoint_interval=40, progress_seconds=0.25, steps=640,
                 env_factory="test_runtime_ray:gated_env")
    result = run(TinyAgentConfig(seed=5, env_kwargs=gates.env_kwargs()), rt, on_progress=kill_learner)
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
    assert_ratio_held(result.history, result.summary, expected_band(1, 1))


def test_restarts_are_bounded(ray_session, tmp_path):
    """An env that keeps raising: its worker is restarted max_restarts times, then the run stops
    with the env's error (and cleans up its actors)."""
    from distwm.runtime import run

    rt = runtime(tmp_path, "failing", workers=1, envs_per_worker=1, shards=1, eval_episodes=0,
                 steps=10_000, max_restarts=1)
    with pytest.raises(RuntimeError, match=r"(?s)restart budget.*spent.*failure injected after 40"):
        run(TinyAgentConfig(seed=6, fail_after=40), rt)
    log = open(os.path.join(tmp_path, "failing", "progress.log")).read()
    assert "worker 0 failed (RayTaskError" in log and "restarting (1/1)" in log
