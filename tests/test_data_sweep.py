"""``distwm sweep`` / ``distwm report`` for dataset-trained models (:mod:`distwm.tune.data_sweep`):
the config's refusals, the trial grid, fitting trials to the cluster and the report run without
Ray; one tiny DiT seed sweep (2 seeds x 4 updates on ``sklearn:digits:8``, one trial at a time)
runs through Ray Tune and Ray Train on the session's Ray instance."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import yaml

from distwm.cli import main
from distwm.tune.data_sweep import (DataSweepConfig, build_data_param_space, fit_data_sweep,
                                    load_sweep_file, saved_sweep_kind)
from distwm.tune.data_sweep_report import DataTrialOutcome, trial_label, write_data_sweep_report
from distwm.tune.sweep_config import SweepConfig

ROOT = Path(__file__).resolve().parents[1]
DIGITS = "sklearn:digits:8"
METRIC = "report/eval/sample_class_accuracy"
#: the tiniest DiT that trains and reports (as tests/test_dit.py's seed entry point)
TINY_DIT = {"IMG_SIZE": 8, "CHANNELS": 1, "PATCH": 4, "WIDTH": 32, "DEPTH": 1, "HEADS": 2,
            "BATCH": 16, "TIMESTEPS": 50, "t_dim": 16, "sample_steps": 4, "eval_samples": 20,
            "report_classes": 3, "report_samples_per_class": 2, "classifier_width": 8}


def sweep_dict(tmp_path: Path, **changes) -> dict:
    data = {"kind": "dataset-trained", "name": "tiny-dit", "data": [DIGITS], "seeds": [0, 1],
            "run": {"model": "dit", "model_config": TINY_DIT,
                    "data_parallel": {"gpus_per_worker": 0, "report_interval": 2,
                                      "checkpoint_interval": 4, "verbose": False}},
            "budget": {"updates": 4}, "workers": 1,
            "tune": {"storage_path": str(tmp_path / "results"), "metric": METRIC, "mode": "max",
                     "max_concurrent_trials": 1, "max_failures": 0, "driver_cpus": 0.5,
                     "verbose": 0}}
    return {**data, **changes}


@pytest.mark.parametrize("changes,message", [
    ({"seedz": [0]}, "Unknown config field 'seedz' for DataSweepConfig. Did you mean 'seeds'?"
                     ".*Valid fields: kind, name, run, data, seeds"),
    ({"kind": "rl-agent"}, "kind: 'rl-agent' is not 'dataset-trained' .*leave `kind` out"),
    ({"run": "quickstart"}, "'quickstart' is an actor-learner .*data-parallel presets: dit-digits"),
    ({"run": "no-such-preset"}, "run: 'no-such-preset' is neither a file nor a preset"),
    ({"run": {"model": "dreamer"}}, "model 'dreamer' is a rl-agent model"),
    ({"search": {"lr": {"grid": [0.1]}}}, "'lr' must be 'model_config.<field>' or 'data_parallel"),
    ({"search": {"model_config.WIDHT": {"grid": [16]}}}, "Unknown config field 'WIDHT' for "
                                                          "DiTConfig. Did you mean 'WIDTH'"),
    ({"search": {"model_config.DEPTH": {"uniform": [1, 3]}}}, "DEPTH = 1.0: .*expected an int"),
    ({"search": {"model_config.LR": {"between": [0.1, 1]}}}, "expected one of \\{grid, choice"),
    ({"search": {"data_parallel.seed": {"grid": [1, 2]}}}, "set by the sweep: use `seeds:`"),
    ({"search": {"data_parallel.workers": {"grid": [1, 2]}}}, "every trial has the same layout"),
    ({"data": [], "run": {"model": "dit"}}, "data: the run names no data set"),
    ({"seeds": [0, 0]}, "seeds: 0 is listed twice"),
    ({"budget": {"updates": 0}}, "budget.updates must be >= 1"),
    ({"tune": {"max_failures": -1}}, "tune.max_failures must be >= 0"),
])
def test_bad_sweeps_are_refused_naming_the_field(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        DataSweepConfig.from_dict(sweep_dict(tmp_path, **changes))


def test_a_sweep_file_is_read_as_its_kind_and_the_shipped_example_loads(tmp_path):
    example = load_sweep_file(str(ROOT / "tune_configs" / "dit_digits_seeds.yaml"))
    assert isinstance(example, DataSweepConfig) and example.num_grid_trials() == 3
    run = example.base_run()
    assert (run.model, run.data_parallel.total_updates, run.data_parallel.workers) == ("dit", 300, 1)
    assert example.tune.metric == METRIC
    assert isinstance(load_sweep_file(str(ROOT / "tune_configs" / "quickstart.yaml")), SweepConfig)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(tmp_path, kind="rl")))
    with pytest.raises(ValueError, match="bad.yaml: kind: 'rl' is not 'dataset-trained'"):
        load_sweep_file(str(path))
    resolved = example.resolved()  # what the experiment saves: no preset file, no relative path
    assert isinstance(resolved.run, dict) and resolved.run["model_config"]["WIDTH"] == 128
    assert DataSweepConfig.from_yaml(resolved.to_yaml()) == resolved
    assert resolved.base_run() == example.base_run()
    (tmp_path / "exp").mkdir()
    assert saved_sweep_kind(str(tmp_path / "exp")) is None
    (tmp_path / "exp" / "sweep.yaml").write_text(resolved.to_yaml())
    assert saved_sweep_kind(str(tmp_path / "exp")) == "dataset-trained"


def test_the_param_space_is_data_sets_x_seeds_with_the_search_domains(tmp_path):
    from ray.tune.search.sample import Float

    sweep = DataSweepConfig.from_dict(sweep_dict(
        tmp_path, data=[DIGITS, "sklearn:digits:16"], seeds=[3, 4, 5],
        search={"model_config.LR": {"loguniform": [1.0e-4, 1.0e-3]},
                "data_parallel.report_interval": {"grid": [1, 2]}}))
    space = build_data_param_space(sweep)
    dp = space["data_parallel"]
    assert dp["data"] == {"grid_search": [DIGITS, "sklearn:digits:16"]}
    assert dp["seed"] == {"grid_search": [3, 4, 5]}
    assert dp["report_interval"] == {"grid_search": [1, 2]}
    assert isinstance(space["model_config"]["LR"], Float)
    assert (space["model_config"]["LR"].lower, space["model_config"]["LR"].upper) == (1.0e-4, 1.0e-3)
    assert sweep.num_grid_trials() == 2 * 3 * 2
    base = sweep.base_run()
    assert base.data_parallel.total_updates == 4 and base.data_parallel.run_dir.endswith("tiny-dit/runs")
    label = trial_label({"data_parallel": {"data": DIGITS, "seed": 3, "report_interval": 2},
                         "model_config": {"LR": 0.00031622}})
    assert label == "sklearn-digits-8-s3[report_interval=2,LR=0.000316]"


def test_trials_are_fitted_to_the_cluster(tmp_path):
    sweep = DataSweepConfig.from_dict(sweep_dict(tmp_path, seeds=[0, 1, 2, 3],
                                                 tune={"driver_cpus": 0.5}))
    concurrent, (line,) = fit_data_sweep(sweep, {"CPU": 4.0})
    assert concurrent == 2  # (0.5 + 1 x 1 CPU) x 2 <= 4 < x 3
    assert "a trial reserves 1.5 CPUs" in line
    assert fit_data_sweep(sweep, {"CPU": 64.0})[0] == 4  # no more than the trials
    capped = DataSweepConfig.from_dict(sweep_dict(tmp_path, tune={"max_concurrent_trials": 1}))
    assert fit_data_sweep(capped, {"CPU": 64.0})[0] == 1
    wide = DataSweepConfig.from_dict(sweep_dict(tmp_path, workers=4))
    with pytest.raises(ValueError, match="a trial reserves 4.5 CPUs .*4 Ray Train worker.*the "
                                         "cluster has 2 CPUs and 0 GPUs: lower `workers`"):
        fit_data_sweep(wide, {"CPU": 2.0})


def _outcome(data, seed, value, status="done", lr=None, **extra):
    point = {} if lr is None else {"model_config.LR": lr}
    config = {"data_parallel": {"data": data, "seed": seed},
              "model_config": {} if lr is None else {"LR": lr}}
    metrics = {} if status != "done" else {
        **({} if value is None else {METRIC: value}), "train/loss": 0.5, **extra}
    return DataTrialOutcome(trial_label(config), data, seed, point, status, 4, metrics,
                            "" if status == "done" else "RuntimeError: boom")


def test_the_report_aggregates_seeds_with_a_bootstrap_ci(tmp_path):
    sweep = DataSweepConfig.from_dict(sweep_dict(tmp_path, seeds=[0, 1, 2],
                                                 search={"model_config.LR": {"grid": [0.001, 0.01]}}))
    outcomes = [_outcome(DIGITS, s, v, lr=0.001) for s, v in ((0, 0.2), (1, 0.4), (2, 0.6))]
    outcomes += [_outcome(DIGITS, 0, 0.9, lr=0.01), _outcome(DIGITS, 1, 0.7, lr=0.01),
                 _outcome(DIGITS, 2, None, status="failed", lr=0.01)]
    out = tmp_path / "report"
    result = write_data_sweep_report(sweep, outcomes, str(out), "RESULTS", num_samples=500)
    best, second = result["report"]["aggregates"]
    assert (best["point"], best["seeds"], best["mean"]) == ("LR=0.01", [0, 1], pytest.approx(0.8))
    assert (second["point"], second["num_seeds"]) == ("LR=0.001", 3)
    assert second["mean"] == pytest.approx(0.4) and second["std"] == pytest.approx(0.1633, abs=1e-4)
    low, high = second["mean_ci"]
    assert 0.2 <= low < 0.4 < high <= 0.6
    md = result["markdown"]
    assert "95% bootstrap CI of the mean (500 resamples" in md
    assert f"| 2 | {DIGITS} | LR=0.001 | 0, 1, 2 | 0.4 | 0.1633 | [{low:.4g}, {high:.4g}] |" in md
    assert "sklearn-digits-8-s2[LR=0.01]: failed, RuntimeError: boom" in md
    assert "No published scores exist at these scales: the DiT paper reports FID-50K" in md
    assert (out / "report.md").read_text() == md
    with open(out / "aggregates.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["search_point"] for r in rows] == ["LR=0.01", "LR=0.001"]
    assert float(rows[1]["ci_lower"]) == pytest.approx(low)
    with open(out / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 6 and trials[0][METRIC] and trials[0]["train/loss"] == "0.5"
    assert json.loads((out / "report.json").read_text())["metric"] == METRIC
    # a metric the trials do not have: said, not scored
    other = DataSweepConfig.from_dict({**sweep.to_dict(), "tune": {**sweep.tune.to_dict(),
                                                                   "metric": "report/nope"}})
    md = write_data_sweep_report(other, outcomes, str(tmp_path / "r2"), num_samples=100)["markdown"]
    assert "5 finished trial(s) have no `report/nope`" in md and METRIC in md


def test_a_tiny_dit_seed_sweep_runs_on_tune_and_ray_train(ray_session, tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(sweep_dict(tmp_path)))
    experiment = tmp_path / "results" / "tiny-dit"
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert main(["sweep", str(config)]) == 0
    finally:  # Tune's fit leaves its own SIGINT handler installed; later tests need the default
        signal.signal(signal.SIGINT, previous)
    out = capsys.readouterr().out
    assert "tiny-dit: 2 trials of dit (1 data set x 2 seeds" in out
    assert "a trial reserves 1.5 CPUs" in out
    for seed in (0, 1):
        assert f"sklearn-digits-8-s{seed}  DONE    4" in out
    assert saved_sweep_kind(str(experiment)) == "dataset-trained"
    assert main(["report", str(experiment)]) == 0
    md = (experiment / "report" / "report.md").read_text()
    assert "2 of 2 trials finished" in md and "95% bootstrap CI of the mean" in md
    (row,) = json.loads((experiment / "report" / "report.json").read_text())["aggregates"]
    assert row["seeds"] == [0, 1] and 0.0 <= row["mean_ci"][0] <= row["mean"] <= row["mean_ci"][1]
    assert f"| 1 | {DIGITS} | - | 0, 1 | {row['mean']:.4g} |" in md
    runs = sorted((experiment / "runs").iterdir())
    assert len(runs) == 2 and all((r / "report.md").is_file() for r in runs)
    assert main(["sweep", str(config)]) == 2  # the experiment exists: --resume or a new name
    assert "already holds sweep 'tiny-dit'" in capsys.readouterr().err
