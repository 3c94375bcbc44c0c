"""A tiny sweep end to end: 2 seeds x 1 env with a tiny Dreamer on the local Ray instance, one
trial failing once and restoring from its checkpoint; then `distwm report` on its results, and
the same report as a Ray job on the session's Ray head (`local_head`) (its log holds the report and its
headline numbers reach the node's metrics endpoint)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from test_cluster_submit import _distwm_submit

CRASH_STEPS = 150


def crash_once_env(config, seed):
    """The sweep's env factory: seed 1's first training env raises after CRASH_STEPS steps, once
    (a marker file remembers), which fails its trial; the others are the usual env."""
    import dataclasses

    import gymnasium

    from distwm.envs import make_env_from_config

    kwargs = dict(config.env_kwargs)
    marker = kwargs.pop("crash_marker")
    env = make_env_from_config(dataclasses.replace(config, env_kwargs=kwargs), seed)
    if config.seed != 1 or os.path.exists(marker):
        return env

    class CrashOnce(gymnasium.Wrapper):
        steps = 0

        def step(self, action):
            self.steps += 1
            if self.steps >= CRASH_STEPS and not os.path.exists(marker):
                Path(marker).touch()
                raise RuntimeError("injected env crash (test)")
            return self.env.step(action)

    return CrashOnce(env)


def tiny_sweep(tmp: Path) -> dict:
    return {
        "name": "tiny", "suite": "dmc_proprio", "compare": ["DreamerV3"],
        "agents": {"dreamer": {"model": "dreamer", "agent": {
            "model_size": "tiny", "obs_type": "state", "action_repeat": 2, "time_limit": 100,
            "batch_size": 4, "train_seq_len": 8, "train_ratio": 4.0, "imagine_horizon": 5,
            "device": "cpu", "env_kwargs": {"crash_marker": str(tmp / "crashed")}}}},
        "games": ["cartpole-balance"], "seeds": [0, 1],
        "budget": {"env_steps": 200, "eval_episodes": 1},
        "runtime": {"workers": 1, "shards": 1, "buffer_size": 4000, "min_fill": 64,
                    "chunk_length": 16, "checkpoint_interval": 3, "progress_seconds": 2.0,
                    "learner_gpus": 0, "worker_cpus": 0.5, "learner_cpus": 0.5,
                    "max_restarts": 0, "verbose": False,
                    "env_factory": "test_tune_sweep:crash_once_env"},
        "tune": {"storage_path": str(tmp / "results"), "driver_cpus": 0.25, "max_failures": 1,
                 "verbose": 0},
    }


@pytest.fixture(scope="module")
def finished_sweep(ray_session, tmp_path_factory):
    from distwm.tune.sweep import run_sweep
    from distwm.tune.sweep_config import SweepConfig

    tmp = tmp_path_factory.mktemp("sweep")
    sweep = SweepConfig.from_dict(tiny_sweep(tmp))
    outcome = run_sweep(sweep)
    return sweep, outcome, tmp


@pytest.mark.ray
def test_sweep_runs_every_trial_and_restores_the_failed_one(finished_sweep):
    from ray.tune import ExperimentAnalysis

    from distwm.runtime.learner import latest_checkpoint

    sweep, outcome, tmp = finished_sweep
    assert outcome.num_errors == 0, outcome.rows
    assert [r["trial"] for r in outcome.rows] == ["dreamer-cartpole-balance-s0",
                                                  "dreamer-cartpole-balance-s1"]
    assert all(r["status"] == "DONE" and r["env_steps"] >= 200 for r in outcome.rows)
    assert (tmp / "crashed").exists(), "the injected failure never happened"
    trials = {t.config["seed"]: t for t in ExperimentAnalysis(outcome.path).trials}
    assert trials[1].last_result["resumed"] == 1  # restarted from its run's checkpoint
    assert trials[0].last_result["resumed"] == 0
    runs = sorted(Path(sweep.runs_root()).iterdir())
    assert len(runs) == 2 and all(latest_checkpoint(str(r)) for r in runs)
    assert (Path(outcome.path) / "sweep.yaml").is_file()


@pytest.mark.ray
def test_finished_sweep_is_not_started_twice_and_resumes(finished_sweep, tmp_path, capsys):
    from distwm.cli import main
    from distwm.tune.sweep import run_sweep
    from distwm.tune.sweep_config import SweepConfig

    sweep, outcome, _ = finished_sweep
    with pytest.raises(ValueError, match="--resume"):
        run_sweep(sweep)
    path = tmp_path / "tiny.yaml"
    sweep.to_yaml(path)
    assert main(["sweep", str(path)]) == 2  # refused: it exists
    assert "already holds sweep 'tiny'" in capsys.readouterr().err
    # resume a copy of the experiment (the other tests read the sweep as it finished)
    data = sweep.to_dict()
    moved = SweepConfig.from_dict({**data, "tune": {**data["tune"], "storage_path": str(tmp_path / "moved")}})
    shutil.copytree(outcome.path, moved.experiment_path())
    moved.to_yaml(path)
    assert main(["sweep", str(path), "--resume"]) == 0  # Tuner.restore: all trials finished
    printed = capsys.readouterr().out
    for row in outcome.rows:
        assert f"{row['trial']}  DONE" in printed
    assert f"distwm report {moved.experiment_path()}" in printed


@pytest.fixture
def tiny_reference(tmp_path, monkeypatch) -> Path:
    """A published-results folder made here (3 DreamerV3 seeds on the sweep's task), so the
    report tests do not depend on ``../shared/reference`` beside the checkout."""
    import gzip

    from distwm.benchmarks.reference import REFERENCE_ENV_VAR

    folder = tmp_path / "reference"
    (folder / "dreamerv3_curves").mkdir(parents=True)
    (folder / "atari100k").mkdir()
    curves = [{"task": "dmc_cartpole_balance", "method": "dreamerv3", "seed": seed,
               "xs": [0.0, 250_000.0, 500_000.0], "ys": [200.0, 800.0 + seed, 990.0 - seed]}
              for seed in range(3)]
    with gzip.open(folder / "dreamerv3_curves" / "dmc_proprio-dreamerv3.json.gz", "wt") as f:
        json.dump(curves, f)
    monkeypatch.setenv(REFERENCE_ENV_VAR, str(folder))
    return folder


@pytest.mark.ray
def test_report_gives_tables_plots_and_iqm_with_ci(finished_sweep, tiny_reference, tmp_path, capsys):
    from distwm.cli import main

    sweep, outcome, _ = finished_sweep
    assert main(["report", outcome.path, "--out", str(tmp_path), "--num-samples", "200"]) == 0
    printed = capsys.readouterr().out
    assert "# distwm sweep report: tiny" in printed
    assert "| dreamer | 1 | 2 |" in printed  # 1 task, 2 runs in the aggregate table
    # 200 agent steps x action repeat 2 = 400 frames: the final row and the curve at 400 frames
    assert "DreamerV3 (published, final at 500,000 frames)" in printed
    assert "DreamerV3 (published curve at 400 frames, matched budget)" in printed
    assert "Probability of improvement" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    iqm = report["agents"]["dreamer"]["aggregate"]["iqm"]
    assert iqm["ci_lower"] <= iqm["estimate"] <= iqm["ci_upper"]
    scores = sorted(r["score"] / 1000 for r in outcome.rows)  # dmc: return / 1000
    assert iqm["estimate"] == pytest.approx(sum(scores) / 2)  # IQM of 2 runs is their mean
    with open(tmp_path / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["status"]) for r in rows] == [("0", "done"), ("1", "done")]
    with open(tmp_path / "report.csv", newline="") as f:
        table = {(r["agent"], r["task"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}
    assert table[("dreamer", "all", "iqm")] == pytest.approx(iqm["estimate"])
    assert table[("dreamer", "all", "iqm_ci_lower")] == pytest.approx(iqm["ci_lower"])
    assert table[("dreamer", "all", "iqm_ci_upper")] == pytest.approx(iqm["ci_upper"])
    assert "\\begin{tabular}" in (tmp_path / "report.tex").read_text()
    for png in ("report_performance_profile.png", "report_aggregate_intervals.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.ray
def test_report_without_reference_data(finished_sweep, tmp_path, monkeypatch):
    import distwm.benchmarks.reference as reference
    from distwm.tune.sweep_report import build_sweep_report

    _, outcome, _ = finished_sweep
    monkeypatch.setattr(reference, "_candidates", lambda _: [tmp_path / "no-reference"])
    result = build_sweep_report(outcome.path, out_dir=str(tmp_path), num_samples=100)
    assert "Published agents (DreamerV3) left out" in result["markdown"]
    assert list(result["report"]["agents"]) == ["dreamer"]
    with pytest.raises(ValueError, match="--compare IRIS"):
        build_sweep_report(outcome.path, compare=["IRIS"], out_dir=str(tmp_path), num_samples=100)


def _metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@pytest.mark.ray
def test_report_as_a_ray_job_logs_the_report_and_exports_gauges(
        finished_sweep, local_head, tiny_reference, tmp_path):
    _, outcome, _ = finished_sweep
    env = json.dumps({"env_vars": {"DISTWM_REFERENCE_DIR": str(tiny_reference)}})
    result = _distwm_submit(local_head.address, "--runtime-env-json", env,
                            "--", "python", "-m", "distwm.cli", "report",
                            outcome.path, "--out", str(tmp_path), "--num-samples", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# distwm sweep report: tiny" in result.stdout
    assert "Aggregate score / 1000 (95% CI)" in result.stdout
    assert "distwm_report_aggregate" in result.stdout
    deadline, text = time.time() + 60, ""
    while time.time() < deadline and "distwm_report_aggregate" not in text:
        time.sleep(3)
        try:
            text = _metrics_text(local_head.metrics_port)
        except OSError:
            text = ""
    assert 'metric="iqm"' in text and "distwm_report_aggregate" in text
