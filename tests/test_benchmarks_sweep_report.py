"""The sweep report's numbers against hand computations: 2 tasks x 4 seeds where the IQM is not
the mean, the stratified-bootstrap CI against the exact bootstrap distribution (every resample
enumerated), and the CSV files' real contents. No Ray: the trials are given directly."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest

from distwm.tune import sweep_report
from distwm.tune.storage import SWEEP_FILE
from distwm.tune.sweep_config import SweepConfig
from distwm.tune.sweep_report import TrialOutcome, build_sweep_report

# raw final returns of seeds 0..3; DeepMind Control scores are return / 1000
RETURNS = {"walker-walk": [100.0, 200.0, 300.0, 900.0], "cartpole-balance": [400.0, 500.0, 600.0, 1000.0]}
# by hand: pooled scores .1 .2 .3 .4 .5 .6 .9 1.0; the IQM drops floor(8 / 4) = 2 from each end
IQM = (0.3 + 0.4 + 0.5 + 0.6) / 4  # 0.45
MEAN = (0.375 + 0.625) / 2  # task means (.1+.2+.3+.9)/4 and (.4+.5+.6+1)/4: 0.5
MEDIAN = MEAN  # of two task means
OPTIMALITY_GAP = 1 - MEAN  # no score above 1


def _exact_bootstrap_iqm() -> np.ndarray:
    """The IQM of every stratified resample (4 runs drawn with replacement in each task: 4^4
    per task, 65,536 in all, equally likely)."""
    per_task = []
    for runs in RETURNS.values():
        scores = np.asarray(runs) / 1000
        draws = np.array(list(itertools.product(range(4), repeat=4)))
        per_task.append(scores[draws])  # (256, 4)
    a, b = per_task
    pooled = np.concatenate([np.repeat(a, len(b), 0), np.tile(b, (len(a), 1))], axis=1)
    pooled.sort(axis=1)
    return pooled[:, 2:6].mean(axis=1)


@pytest.fixture
def sweep_dir(tmp_path, monkeypatch):
    results = tmp_path / "sweep"
    results.mkdir()
    sweep = SweepConfig.from_dict({"name": "iqm", "suite": "dmc_proprio",
                                   "games": sorted(RETURNS), "seeds": [0, 1, 2, 3, 4]})
    (results / SWEEP_FILE).write_text(sweep.to_yaml())
    trials = [TrialOutcome("dreamer", game, seed, "done", 5000, ret)
              for game, runs in RETURNS.items() for seed, ret in enumerate(runs)]
    trials.append(TrialOutcome("dreamer", "walker-walk", 4, "failed", 1200, None,
                               "RuntimeError: simulator crashed"))
    monkeypatch.setattr(sweep_report, "load_trial_outcomes", lambda path: sorted(
        trials, key=lambda o: (o.agent, o.game, o.seed)))
    return str(results)


def test_sweep_report_iqm_and_ci_are_the_hand_computed_ones(sweep_dir, tmp_path):
    out = tmp_path / "out"
    result = build_sweep_report(sweep_dir, out_dir=str(out), num_samples=20_000, seed=0)
    agg = result["report"]["agents"]["dreamer"]["aggregate"]
    assert agg["num_tasks"] == 2 and agg["num_runs"] == 8  # the failed trial is left out
    assert agg["iqm"]["estimate"] == pytest.approx(IQM) and IQM != pytest.approx(MEAN)
    assert agg["mean"]["estimate"] == pytest.approx(MEAN)
    assert agg["median"]["estimate"] == pytest.approx(MEDIAN)
    assert agg["optimality_gap"]["estimate"] == pytest.approx(OPTIMALITY_GAP)
    # the 95% percentile interval of 20,000 resamples sits on the exact distribution's 2.5% and
    # 97.5% quantiles (within +-1% of probability: many standard errors of a sampled quantile)
    exact = _exact_bootstrap_iqm()
    lo, hi = agg["iqm"]["ci_lower"], agg["iqm"]["ci_upper"]
    assert np.quantile(exact, 0.015) <= lo <= np.quantile(exact, 0.035), (lo, np.quantile(exact, 0.025))
    assert np.quantile(exact, 0.965) <= hi <= np.quantile(exact, 0.985), (hi, np.quantile(exact, 0.975))
    assert lo < IQM < hi
    # the same seed gives the same interval
    again = build_sweep_report(sweep_dir, out_dir=str(tmp_path / "again"), num_samples=20_000, seed=0)
    assert again["report"]["agents"]["dreamer"]["aggregate"]["iqm"] == agg["iqm"]

    # report.csv holds these numbers, and every run's normalised score
    with open(result["paths"]["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    get = {(r["agent"], r["task"], r["metric"]): r["value"] for r in rows if r["agent"] == "dreamer"}
    assert float(get[("dreamer", "all", "iqm")]) == pytest.approx(IQM)
    assert float(get[("dreamer", "all", "iqm_ci_lower")]) == pytest.approx(lo)
    assert float(get[("dreamer", "all", "iqm_ci_upper")]) == pytest.approx(hi)
    assert float(get[("dreamer", "all", "mean")]) == pytest.approx(MEAN)
    for task, runs in (("Walker Walk", RETURNS["walker-walk"]), ("Cartpole Balance", RETURNS["cartpole-balance"])):
        scores = sorted(float(r["value"]) for r in rows
                        if r["task"].lower().replace("_", " ").replace("-", " ") == task.lower()
                        and r["metric"] == "score")
        assert scores == pytest.approx([v / 1000 for v in runs]), (task, scores)
    # trials.csv: one row per trial, the failed one with its cause and no score
    with open(result["paths"]["trials_csv"], newline="") as f:
        trials = list(csv.DictReader(f))
    assert [(t["game"], t["seed"], t["status"]) for t in trials] == (
        [("cartpole-balance", str(s), "done") for s in range(4)]
        + [("walker-walk", str(s), "done") for s in range(4)] + [("walker-walk", "4", "failed")])
    assert [float(t["score"]) for t in trials[:8]] == RETURNS["cartpole-balance"] + RETURNS["walker-walk"]
    assert trials[8]["score"] == "" and trials[8]["cause"] == "RuntimeError: simulator crashed"
    # report.json is the report returned, and the markdown shows the IQM with its interval
    assert json.loads((out / "report.json").read_text())["agents"]["dreamer"]["aggregate"] == agg
    assert "8 of 9 trials scored" in result["markdown"]
    assert f"{IQM:.2f}" in result["markdown"] or f"{IQM:.3f}" in result["markdown"]
