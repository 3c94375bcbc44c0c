"""Sizing a sweep's trials to the cluster before Tune starts (no running Ray needed): a trial
that fits keeps or shrinks its reservations and runs as many at once as fit; one that cannot
fit is refused with its request, the cluster's resources and the field to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from distwm.tune.resources import (
    LIGHT_CPU_FLOOR,
    bundle_roles,
    fit_sweep,
    resolve_for_cluster,
    trial_bundles,
    trial_plan,
)
from distwm.tune.sweep_config import SweepConfig
from distwm.tune.trainable import trial_run_config

ROOT = Path(__file__).resolve().parents[1]
TRIAL = {"agent": "dreamer", "game": "cartpole-balance", "seed": 0}


def _quickstart(**runtime) -> SweepConfig:
    sweep = SweepConfig.load(ROOT / "tune_configs" / "quickstart.yaml")
    return SweepConfig.from_dict({**sweep.to_dict(), "runtime": {**sweep.runtime, **runtime}})


def _cpus(bundles) -> float:
    return sum(b.get("CPU", 0.0) for b in bundles)


def _fit(sweep: SweepConfig, resources: dict):
    return fit_sweep(resolve_for_cluster(sweep, resources), resources)


def test_quickstart_on_two_cpus_is_sized_to_fit_one_trial_at_a_time():
    sweep = _quickstart()
    assert _cpus(trial_bundles(sweep, TRIAL)) == 2.5  # as written: never fits 2 CPUs
    fit = _fit(sweep, {"CPU": 2.0, "memory": 8e9})
    fitted = fit.sweep
    bundles = trial_bundles(fitted, TRIAL)
    assert _cpus(bundles) == pytest.approx(2.0, abs=1e-9) and _cpus(bundles) <= 2.0
    assert bundles == fit.bundles and fit.request["CPU"] == pytest.approx(2.0)
    assert fit.roles == ["trial driver", "learner", "env worker"]
    assert fitted.tune.max_concurrent_trials == 1 and fit.concurrent == 1
    # the learner and the worker lose a few percent, the driver (it mostly waits) the most
    runtime = trial_run_config(fitted, TRIAL, None).runtime
    assert 0.95 <= runtime.learner_cpus < 1.0 and 0.95 <= runtime.worker_cpus < 1.0
    assert fitted.tune.driver_cpus < LIGHT_CPU_FLOOR + 1e-9
    # the run's actors ask exactly what their bundles hold
    plan, _ = trial_plan(fitted, TRIAL)
    assert plan.worker_cpus == runtime.worker_cpus and plan.learner_cpus == runtime.learner_cpus
    assert {"runtime.worker_cpus 1 -> 0.9756", "tune.max_concurrent_trials 2 -> 1"} <= set(fit.changes)
    assert "one trial at a time" in fit.lines()[0]


def test_quickstart_on_four_cpus_runs_its_two_trials_at_once():
    fit = _fit(_quickstart(), {"CPU": 4.0})
    assert fit.sweep.tune.max_concurrent_trials == 2 and fit.concurrent == 2
    assert _cpus(trial_bundles(fit.sweep, TRIAL)) <= 2.0


def test_a_trial_that_fits_is_left_as_written():
    sweep = resolve_for_cluster(_quickstart(), {"CPU": 16.0})
    fit = fit_sweep(sweep, {"CPU": 16.0})
    assert fit.sweep == sweep and fit.changes == []
    assert fit.concurrent == 2  # tune.max_concurrent_trials, though 6 would fit
    unlimited = SweepConfig.from_dict({**sweep.to_dict(),
                                       "tune": {**sweep.tune.to_dict(), "max_concurrent_trials": None}})
    assert fit_sweep(unlimited, {"CPU": 16.0}).concurrent == 4  # 6 fit, the sweep has 4 trials


def test_driver_shards_and_evaluator_give_way_before_learner_and_workers():
    sweep = _quickstart(shard_cpus=1.0, evaluator_cpus=1.0)
    sweep = SweepConfig.from_dict({**sweep.to_dict(), "tune": {**sweep.tune.to_dict(), "driver_cpus": 1.0}})
    assert _cpus(trial_bundles(sweep, TRIAL)) == 5.0
    fit = fit_sweep(sweep, {"CPU": 3.5})
    runtime = trial_run_config(fit.sweep, TRIAL, None).runtime
    assert (runtime.learner_cpus, runtime.worker_cpus) == (1.0, 1.0)
    assert (runtime.shard_cpus, runtime.evaluator_cpus, fit.sweep.tune.driver_cpus) == (0.5, 0.5, 0.5)
    assert fit.roles == ["trial driver", "learner", "env worker", "replay shard", "evaluator"]
    assert _cpus(fit.bundles) == 3.5


def test_too_many_workers_for_the_cluster_name_request_cluster_and_fields():
    sweep = _quickstart(workers=8, worker_cpus=1.0)
    with pytest.raises(ValueError) as err:
        _fit(sweep, {"CPU": 2.0, "memory": 8e9})
    text = str(err.value)
    assert "cannot fit the Ray cluster, so the sweep did not start" in text
    assert "trial driver {CPU: 0.5}, learner {CPU: 1}, 8 x env worker {CPU: 1}" in text
    assert "trial CPU 9.5" in text and "cluster (ray.cluster_resources()) CPU 2, GPU 0" in text
    assert "the learners and env workers alone need 9" in text
    assert "runtime.workers (8), runtime.worker_cpus (1), runtime.learner_cpus (1)" in text
    assert "--no-fit-check" in text and "tune.fit_to_cluster: false" in text


def test_a_gpu_on_a_cpu_only_cluster_is_refused():
    with pytest.raises(ValueError) as err:
        _fit(_quickstart(learner_gpus=1), {"CPU": 8.0})
    text = str(err.value)
    assert "learner {CPU: 1, GPU: 1}" in text
    assert "GPU: the trial asks 1, the cluster has 0" in text and "runtime.learner_gpus (1" in text
    sweep = _quickstart()
    cuda = SweepConfig.from_dict({**sweep.to_dict(), "agents": {"dreamer": {
        "model": "dreamer", "agent": {**sweep.agents["dreamer"].agent, "device": "cuda"}}}})
    with pytest.raises(ValueError, match=r"agents.dreamer.agent.device is 'cuda'.*reserve no GPU"):
        _fit(cuda, {"CPU": 8.0})


def test_gpu_learners_take_the_learner_resource_and_bound_concurrency():
    sweep = _quickstart(learner_gpus=1)
    sweep = SweepConfig.from_dict({**sweep.to_dict(), "tune": {**sweep.tune.to_dict(),
                                                               "max_concurrent_trials": 8}})
    cluster = {"CPU": 64.0, "GPU": 2.0, "learner": 2.0}
    fit = fit_sweep(sweep, cluster)
    assert fit.sweep.tune.max_concurrent_trials == 2 and fit.concurrent == 2
    learners = [b for b, role in zip(fit.bundles, fit.roles) if role == "learner"]
    assert learners and all(b["GPU"] == 1 and b["learner"] == 1 for b in learners)
    assert _cpus(fit.bundles) == 2.5  # CPUs were never short: nothing shrunk
    with pytest.raises(ValueError, match="GPU: the trial asks 1, the cluster has 0"):
        fit_sweep(sweep, {"CPU": 64.0})


def test_the_largest_trial_of_a_runtime_search_must_fit():
    sweep = SweepConfig.from_dict({**_quickstart().to_dict(),
                                   "search": {"runtime.workers": {"grid": [1, 8]}}})
    with pytest.raises(ValueError, match=r"(?s)8 x env worker .*runtime.workers \(8\).*search\.runtime\.workers"):
        fit_sweep(sweep, {"CPU": 4.0})
    assert fit_sweep(sweep, {"CPU": 16.0}).request["CPU"] == 9.5
    # a searched CPU field cannot be rewritten by sizing: the sweep says so instead
    searched = SweepConfig.from_dict({**_quickstart().to_dict(),
                                      "search": {"runtime.worker_cpus": {"choice": [1.0, 1.5]}}})
    with pytest.raises(ValueError, match=r"runtime.worker_cpus would have to shrink, but `search`"):
        fit_sweep(searched, {"CPU": 2.5})


def test_bundle_roles_follow_the_plan_not_positions():
    sweep = _quickstart(workers=2, shards=2, shard_cpus=0.5, evaluator_cpus=0.25)
    plan, bundles = trial_plan(sweep, TRIAL)
    roles = bundle_roles(plan)
    assert len(roles) == len(bundles)
    assert roles.count("env worker") == 2 and roles.count("replay shard") == 2
    assert roles.count("evaluator") == 1 and roles[0] == "trial driver"
    assert {b["CPU"] for b, r in zip(bundles, roles) if r == "replay shard"} == {0.5}


def test_fit_to_cluster_is_a_tune_setting():
    sweep = _quickstart()
    assert sweep.tune.fit_to_cluster is True
    off = SweepConfig.from_dict({**sweep.to_dict(), "tune": {**sweep.tune.to_dict(),
                                                             "fit_to_cluster": False}})
    assert SweepConfig.from_yaml(off.to_yaml()).tune.fit_to_cluster is False
    with pytest.raises(ValueError, match="fit_to_cluster"):
        SweepConfig.from_dict({**sweep.to_dict(), "tune": {"fit_to_cluster": "yes"}})
