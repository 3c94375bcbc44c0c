"""tune_configs/*.yaml parse into SweepConfig; every bad key or value is a clear ValueError."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from conftest import require_reference
from distwm.tune.sweep_config import SweepConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "tune_configs").glob("*.yaml"))


def _reference_tasks(suite: str) -> set[str]:
    path = require_reference(f"dreamerv3_curves/{suite}-dreamerv3.json.gz")
    with gzip.open(path) as f:
        return {run["task"] for run in json.load(f)}


def test_shipped_configs_are_the_four_sweeps():
    assert {"quickstart.yaml", "dmc_proprio.yaml", "dmc_vision.yaml", "atari100k.yaml"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_loads_and_round_trips(name):
    from distwm.tune.data_sweep import DataSweepConfig, load_sweep_file

    sweep = load_sweep_file(ROOT / "tune_configs" / name)  # `kind: dataset-trained` or an RL sweep
    assert type(sweep).from_dict(sweep.to_dict()) == sweep
    if isinstance(sweep, DataSweepConfig):
        assert sweep.num_grid_trials() == len(sweep.data_sets()) * len(sweep.seeds)
        return
    assert sweep.num_grid_trials() == len(sweep.agents) * len(sweep.games) * len(sweep.seeds)


def test_quickstart_is_two_seeds_by_two_cheap_envs():
    sweep = SweepConfig.load(ROOT / "tune_configs" / "quickstart.yaml")
    assert len(sweep.seeds) == 2 and len(sweep.games) == 2
    assert sweep.agents["dreamer"].agent["model_size"] == "tiny"


def test_atari100k_has_the_26_games_of_the_reference():
    from distwm.benchmarks.normalization import canonical_atari_game
    from distwm.envs.ale_atari_env import atari_game

    human = require_reference("atari100k/HUMAN.json")
    sweep = SweepConfig.load(ROOT / "tune_configs" / "atari100k.yaml")
    assert len(sweep.games) == 26
    assert {canonical_atari_game(g) for g in sweep.games} == set(json.loads(human.read_text()))
    assert all(atari_game(g) is not None for g in sweep.games), "an id ale-py does not know"


@pytest.mark.parametrize("suite,count", [("dmc_proprio", 18), ("dmc_vision", 20)])
def test_dmc_sweeps_have_the_tasks_of_the_dreamerv3_suites(suite, count):
    from distwm.benchmarks.normalization import canonical_dmc_task

    sweep = SweepConfig.load(ROOT / "tune_configs" / f"{suite}.yaml")
    expected = {canonical_dmc_task(t) for t in _reference_tasks(suite)}
    assert len(sweep.games) == count
    assert {canonical_dmc_task(g) for g in sweep.games} == expected


def _base() -> dict:
    return yaml.safe_load((ROOT / "tune_configs" / "quickstart.yaml").read_text())


def _error(mutate) -> str:
    data = _base()
    mutate(data)
    with pytest.raises(ValueError) as info:
        SweepConfig.from_dict(data)
    return str(info.value)


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d.__setitem__("seed", [0]), ["'seed'", "Did you mean 'seeds'"]),
    (lambda d: d["budget"].__setitem__("env_stepz", 10), ["budget.env_stepz", "env_steps"]),
    (lambda d: d["budget"].__setitem__("env_steps", 0), ["budget.env_steps", ">= 1"]),
    (lambda d: d["budget"].__setitem__("env_steps", "lots"), ["budget.env_steps", "int"]),
    (lambda d: d.__setitem__("suite", "procgen"), ["suite", "atari100k"]),
    (lambda d: d.__setitem__("seeds", [0, 0]), ["seeds", "twice"]),
    (lambda d: d.__setitem__("games", []), ["games", "at least one"]),
    (lambda d: d["games"].append("Pong-v5"), ["Pong-v5", "dmc_proprio"]),
    (lambda d: d["agents"]["dreamer"].__setitem__("agnet", {}), ["agents.dreamer.agnet", "agent"]),
    (lambda d: d["agents"]["dreamer"]["agent"].__setitem__("model_sise", "tiny"),
     ["agents.dreamer", "model_sise"]),
    (lambda d: d["agents"]["dreamer"].__setitem__("model", "no-such-model"),
     ["agents.dreamer", "no-such-model"]),
    (lambda d: d["runtime"].__setitem__("shard", 2), ["runtime.shard", "shards"]),
    (lambda d: d["runtime"].__setitem__("steps", 10), ["runtime.steps", "budget.env_steps"]),
    (lambda d: d["runtime"].__setitem__("workers", 0), ["runtime.workers"]),
    (lambda d: d["tune"].__setitem__("max_concurrent_trials", 0), ["tune.max_concurrent_trials"]),
    (lambda d: d["tune"].__setitem__("mode", "best"), ["tune.mode", "'max'"]),
    (lambda d: d.__setitem__("search", {"lr": {"choice": [1]}}), ["search", "'agent.<field>'"]),
    (lambda d: d.__setitem__("search", {"agent.actor_learning_rate": {"normal": [0, 1]}}),
     ["search.agent.actor_learning_rate", "loguniform"]),
    (lambda d: d.__setitem__("search", {"agent.actor_learning_rate": {"loguniform": [0, 1]}}),
     ["low end must be > 0"]),
    (lambda d: d.__setitem__("search", {"runtime.shardz": {"choice": [1]}}), ["runtime.shardz"]),
    (lambda d: d.__setitem__("scheduler", {"type": "hyperband"}), ["scheduler.type", "'asha'"]),
    (lambda d: d.__setitem__("scheduler", {"type": "asha", "reduction_factor": 1}),
     ["scheduler.reduction_factor"]),
    (lambda d: d.__setitem__("scheduler", {"type": "pbt"}), ["pbt", "search"]),
])
def test_bad_sweep_fields_are_named(mutate, expected):
    message = _error(mutate)
    for part in expected:
        assert part in message, message


def test_pbt_mutates_only_what_a_resumed_run_may_change():
    def agent_field(d):
        d["games"] = d["games"][:1]
        d["scheduler"] = {"type": "pbt"}
        d["search"] = {"agent.actor_learning_rate": {"loguniform": [1e-5, 1e-3]}}

    assert "runtime fields a resumed run may change" in _error(agent_field)

    def two_games(d):
        d["scheduler"] = {"type": "pbt"}
        d["search"] = {"runtime.train_ratio": {"choice": [16, 32]}}

    assert "one agent and one game" in _error(two_games)
    data = _base()
    two_games(data)
    data["games"] = data["games"][:1]
    sweep = SweepConfig.from_dict(data)
    assert sweep.scheduler.type == "pbt"


def test_grid_search_multiplies_trials():
    data = _base()
    data["search"] = {"agent.imagine_horizon": {"grid": [5, 10, 15]}}
    assert SweepConfig.from_dict(data).num_grid_trials() == 2 * 2 * 3


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ngames: [cartpole-balance]\nbugdet: {}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*'bugdet'.*Did you mean 'budget'"):
        SweepConfig.load(path)
    with pytest.raises(ValueError, match="does not exist"):
        SweepConfig.load(tmp_path / "missing.yaml")
