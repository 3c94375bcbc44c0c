"""Dreamer benchmark adapters: each trains its own version briefly (tiny sizes, CartPole state
observations), saves, loads and evaluates greedily through the runners; checkpoints of another
version, env or architecture are recorded with their cause, never scored."""

from __future__ import annotations

import json
import os

import pytest
import torch

from distwm.benchmarks import (
    BenchmarkError,
    BenchmarkRunner,
    DreamerAdapter,
    DreamerV1Adapter,
    DreamerV2Adapter,
    MultiAgentBenchmarkRunner,
)
from distwm.configs.dreamer_config import DreamerConfig

ENV = "CartPole-v1"
#: one config dict for the three versions (no ``version``: each adapter adds its own)
TINY = dict(env_backend="gym", action_repeat=3, time_limit=60, model_size="tiny", batch_size=2,
            train_seq_len=8, imagine_horizon=3, seed_steps=60, train_ratio=4.0, eval_interval=0,
            checkpoint_interval=200, log_interval=1000)
KWARGS = dict(config=TINY, device="cpu", steps_per_epoch=100)
ADAPTERS = {"dreamer": DreamerAdapter, "dreamerv1": DreamerV1Adapter, "dreamerv2": DreamerV2Adapter}
VERSIONS = {"dreamer": "v3", "dreamerv1": "v1", "dreamerv2": "v2"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """run_all(train_epochs=2): each adapter trains 200 env steps, then 2 seeds x 2 episodes."""
    out = tmp_path_factory.mktemp("bench")
    runner = MultiAgentBenchmarkRunner(list(ADAPTERS.values()), out_dir=str(out))
    results = runner.run_all(ENV, seeds=[0, 1], num_episodes=2, extra_kwargs=KWARGS,
                             train_epochs=2)
    paths = {name: out / name / "train" / "dreamer" / "checkpoints" / "final.pt"
             for name in ADAPTERS}
    return out, results, {name: str(p) for name, p in paths.items()}


def test_run_all_trains_each_version_and_evaluates_it(trained):
    out, results, paths = trained
    assert set(results) == set(ADAPTERS)
    for name, res in results.items():
        assert res["agent"] == name and res["env"] == ENV and res["failures"] == []
        means = []
        for seed in ("0", "1"):
            record = res["seeds"][seed]
            assert record["status"] == "ok" and 200 <= record["env_steps"] <= 203
            returns, lengths = record["episode_returns"], record["episode_lengths"]
            assert len(returns) == 2
            # the checkpoint's wrapping: action repeat 3 (3 reward per step, less on the last
            # one when the pole falls mid-repeat) and a time limit of 60 / 3 steps
            for ret, length in zip(returns, lengths):
                assert 1 <= length <= 20 and 3 * length - 2 <= ret <= 3 * length
            assert record["mean"] == pytest.approx(sum(returns) / 2)
            means.append(record["mean"])
        agg = res["aggregate"]
        assert agg["per_seed_means"] == means and agg["num_seeds"] == 2
        assert agg["num_failed"] == 0 and agg["mean"] == pytest.approx(sum(means) / 2)
        assert agg["iqm_ci"][0] <= agg["iqm"] <= agg["iqm_ci"][1]
        saved = json.loads((out / name / "benchmark_results.json").read_text())
        assert saved["seeds"]["0"]["episode_returns"] == res["seeds"]["0"]["episode_returns"]
    assert (out / "combined_benchmark_results.md").is_file()


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_train_writes_a_checkpoint_of_its_version(trained, name):
    state = torch.load(trained[2][name], map_location="cpu", weights_only=True)
    arch = state["architecture"]
    assert state["config"]["version"] == VERSIONS[name] and state["config"]["env"] == ENV
    assert 200 <= state["counters"]["env_steps"] <= 203 and state["counters"]["updates"] > 0
    expected = {"v1": ("gaussian", "normal", False), "v2": ("categorical", "normal", True),
                "v3": ("categorical", "twohot", True)}[VERSIONS[name]]
    assert (arch["latent"], arch["reward_head"], arch["use_disc_model"]) == expected


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_adapter_loads_the_checkpoint_and_evaluates_greedily(trained, name):
    path = trained[2][name]
    adapter = ADAPTERS[name](env_spec=ENV, seed=3, device="cpu")  # no config: the checkpoint's
    adapter.load_checkpoint(path)
    assert adapter.config.version == VERSIONS[name]
    assert (adapter.config.action_repeat, adapter.config.time_limit) == (3, 60)
    saved = torch.load(path, map_location="cpu", weights_only=True)["world_model"]
    for key, value in adapter.agent.world_model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    flags = []
    act = adapter.agent.act
    adapter.agent.act = lambda obs, state, explore: flags.append(explore) or act(obs, state, explore)
    first = adapter.evaluate(num_episodes=2)
    assert flags and not any(flags)
    adapter.close()
    again = ADAPTERS[name](env_spec=ENV, seed=3, device="cpu")
    again.load_checkpoint(path)
    assert again.evaluate(num_episodes=2)["episode_returns"] == first["episode_returns"]
    again.close()


def test_runtime_and_agent_checkpoint_layouts(trained, tmp_path):
    from distwm.runtime.learner import CHECKPOINT_FILE, LATEST

    path = trained[2]["dreamerv2"]
    state = torch.load(path, map_location="cpu", weights_only=True)
    ckpt_dir = tmp_path / "run" / "checkpoints" / "ckpt-000000007"
    ckpt_dir.mkdir(parents=True)
    torch.save({"agent": state, "updates": 7, "version": 7, "counters": {}},
               ckpt_dir / CHECKPOINT_FILE)
    (tmp_path / "run" / "checkpoints" / LATEST).write_text(ckpt_dir.name)
    agent_run_dir = os.path.dirname(os.path.dirname(path))  # holds checkpoints/latest.pt
    returns = []
    for source in (path, tmp_path / "run", ckpt_dir, ckpt_dir / CHECKPOINT_FILE, agent_run_dir):
        adapter = DreamerV2Adapter(env_spec=ENV, seed=5, device="cpu")
        adapter.load_checkpoint(str(source))
        returns.append(adapter.evaluate(num_episodes=1)["episode_returns"])
        adapter.close()
    assert all(r == returns[0] for r in returns)
    with pytest.raises(FileNotFoundError, match="holds no Dreamer checkpoint"):
        DreamerV2Adapter(env_spec=ENV).load_checkpoint(str(tmp_path))


def test_version_mismatch_is_recorded_with_its_cause(trained, tmp_path):
    paths = trained[2]
    runner = BenchmarkRunner(DreamerAdapter, out_dir=str(tmp_path / "v1_in_v3"))
    with pytest.raises(BenchmarkError, match="every seed failed") as info:
        runner.run(ENV, seeds=[0, 1], num_episodes=1, checkpoint=paths["dreamerv1"],
                   extra_kwargs={"device": "cpu"})
    for record in info.value.results["seeds"].values():
        assert record["status"] == "failed" and record["stage"] == "load_checkpoint"
        assert "ValueError" in record["error"] and "is a DreamerV1 checkpoint" in record["error"]
        assert "evaluate it with DreamerV1Adapter" in record["error"] and "mean" not in record
    assert info.value.results["aggregate"]["num_seeds"] == 0
    saved = json.loads((tmp_path / "v1_in_v3" / "benchmark_results.json").read_text())
    assert saved["failures"][0]["stage"] == "load_checkpoint"

    # one seed with the right checkpoint, one with a V3 checkpoint: only the first is scored
    res = BenchmarkRunner(DreamerV2Adapter, out_dir=str(tmp_path / "mixed")).run(
        ENV, seeds=[0, 1], num_episodes=1, extra_kwargs={"device": "cpu"},
        checkpoint={0: paths["dreamerv2"], 1: paths["dreamer"]})
    assert res["seeds"]["0"]["status"] == "ok" and res["seeds"]["1"]["status"] == "failed"
    assert "is a DreamerV3 checkpoint" in res["seeds"]["1"]["error"]
    assert "mean" not in res["seeds"]["1"] and res["aggregate"]["num_failed"] == 1
    assert res["aggregate"]["per_seed_means"] == [res["seeds"]["0"]["mean"]]


def test_checkpoint_without_config_uses_the_adapters_and_checks_the_architecture(trained, tmp_path):
    state = torch.load(trained[2]["dreamerv1"], map_location="cpu", weights_only=True)
    del state["config"]
    path = tmp_path / "no_config.pt"
    torch.save(state, path)
    adapter = DreamerV1Adapter(env_spec=ENV, config=TINY, device="cpu")
    adapter.load_checkpoint(str(path))  # the adapter's config has the same networks
    assert adapter.evaluate(num_episodes=1)["episode_returns"][0] >= 1
    adapter.close()
    with pytest.raises(ValueError, match="does not match this agent's architecture.*latent"):
        DreamerAdapter(env_spec=ENV, config=TINY, device="cpu").load_checkpoint(str(path))
    with pytest.raises(ValueError, match="num_units: checkpoint 32 vs agent 16"):
        DreamerV1Adapter(env_spec=ENV, config={**TINY, "num_units": 16},
                         device="cpu").load_checkpoint(str(path))


def test_bad_checkpoints_and_arguments(trained, tmp_path):
    path = trained[2]["dreamer"]
    with pytest.raises(ValueError, match="trained on env 'CartPole-v1', not on .*'Acrobot-v1'"):
        DreamerAdapter(env_spec="Acrobot-v1").load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"scale": torch.ones(1)}, other)
    with pytest.raises(ValueError, match="not a Dreamer checkpoint.*'scale'"):
        DreamerAdapter(env_spec=ENV).load_checkpoint(str(other))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or not a torch checkpoint"):
        DreamerAdapter(env_spec=ENV).load_checkpoint(str(corrupt))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        DreamerAdapter(env_spec=ENV).load_checkpoint(str(tmp_path / "missing.pt"))
    fresh = DreamerAdapter(env_spec=ENV, seed=1)  # builds nothing before load_checkpoint
    assert fresh._env is None and fresh._agent is None and fresh.config is None
    with pytest.raises(RuntimeError, match="call load_checkpoint"):
        fresh.evaluate()
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['episodes'\]; valid"):
        DreamerAdapter(env_spec=ENV, episodes=3)
    with pytest.raises(ValueError, match="runs DreamerV1 but its config has version 'v3'"):
        DreamerV1Adapter.make_config(ENV, config=DreamerConfig(version="v3"))
    assert DreamerV2Adapter.make_config(ENV, config={"seed": 4}).version == "v2"
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        DreamerAdapter.train(ENV, 0, str(tmp_path))
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer"):
        DreamerAdapter.train(ENV, 1, str(tmp_path), steps_per_epoch=0)
    assert not (tmp_path / "dreamer").exists()


def test_checkpoints_of_older_configs_load(trained, tmp_path, caplog):
    state = torch.load(trained[2]["dreamer"], map_location="cpu", weights_only=True)
    config = {k: v for k, v in state["config"].items() if k not in ("eval_interval", "eval_episodes")}
    state["config"] = {**config, "test_interval": 2500, "test_episodes": 3, "render": False,
                       "log_video_freq": -1, "max_videos_to_save": 2, "train": True}
    old = tmp_path / "old.pt"
    torch.save(state, old)
    adapter = DreamerAdapter(env_spec=ENV, seed=3, device="cpu")
    with caplog.at_level("WARNING"):
        adapter.load_checkpoint(str(old))
    assert (adapter.config.eval_interval, adapter.config.eval_episodes) == (2500, 3)
    assert "log_video_freq, max_videos_to_save, render, train" in caplog.text
    adapter.close()
