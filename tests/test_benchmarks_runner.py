"""BenchmarkRunner / MultiAgentBenchmarkRunner with small real adapters: results format,
failures recorded with their cause (never a zero), files written only by run()."""

import json

import gymnasium as gym
import numpy as np
import pytest

from distwm.benchmarks import (
    AgentAdapter,
    BaseAdapter,
    BenchmarkError,
    BenchmarkRunner,
    MultiAgentBenchmarkRunner,
)


class ConstantAdapter(BaseAdapter):
    """Returns seed + episode index as returns; the checkpoint file must exist."""

    def load_checkpoint(self, path):
        with open(path) as f:
            self.offset = float(f.read())

    def evaluate(self, num_episodes=1, render=False):
        return {"episode_returns": [self.offset + self.seed + i for i in range(num_episodes)]}


class OtherAdapter(ConstantAdapter):
    name = "other"


class BrokenEvalAdapter(ConstantAdapter):
    def evaluate(self, num_episodes=1, render=False):
        if self.seed == 1:
            raise RuntimeError("simulator crashed")
        return super().evaluate(num_episodes, render)


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "ckpt.txt"
    path.write_text("100")
    return str(path)


def test_runner_results_format_and_files(tmp_path, ckpt):
    out = tmp_path / "out"
    runner = BenchmarkRunner(ConstantAdapter, out_dir=str(out))
    assert not out.exists()
    res = runner.run(env_spec={"game": "ALE/Pong-v5"}, seeds=[0, 2], num_episodes=3,
                     checkpoint=ckpt)
    assert res["agent"] == "constant" and res["env"] == "ALE/Pong-v5" and res["suite"] == "atari"
    assert res["seeds"]["0"]["episode_returns"] == [100.0, 101.0, 102.0]
    assert res["seeds"]["2"]["mean"] == pytest.approx(103.0)
    # Pong: RANDOM -20.7, HUMAN 14.6 -> (101 + 20.7) / 35.3
    assert res["seeds"]["0"]["normalized_mean"] == pytest.approx(121.7 / 35.3)
    agg = res["aggregate"]
    assert agg["per_seed_means"] == [101.0, 103.0] and agg["num_seeds"] == 2
    assert agg["mean"] == pytest.approx(102.0) and agg["num_failed"] == 0
    assert agg["normalized"]["mean"] == pytest.approx((122.7) / 35.3)
    for ext in ("json", "csv", "md", "tex"):
        assert (out / f"benchmark_results.{ext}").is_file()
    assert json.loads((out / "benchmark_results.json").read_text()) == res
    # the CSV holds the numbers, by hand: seed s returns 100 + s + (0, 1, 2)
    csv_values = _csv_values(out / "benchmark_results.csv")
    assert {agent for agent, *_ in csv_values} == {"constant"}
    get = {(seed, metric): value for (_, task, seed, metric), value in csv_values.items()
           if task == "ALE/Pong-v5"}
    assert get[("0", "mean")] == pytest.approx(101.0) and get[("2", "mean")] == pytest.approx(103.0)
    assert get[("0", "std")] == pytest.approx((2 / 3) ** 0.5) and get[("0", "num_episodes")] == 3
    assert get[("2", "normalized_mean")] == pytest.approx((103.0 + 20.7) / 35.3)
    assert (get[("all", "mean")], get[("all", "min")], get[("all", "max")]) == (102.0, 101.0, 103.0)
    assert get[("all", "num_seeds")] == 2 and get[("all", "num_failed")] == 0
    assert get[("all", "normalized_mean")] == pytest.approx(122.7 / 35.3)
    md = (out / "benchmark_results.md").read_text()
    assert "| constant | ALE/Pong-v5 | 0 | ok | 3 |" in md


def _csv_values(path) -> dict:
    """``{(agent, task, seed, metric): float value}`` of a results CSV."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"agent", "task", "seed", "metric", "value"}
    return {(r["agent"], r["task"], r["seed"], r["metric"]): float(r["value"]) for r in rows}


def test_failed_seed_recorded_with_cause_not_zero(tmp_path, ckpt):
    res = BenchmarkRunner(BrokenEvalAdapter, out_dir=str(tmp_path)).run(
        env_spec="walker-walk", seeds=[0, 1, 2], num_episodes=2, checkpoint=ckpt)
    failed = res["seeds"]["1"]
    assert failed["status"] == "failed" and failed["stage"] == "evaluate"
    assert failed["error"] == "RuntimeError: simulator crashed"
    assert "mean" not in failed
    assert res["aggregate"]["per_seed_means"] == [100.5, 102.5]
    assert res["aggregate"]["num_failed"] == 1
    assert res["failures"] == [{"seed": 1, "stage": "evaluate",
                                "error": "RuntimeError: simulator crashed"}]
    with pytest.raises(RuntimeError, match="simulator crashed"):
        BenchmarkRunner(BrokenEvalAdapter, out_dir=str(tmp_path)).run(
            env_spec="walker-walk", seeds=[1], checkpoint=ckpt, raise_on_error=True)


def test_every_seed_failing_raises_with_causes(tmp_path):
    runner = BenchmarkRunner(ConstantAdapter, out_dir=str(tmp_path / "o"))
    with pytest.raises(BenchmarkError, match="load_checkpoint.*FileNotFoundError.*nope.txt") as info:
        runner.run(env_spec="walker-walk", seeds=[0, 1], checkpoint=str(tmp_path / "nope.txt"))
    assert info.value.results["aggregate"]["num_seeds"] == 0
    saved = json.loads((tmp_path / "o" / "benchmark_results.json").read_text())
    assert saved["seeds"]["0"]["stage"] == "load_checkpoint"


def test_runner_argument_errors(tmp_path, ckpt):
    runner = BenchmarkRunner(ConstantAdapter, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="checkpoint is required"):
        runner.run(env_spec="walker-walk")
    with pytest.raises(ValueError, match="no checkpoint for seed 3"):
        runner.run(env_spec="walker-walk", seeds=[3], checkpoint={0: ckpt}, raise_on_error=True)

    class BadOutput(ConstantAdapter):
        def evaluate(self, num_episodes=1, render=False):
            return {"score": 1.0}

    with pytest.raises(BenchmarkError, match="without 'episode_returns'"):
        BenchmarkRunner(BadOutput, out_dir=str(tmp_path)).run(
            env_spec="walker-walk", seeds=[0], checkpoint=ckpt, write=False)


def test_multi_agent_runner(tmp_path, ckpt):
    runner = MultiAgentBenchmarkRunner([ConstantAdapter, OtherAdapter], out_dir=str(tmp_path))
    assert runner.names == ["constant", "other"]
    with pytest.raises(ValueError, match="no checkpoint for \\['other'\\]"):
        runner.run_all("walker-walk", checkpoints={"constant": ckpt})
    with pytest.raises(ValueError, match="train_epochs"):
        runner.run_all("walker-walk")
    with pytest.raises(NotImplementedError, match="cannot train"):
        runner.run_all("walker-walk", train_epochs=1)
    res = runner.run_all("walker-walk", seeds=[0, 1], num_episodes=1,
                         checkpoints={"constant": ckpt, "other": ckpt})
    assert set(res) == {"constant", "other"}
    assert res["other"]["aggregate"]["normalized"]["mean"] == pytest.approx(0.1005)
    combined = _csv_values(tmp_path / "combined_benchmark_results.csv")
    for agent in ("constant", "other"):  # both agents, seed s returning 100 + s
        assert combined[(agent, "walker-walk", "0", "mean")] == 100.0
        assert combined[(agent, "walker-walk", "1", "mean")] == 101.0
        assert combined[(agent, "walker-walk", "all", "mean")] == pytest.approx(100.5)
        assert combined[(agent, "walker-walk", "all", "normalized_mean")] == pytest.approx(0.1005)
    assert json.loads((tmp_path / "other" / "benchmark_results.json").read_text()) == res["other"]
    with pytest.raises(ValueError, match="unique"):
        MultiAgentBenchmarkRunner([ConstantAdapter, ConstantAdapter])


class CountingEnv(gym.Env):
    """Dict-observation env: reward 1 per step, episode of `length` steps (terminated)."""

    def __init__(self, length=4):
        self.length = length
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)})
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {"state": np.zeros(2, np.float32)}, {}

    def step(self, action):
        assert action.shape == (1,)
        self.t += 1
        return ({"state": np.full(2, self.t, np.float32)}, float(action[0]),
                self.t >= self.length, False, {})


class ScaleAgent:
    """Agent protocol: the action is the loaded 'scale' weight; counts is_first resets."""

    def __init__(self):
        import torch

        self.scale = torch.zeros(1)
        self.resets = 0

    def initial_state(self, n):
        return np.zeros(n)

    def act(self, obs, state, explore):
        assert obs["state"].shape == (1, 2)
        self.resets += int(obs["is_first"].sum())
        return np.full((1, 1), float(self.scale), np.float32), state + 1

    def load_state_dict(self, state):
        self.scale = state["scale"]


class ScaleAdapter(AgentAdapter):
    def make_env(self):
        return CountingEnv(length=self.kwargs.get("length", 4))

    def build_agent(self, env):
        return ScaleAgent()


def test_agent_adapter_runs_protocol_agent(tmp_path):
    import torch

    path = tmp_path / "agent.pt"
    torch.save({"scale": torch.tensor([0.5])}, path)
    adapter = ScaleAdapter(env_spec="counting", seed=3, length=6)
    adapter.load_checkpoint(str(path))
    out = adapter.evaluate(num_episodes=2)
    assert out["episode_returns"] == [3.0, 3.0] and out["episode_lengths"] == [6, 6]
    assert adapter.agent.resets == 2
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        adapter.load_checkpoint(str(tmp_path / "missing.pt"))
    res = BenchmarkRunner(ScaleAdapter, out_dir=str(tmp_path / "r")).run(
        env_spec="counting", seeds=[0, 1], num_episodes=1, checkpoint=str(path))
    assert res["suite"] is None and res["aggregate"]["per_seed_means"] == [2.0, 2.0]
    assert "normalized" not in res["aggregate"]


def test_an_adapter_missing_its_interface_cannot_be_built():
    class NoEvaluate(BaseAdapter):
        def load_checkpoint(self, path):
            pass

    with pytest.raises(TypeError, match="evaluate"):
        NoEvaluate()
    with pytest.raises(TypeError, match="build_agent"):
        type("NoBuild", (AgentAdapter,), {})()


def test_training_is_refused_before_any_adapter_trains(tmp_path):
    from distwm.benchmarks import DreamerAdapter, TrainingUnsupported

    trained = []

    class Trains(ConstantAdapter):
        @classmethod
        def train(cls, env_spec, epochs, out_dir, **kwargs):
            trained.append(cls)
            return "unused"

    assert Trains.can_train() and DreamerAdapter.can_train() and not ConstantAdapter.can_train()
    runner = MultiAgentBenchmarkRunner([Trains, OtherAdapter], out_dir=str(tmp_path))
    with pytest.raises(TrainingUnsupported, match=r"OtherAdapter cannot train: pass checkpoints for \['other'\]"):
        runner.run_all("walker-walk", train_epochs=1)
    assert trained == []
    with pytest.raises(TrainingUnsupported, match="ConstantAdapter cannot train"):
        ConstantAdapter.train("walker-walk", 1, str(tmp_path))
