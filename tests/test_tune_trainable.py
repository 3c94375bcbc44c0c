"""The pieces of a sweep that need no running Ray: trial configs, resources, schedulers,
reported metrics, and continuing another trial's run (PBT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distwm.tune.sweep_config import SweepConfig


def _sweep(**changes) -> SweepConfig:
    data = {
        "name": "unit", "suite": "dmc_proprio",
        "agents": {"dreamer": {"model": "dreamer", "agent": {"model_size": "tiny", "obs_type": "state",
                                                             "device": "cpu"}}},
        "games": ["cartpole-balance", "walker-walk"], "seeds": [0, 1],
        "budget": {"env_steps": 1000, "eval_episodes": 3, "eval_interval": 500},
        "runtime": {"workers": 2, "shards": 1, "learner_cpus": 1.0, "worker_cpus": 1.0,
                    "learner_gpus": 0},
        "tune": {"storage_path": "/tmp/distwm-unit", "driver_cpus": 0.5},
    }
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return SweepConfig.from_dict(data)


def test_trial_run_config_applies_game_seed_budget_and_search():
    from distwm.tune.trainable import trial_label, trial_run_config, trial_run_dir

    sweep = _sweep(search={"agent.imagine_horizon": {"grid": [5, 7]},
                           "runtime.train_ratio": {"choice": [8.0, 16.0]}})
    config = {"agent": "dreamer", "game": "walker-walk", "seed": 1,
              "agent.imagine_horizon": 7, "runtime.train_ratio": 16.0}
    run = trial_run_config(sweep, config, "/runs/x")
    assert run.model == "dreamer"
    assert run.agent == {"model_size": "tiny", "obs_type": "state", "device": "cpu",
                         "env": "walker-walk", "seed": 1, "imagine_horizon": 7}
    rt = run.runtime
    assert (rt.total_steps, rt.eval_episodes, rt.eval_interval, rt.run_dir) == (1000, 3, 500, "/runs/x")
    assert (rt.workers, rt.train_ratio) == (2, 16.0)
    assert trial_label(config) == "dreamer-walker-walk-s1"
    assert (trial_run_dir(sweep, config, "abc_00001")
            == "/tmp/distwm-unit/unit/runs/dreamer-walker-walk-s1-abc_00001")
    with pytest.raises(ValueError, match="not one of the sweep's agents"):
        trial_run_config(sweep, {**config, "agent": "planet"}, None)


def test_old_runtime_names_in_a_sweep_map_to_the_new_fields():
    from distwm.tune.trainable import trial_run_config

    sweep = _sweep(runtime={"capacity": 5000}, search={"runtime.capacity": {"choice": [2000, 3000]}})
    config = {"agent": "dreamer", "game": "walker-walk", "seed": 0, "runtime.capacity": 3000}
    assert trial_run_config(sweep, config, None).runtime.buffer_size == 3000
    with pytest.raises(ValueError, match="runtime.total_steps is set by the sweep: use budget.env_steps"):
        _sweep(runtime={"total_steps": 10})


def test_trial_bundles_reserve_driver_learner_and_workers():
    from distwm.tune.sweep import trial_bundles

    sweep = _sweep()
    config = {"agent": "dreamer", "game": "cartpole-balance", "seed": 0}
    assert trial_bundles(sweep, config) == [{"CPU": 0.5}, {"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    gpu = _sweep(runtime={"learner_gpus": 1})
    bundles = trial_bundles(gpu, config, cluster_has_learner_resource=True)
    assert bundles[1] == {"CPU": 1.0, "GPU": 1.0, "learner": 1}


def test_auto_workers_share_the_cluster_between_concurrent_trials():
    from distwm.tune.sweep import resolve_for_cluster

    sweep = _sweep(runtime={"workers": "auto", "learner_gpus": "auto"},
                   tune={"max_concurrent_trials": 2})
    resolved = resolve_for_cluster(sweep, {"CPU": 16.0, "GPU": 0.0})
    # 16 CPUs / 2 trials = 8, less 0.5 driver, 1 learner -> 6 workers of 1 CPU
    assert resolved.runtime["workers"] == 6 and resolved.runtime["learner_gpus"] == 0.0
    gpu_sweep = _sweep(runtime={"workers": "auto", "learner_gpus": "auto"},
                       agents={"dreamer": {"model": "dreamer", "agent": {"model_size": "tiny"}}})
    assert resolve_for_cluster(gpu_sweep, {"CPU": 8.0, "GPU": 1.0}).runtime["learner_gpus"] == 1.0


def test_param_space_and_schedulers():
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    from distwm.tune.sweep import build_param_space, build_scheduler

    sweep = _sweep(search={"agent.imagine_horizon": {"grid": [5, 7]},
                           "agent.actor_learning_rate": {"loguniform": [1e-5, 1e-3]}},
                   scheduler={"type": "asha", "grace_period": 200})
    space = build_param_space(sweep)
    assert space["game"] == {"grid_search": ["cartpole-balance", "walker-walk"]}
    assert space["seed"] == {"grid_search": [0, 1]}
    assert space["agent.imagine_horizon"] == {"grid_search": [5, 7]}
    assert space["agent.actor_learning_rate"].lower == 1e-5
    asha = build_scheduler(sweep)
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == "env_steps"
    assert asha._max_t == 1000
    pbt = build_scheduler(_sweep(games=["walker-walk"], scheduler={"type": "pbt"},
                                 search={"runtime.train_ratio": {"choice": [8.0, 16.0]}}))
    assert isinstance(pbt, PopulationBasedTraining)
    assert pbt._hyperparam_mutations == {"runtime.train_ratio": [8.0, 16.0]}
    assert build_scheduler(_sweep()) is None


def test_reported_score_is_latest_eval_else_training_return():
    from distwm.tune.trainable import TrialReporter

    reporter = TrialReporter("/runs/x", total_steps=1000)
    record = {"env_steps": 100, "updates": 5, "env_steps_per_s": 50.0, "episode_return": None,
              "replay_ratio": 1.0, "train/model_loss": 2.5}
    assert reporter.metrics(record, []) is None  # nothing to score yet
    metrics = reporter.metrics({**record, "episode_return": 12.0}, [])
    assert metrics["score"] == 12.0 and metrics["final"] is False
    assert metrics["budget_fraction"] == 0.1 and metrics["train/model_loss"] == 2.5
    metrics = reporter.metrics({**record, "env_steps": 200}, [{"return_mean": 30.0}])
    assert metrics["score"] == metrics["eval_return"] == 30.0
    assert metrics["episode_return"] == 12.0  # carried forward


def _fake_run(root: Path, name: str, seed: int, ckpt: str) -> Path:
    from distwm.configs.runtime_config import RunConfig, RuntimeConfig
    from distwm.runtime.learner import CHECKPOINT_FILE, LATEST

    run_dir = root / name
    (run_dir / "checkpoints" / ckpt).mkdir(parents=True)
    (run_dir / "checkpoints" / ckpt / CHECKPOINT_FILE).write_bytes(b"weights")
    (run_dir / "checkpoints" / LATEST).write_text(ckpt)
    (run_dir / "replay" / "shard_0").mkdir(parents=True)
    (run_dir / "replay" / "shard_0" / "log-000000-0000.bin").write_bytes(name.encode())
    RunConfig(model="dreamer", agent={"model_size": "tiny", "env": "walker-walk", "seed": seed},
              runtime=RuntimeConfig(run_dir=str(run_dir))).to_yaml(run_dir / "run.yaml")
    return run_dir


def _tune_checkpoint(tmp: Path, run_dir: Path):
    from ray.tune import Checkpoint

    from distwm.tune.trainable import TRIAL_STATE_FILE

    folder = tmp / f"tune-ckpt-{run_dir.name}"
    folder.mkdir()
    (folder / TRIAL_STATE_FILE).write_text(json.dumps({"run_dir": str(run_dir)}))
    return Checkpoint.from_directory(str(folder))


def test_restarted_trial_resumes_its_own_run(tmp_path):
    from distwm.configs.runtime_config import RunConfig
    from distwm.tune.trainable import resume_point

    own = _fake_run(tmp_path, "own", seed=0, ckpt="ckpt-000000010")
    config = RunConfig(model="dreamer", agent={"model_size": "tiny", "env": "walker-walk", "seed": 0})
    assert resume_point(config, str(own), _tune_checkpoint(tmp_path, own)) == (config, True)
    assert resume_point(config, str(tmp_path / "fresh"), None) == (config, False)


@pytest.mark.parametrize("uri", [False, True])
def test_pbt_exploit_continues_the_donor_run_with_its_agent_config(tmp_path, uri):
    from distwm.configs.runtime_config import RunConfig, RuntimeConfig
    from distwm.runtime.learner import latest_checkpoint
    from distwm.tune.trainable import resume_point

    donor = _fake_run(tmp_path, "donor", seed=3, ckpt="ckpt-000000042")
    own = _fake_run(tmp_path, "own", seed=0, ckpt="ckpt-000000007")
    mine = RunConfig(model="dreamer", agent={"model_size": "tiny", "env": "walker-walk", "seed": 0},
                     runtime=RuntimeConfig(train_ratio=32.0, run_dir=str(own)))
    own_dir = f"file://{own}" if uri else str(own)
    config, resume = resume_point(mine, own_dir, _tune_checkpoint(tmp_path, donor))
    assert resume and config.agent["seed"] == 3 and config.runtime.train_ratio == 32.0
    assert latest_checkpoint(own_dir).endswith("ckpt-000000042")
    assert not (own / "checkpoints" / "ckpt-000000007").exists()
    assert len(list((own / "checkpoints").iterdir())) == 2  # the checkpoint + latest
    # and the donor's replay (snapshot + log), not its own
    assert (own / "replay" / "shard_0" / "log-000000-0000.bin").read_bytes() == b"donor"
