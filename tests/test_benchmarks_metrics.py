"""IQM, median, mean, optimality gap, probability of improvement, performance profiles and
their stratified-bootstrap CIs, checked against scipy and hand computations."""

import numpy as np
import pytest
from scipy import stats

from distwm.benchmarks import (
    bootstrap_ci,
    bootstrap_iqm_ci,
    compute_aggregate_metrics,
    compute_suite_metrics,
    iqm_of_array,
    performance_profile,
    probability_of_improvement,
)

RNG = np.random.default_rng(1234)
SCORES = {f"task{i}": RNG.normal(loc=i * 0.3, scale=0.5, size=5).round(3).tolist()
          for i in range(6)}
SCORES["task_short"] = [0.1, 2.5, -0.4]  # tasks may have different numbers of runs


def test_iqm_hand_computed_and_scipy():
    # 8 values: floor(8/4) = 2 cut from each end -> mean(3, 4, 5, 6) = 4.5
    assert iqm_of_array([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    values = RNG.normal(size=37)
    assert iqm_of_array(values) == pytest.approx(stats.trim_mean(values, 0.25))
    with pytest.raises(ValueError, match="no runs"):
        iqm_of_array([])


def test_suite_point_estimates_match_scipy_and_numpy():
    out = compute_suite_metrics(SCORES, num_samples=200)
    pooled = np.concatenate([np.asarray(v) for v in SCORES.values()])
    task_means = np.array([np.mean(v) for v in SCORES.values()])
    assert out["iqm"]["estimate"] == pytest.approx(stats.trim_mean(pooled, 0.25))
    assert out["median"]["estimate"] == pytest.approx(np.median(task_means))
    assert out["mean"]["estimate"] == pytest.approx(task_means.mean())
    gap = 1.0 - np.mean([np.minimum(np.asarray(v), 1.0).mean() for v in SCORES.values()])
    assert out["optimality_gap"]["estimate"] == pytest.approx(gap)
    assert out["num_tasks"] == 7 and out["num_runs"] == 33
    for metric in ("iqm", "median", "mean", "optimality_gap"):
        assert out[metric]["ci_lower"] <= out[metric]["estimate"] <= out[metric]["ci_upper"]


def test_optimality_gap_hand_computed():
    # task a: min(.5, 1), min(1.5, 1) -> mean .75 ; task b: min(0, 1), min(2, 1) -> mean .5
    # gap = 1 - mean(.75, .5) = 0.375
    out = compute_suite_metrics({"a": [0.5, 1.5], "b": [0.0, 2.0]},
                                metrics=("optimality_gap",), num_samples=10)
    assert out["optimality_gap"]["estimate"] == pytest.approx(0.375)


def test_stratified_bootstrap_resamples_within_tasks():
    # every run of task a is 0 and of task b is 1: any within-task resample has mean 0.5;
    # a bootstrap that pooled runs across tasks would not
    out = compute_suite_metrics({"a": [0.0] * 4, "b": [1.0] * 6}, metrics=("mean",),
                                num_samples=500)
    assert out["mean"]["ci_lower"] == out["mean"]["ci_upper"] == 0.5


def test_bootstrap_reproducible_from_seed():
    first = compute_suite_metrics(SCORES, num_samples=300, seed=7)
    again = compute_suite_metrics(SCORES, num_samples=300, seed=7)
    other = compute_suite_metrics(SCORES, num_samples=300, seed=8)
    assert first == again
    assert first["iqm"]["ci_lower"] != other["iqm"]["ci_lower"]
    assert bootstrap_iqm_ci(SCORES["task3"], seed=3) == bootstrap_iqm_ci(SCORES["task3"], seed=3)


def test_bootstrap_ci_of_mean_agrees_with_scipy():
    data = np.random.default_rng(0).exponential(size=40)
    ours = bootstrap_ci(data.tolist(), num_samples=20000, alpha=0.1, seed=0)
    ref = stats.bootstrap((data,), np.mean, n_resamples=20000, confidence_level=0.9,
                          method="percentile", random_state=0).confidence_interval
    width = ref.high - ref.low
    assert ours[0] == pytest.approx(ref.low, abs=0.05 * width)
    assert ours[1] == pytest.approx(ref.high, abs=0.05 * width)


def test_compute_aggregate_metrics_seed_format():
    out = compute_aggregate_metrics([1.0, 2.0, 3.0, 10.0])
    assert out["mean"] == pytest.approx(4.0) and out["median"] == pytest.approx(2.5)
    assert out["iqm"] == pytest.approx(2.5)  # cut 1 from each end: mean(2, 3)
    assert out["num_seeds"] == 4 and out["ci_level"] == pytest.approx(0.95)
    assert out["iqm_ci"][0] <= out["iqm"] <= out["iqm_ci"][1]
    assert out["mean_ci"][0] <= out["mean"] <= out["mean_ci"][1]
    with pytest.raises(ValueError, match="no runs"):
        compute_aggregate_metrics([])


def test_probability_of_improvement_matches_mann_whitney():
    x = {"a": [1.0, 2.0, 3.0, 3.0], "b": [0.5, 0.7, 0.2]}
    y = {"a": [2.0, 2.5, 3.0], "b": [0.1, 0.6, 0.9, 0.4, 0.3]}
    expected = np.mean([
        stats.mannwhitneyu(x[t], y[t]).statistic / (len(x[t]) * len(y[t])) for t in ("a", "b")
    ])
    out = probability_of_improvement(x, y, num_samples=300)
    assert out["estimate"] == pytest.approx(expected)
    assert 0.0 <= out["ci_lower"] <= out["estimate"] <= out["ci_upper"] <= 1.0
    reverse = probability_of_improvement(y, x, num_samples=10)
    assert reverse["estimate"] == pytest.approx(1.0 - expected)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(x, {"a": [1.0]})


def test_performance_profile_hand_computed():
    # task a: fraction > 0.5 is 2/4, task b: 1/2 -> 0.5 ; > 1.5: a 1/4, b 0/2 -> 0.125
    out = performance_profile({"a": [0.0, 1.0, 2.0, 0.5], "b": [0.2, 0.9]},
                              taus=[0.5, 1.5], num_samples=200)
    assert out["taus"] == [0.5, 1.5]
    assert out["profile"] == pytest.approx([0.5, 0.125])
    assert all(lo <= p <= hi for lo, p, hi in zip(out["ci_lower"], out["profile"], out["ci_upper"]))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="task 'b'"):
        compute_suite_metrics({"a": [1.0], "b": [float("nan")]})
    with pytest.raises(ValueError, match="unknown aggregate metric 'mode'"):
        compute_suite_metrics(SCORES, metrics=("mode",))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError, match="num_samples"):
        bootstrap_ci([1.0, 2.0], num_samples=0)


def test_import_distwm_benchmarks_is_light():
    import subprocess
    import sys

    code = ("import sys, distwm.benchmarks as b; b.BenchmarkRunner; b.BaseAdapter;"
            "bad = [m for m in ('torch', 'ray', 'matplotlib') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
