"""``distwm train --config quickstart``: the shipped preset loads from any directory, is what the
README promises (a small DreamerV3 on Gymnasium CartPole-v1 from state observations, 10k env
steps, train ratio 64, on a local Ray instance), and flags and ``--set`` override it."""

from __future__ import annotations

import pytest

from distwm.cli import main
from distwm.configs.dreamer_config import DreamerConfig
from distwm.configs.runtime_config import RunConfig


def _printed(capsys, *argv: str) -> RunConfig:
    assert main(["train", *argv, "--print-config"]) == 0
    out = capsys.readouterr().out
    return RunConfig.from_yaml(out)


def test_quickstart_is_listed_and_loads_from_any_directory(tmp_path, monkeypatch, capsys):
    from distwm.runtime.cli import list_presets

    assert "quickstart" in list_presets()
    monkeypatch.chdir(tmp_path)  # not the repository: the preset ships with the package
    run = _printed(capsys, "--config", "quickstart")
    assert run.model == "dreamer"
    agent = run.build_agent_config()
    assert isinstance(agent, DreamerConfig)
    resolved = agent.resolved()
    assert resolved.version == "v3"  # DreamerV3
    assert (agent.env, agent.env_backend, agent.obs_type) == ("CartPole-v1", "gym", "state")
    rt = run.runtime
    assert rt.total_steps == 10_000 and rt.address is None  # a local Ray instance
    assert rt.train_ratio is None and resolved.train_ratio == 64.0  # the agent's ratio: 64
    # "small": narrower than the smallest published size (XS: 256 units, 256 GRU units)
    assert resolved.num_units < 256 and resolved.deter_size < 256
    assert rt.workers == "auto" and rt.shards >= 1 and rt.eval_episodes > 0
    assert list(tmp_path.iterdir()) == []  # --print-config writes nothing


def test_flags_and_set_override_the_preset_in_order(capsys):
    run = _printed(capsys, "--config", "quickstart", "--steps", "500", "--seed", "3",
                   "--set", "batch_size=8", "--set", "runtime.shards=2", "--set", "runtime.total_steps=700")
    agent = run.build_agent_config()
    assert run.runtime.total_steps == 700  # --set comes after the flags
    assert (run.runtime.shards, agent.batch_size, agent.seed) == (2, 8, 3)
    assert agent.env == "CartPole-v1"  # the rest stays the preset's


RUN_YAML = "model: dreamer\nagent:\n  env: Acrobot-v1\n  env_backend: gym\n"


def test_a_config_file_path_is_read_instead_of_a_preset(tmp_path, capsys):
    path = tmp_path / "quickstart.yaml"
    path.write_text(RUN_YAML)
    assert _printed(capsys, "--config", str(path)).build_agent_config().env == "Acrobot-v1"


def test_a_config_file_without_a_yaml_suffix_is_read_too(tmp_path, capsys):
    path = tmp_path / "quickstart"  # a file of the preset's name: the file wins
    path.write_text(RUN_YAML)
    assert _printed(capsys, "--config", str(path)).build_agent_config().env == "Acrobot-v1"


def test_an_unknown_preset_names_the_ones_there_are(capsys):
    assert main(["train", "--config", "quickstrat", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "'quickstrat' is neither a file nor a preset" in err and "quickstart" in err


def test_the_quickstart_preset_builds_an_env_and_agent(monkeypatch, tmp_path):
    """Everything the driver checks before Ray: one env and one CPU agent of the preset."""
    from distwm.runtime.cli import resolve_config_path
    from distwm.runtime.setup import probe_run

    monkeypatch.chdir(tmp_path)
    spec = probe_run(RunConfig.from_yaml(resolve_config_path("quickstart")))
    obs, act = spec.observation_space, spec.action_space
    assert set(obs.spaces) == {"state"} and obs["state"].shape == (4,)  # CartPole's 4 numbers
    assert act.shape == (2,)  # its 2 actions, one-hot
    assert spec.data_spec.train_ratio == pytest.approx(64.0)
    assert [(s.batch_size, s.seq_len) for s in spec.data_spec.samples][0] == (16, 32)
