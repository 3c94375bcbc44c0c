"""DreamerAgent: construction without side effects, config inputs, and a tiny end-to-end run."""

from __future__ import annotations

import json
import os

import pytest
import torch

from distwm.configs.dreamer_config import DreamerConfig
from distwm.models.dreamer import DreamerAgent, get_available_memory

TINY = dict(env="CartPole-v1", env_backend="gym", action_repeat=1, model_size="tiny",
            batch_size=2, train_seq_len=8, imagine_horizon=3, seed_steps=100, train_ratio=4.0,
            test_interval=150, test_episodes=2, checkpoint_interval=200, log_interval=100)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_constructor_has_no_side_effects(tmp_path, monkeypatch):
    import distwm.models.dreamer.agent as agent_module

    monkeypatch.setattr(agent_module, "make_env", lambda *a, **k: pytest.fail("env built"))
    log_dir = tmp_path / "runs"
    agent = DreamerAgent(log_dir=str(log_dir), **TINY)
    assert not log_dir.exists() and agent.dreamer is None
    assert agent.config.env == "CartPole-v1" and agent.config.model_size == "tiny"


def test_config_inputs(tmp_path):
    path = tmp_path / "dreamer.yaml"
    DreamerConfig(version="v1", env="CartPole-v1").to_yaml(path)
    assert DreamerAgent(str(path)).config.version == "v1"
    assert DreamerAgent({"version": "v2"}, seed=3).config.seed == 3
    assert DreamerAgent(DreamerConfig(version="v1")).config.resolved().latent == "gaussian"
    assert DreamerAgent().config == DreamerConfig()
    with pytest.raises(ValueError, match="Did you mean 'batch_size'"):
        DreamerAgent(batch_sise=3)
    with pytest.raises(ValueError, match="DreamerConfig, a dict, a YAML path"):
        DreamerAgent(42)
    with pytest.raises(ValueError, match="does not exist"):
        DreamerAgent(str(tmp_path / "missing.yaml"))
    assert get_available_memory() > 0


def test_tiny_train_on_cartpole_end_to_end(tmp_path):
    agent = DreamerAgent(log_dir=str(tmp_path), exp_name="tiny", **TINY)
    summary = agent.train(total_steps=300)
    assert summary["env_steps"] >= 300
    assert summary["updates"] >= 40 and summary["nonfinite_updates"] == 0
    assert [step for step, _ in summary["eval_history"]] == [150, 300]
    assert all(ret >= 1 for _, ret in summary["eval_history"])
    assert agent.replay.steps >= 300 and agent.replay.episodes >= 1
    ckpt = tmp_path / "tiny" / "checkpoints" / "latest.pt"
    assert ckpt.is_file()
    lines = [json.loads(line) for line in open(tmp_path / "tiny" / "metrics.jsonl")]
    assert any("eval_return" in line for line in lines) and any("model_loss" in line for line in lines)
    result = agent.evaluate()
    assert len(result["returns"]) == 2 and result["env_steps"] == summary["env_steps"]

    # a new agent resumes from the checkpoint: the same networks, optimisers and counters
    trained = agent.dreamer
    saved = {name: t.clone() for name, t in _tensors(trained).items()}
    resumed = DreamerAgent(log_dir=str(tmp_path), exp_name="tiny2", checkpoint_path=str(ckpt), **TINY)
    assert resumed.evaluate()["env_steps"] == summary["env_steps"]
    core = resumed.dreamer
    assert core is not trained
    assert (core.updates, core.env_steps, core.nonfinite_updates) == (
        summary["updates"], summary["env_steps"], 0)
    restored = _tensors(core)
    assert sorted(restored) == sorted(saved)
    assert any(name.startswith("optim/") and name.endswith("/exp_avg") for name in saved)
    for name, value in saved.items():
        assert restored[name].dtype == value.dtype and torch.equal(restored[name], value), name
    for which in ("model", "actor", "value"):
        mine = getattr(core, f"{which}_optimizer").state_dict()["param_groups"]
        theirs = getattr(trained, f"{which}_optimizer").state_dict()["param_groups"]
        assert mine == theirs, which

    # and training continues from there: more env steps and updates, every network moves
    more = resumed.train(total_steps=summary["env_steps"] + 150)
    assert summary["env_steps"] + 150 <= more["env_steps"] < summary["env_steps"] + 160  # 150 more, not 450
    assert more["updates"] >= summary["updates"] + 20 and more["nonfinite_updates"] == 0
    after = _tensors(core)
    for prefix in ("world_model/", "behavior/"):
        changed = [n for n, v in saved.items() if n.startswith(prefix) and v.is_floating_point()
                   and not torch.equal(after[n], v)]
        assert changed, f"no {prefix} tensor changed after resuming"
    steps = [v for n, v in after.items() if n.startswith("optim/model/") and n.endswith("/step")]
    before = [v for n, v in saved.items() if n.startswith("optim/model/") and n.endswith("/step")]
    assert steps and all(a > b for a, b in zip(steps, before))  # Adam counts on, not from zero
    assert (tmp_path / "tiny2" / "checkpoints" / "latest.pt").is_file()


def _tensors(core) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the networks and every tensor of the optimiser states,
    by name (``world_model/<name>``, ``behavior/<name>``, ``optim/<which>/<param>/<key>``)."""
    out = {f"world_model/{k}": v for k, v in core.world_model.state_dict().items()}
    out.update({f"behavior/{k}": v for k, v in core.behavior.state_dict().items()})
    for which in ("model", "actor", "value"):
        state = getattr(core, f"{which}_optimizer").state_dict()["state"]
        for param, entries in state.items():
            for key, value in entries.items():
                out[f"optim/{which}/{param}/{key}"] = torch.as_tensor(value)
    return {k: v.detach().cpu() for k, v in out.items()}


def test_create_model_names(tmp_path, monkeypatch):
    import distwm

    monkeypatch.chdir(tmp_path)
    for name, version in (("dreamer", "v3"), ("dreamer-v1", "v1"), ("dreamerv2", "v2"),
                          ("dreamer_v3", "v3")):
        agent = distwm.create_model(name, env="CartPole-v1")
        assert isinstance(agent, DreamerAgent) and agent.config.version == version
    assert os.listdir(tmp_path) == []  # nothing written by construction


def test_single_process_pixel_training_logs_open_loop_predictions(tmp_path):
    """DreamerAgent.train writes the open-loop strip and video at every evaluation, as the
    runtime does (a square moving in 64x64 frames, through a registered env backend)."""
    import sys

    import imageio.v3 as iio

    from distwm.registry import deregister_env_backend, register_env_backend

    sys.path.insert(0, os.path.dirname(__file__))
    register_env_backend("square-test", "runtime_agent:square_backend")
    try:
        agent = DreamerAgent(env="square", env_backend="square-test", model_size="tiny",
                             cnn_depth=4, batch_size=2, train_seq_len=8, imagine_horizon=3,
                             train_ratio=4.0, device="cpu", seed_steps=50, eval_interval=100,
                             eval_episodes=1, checkpoint_interval=0, log_dir=str(tmp_path),
                             exp_name="px")
        agent.train(200)
    finally:
        deregister_env_backend("square-test")
    media = tmp_path / "px" / "media"
    assert sorted(p.name for p in media.glob("openloop_*.png")) == ["openloop_100.png", "openloop_200.png"]
    assert iio.imread(media / "openloop_200.png").shape[1] > 8 * 64
    rows = [json.loads(line) for line in open(tmp_path / "px" / "metrics.jsonl")]
    assert [r["step"] for r in rows if "openloop/image_mse" in r] == [100, 200]
