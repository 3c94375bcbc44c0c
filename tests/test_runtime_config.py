"""RuntimeConfig/RunConfig, `distwm train` argument handling, and the checks that fail a run
before any actor (or Ray itself) starts."""

from __future__ import annotations

import argparse

import pytest

from distwm.configs.runtime_config import RunConfig, RuntimeConfig
from distwm.runtime import cli, placement
from runtime_agent import TinyAgentConfig

TINY = "runtime_agent:TinyAgentConfig"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="distwm")
    cli.add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


@pytest.mark.parametrize("field,value,message", [
    ("workers", 0, "runtime.workers must be >= 1 or 'auto'"),
    ("shards", 0, "runtime.shards must be > 0"),
    ("min_fill", -1, "runtime.min_fill must be >= 0"),
    ("train_ratio", 0.0, "runtime.train_ratio must be > 0"),
    ("env_factory", "no_colon", "package.module:function"),
])
def test_runtime_validate_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        RuntimeConfig().replace(**{field: value}).validate()


def test_runtime_config_rejects_unknown_and_mistyped_fields():
    with pytest.raises(ValueError, match="Did you mean 'shards'"):
        RuntimeConfig.from_dict({"shard": 2})
    with pytest.raises(ValueError, match="workers"):
        RuntimeConfig.from_dict({"workers": "many"})
    assert RuntimeConfig.from_dict({"workers": "auto"}).workers == "auto"


def test_run_config_round_trip_and_agent_config(tmp_path):
    run = RunConfig.from_agent_config(TinyAgentConfig(batch_size=3), RuntimeConfig(shards=2))
    assert run.model == TINY
    path = tmp_path / "run.yaml"
    run.to_yaml(path)
    loaded = RunConfig.from_yaml(path)
    assert loaded == run
    agent = loaded.build_agent_config()
    assert isinstance(agent, TinyAgentConfig) and agent.batch_size == 3


def test_overrides_address_agent_and_runtime_fields():
    run = RunConfig(model=TINY)
    run = run.apply_override("runtime.shards=3").apply_override("batch_size=8")
    run = run.apply_override("agent.lr=0.5")
    assert run.runtime.shards == 3 and run.agent == {"batch_size": 8, "lr": 0.5}
    with pytest.raises(ValueError, match="runtime field: use --set runtime.chunk_length"):
        run.apply_override("chunk_length=8")
    with pytest.raises(ValueError, match="Did you mean 'batch_size'"):
        run.apply_override("batch_sise=8")
    with pytest.raises(ValueError, match="Unknown config field 'runtime.bogus'|'bogus'"):
        run.apply_override("runtime.bogus=1")
    with pytest.raises(ValueError, match="expected key=value"):
        run.apply_override("shards")


def test_fields_checked_together_may_be_set_in_any_order():
    """``image_size=10`` alone fails IRIS's check that the actor-critic's 4 max-pools divide
    it; with ``actor_critic_channels=[32]`` after it, the run is valid: only the final
    ``validate()`` judges checks across fields, while an unknown field or a value of the wrong
    type still fails at its own ``--set``."""
    run = RunConfig(model="iris").apply_override("image_size=10").apply_override("tokens_per_frame=25")
    with pytest.raises(ValueError, match=r"image_size \(10\) must be a multiple of 16"):
        run.validate()
    agent = run.apply_override("actor_critic_channels=[32]").validate().build_agent_config()
    assert (agent.image_size, agent.tokens_per_frame, agent.actor_critic_channels) == (10, 25, [32])
    with pytest.raises(ValueError, match="Did you mean 'image_size'"):
        RunConfig(model="iris").apply_override("image_sise=10")
    with pytest.raises(ValueError, match="'learning_rate': expected a float, got 'fast'"):
        RunConfig(model="iris").apply_override("learning_rate=fast")


def test_cli_flags_config_file_and_set_precedence(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    RunConfig(model=TINY, agent={"lr": 0.2}, runtime=RuntimeConfig(shards=4, steps=10)).to_yaml(path)
    args = parse("--config", str(path), "--workers", "3", "--envs-per-worker", "2", "--shards", "2",
                 "--train-ratio", "64", "--steps", "500", "--env", "sign", "--seed", "4",
                 "--set", "batch_size=2", "--set", "runtime.steps=700", "--print-config")
    assert cli.cmd_train(args) == 0
    run = RunConfig.from_yaml(capsys.readouterr().out)
    assert run.model == TINY
    assert run.agent == {"lr": 0.2, "env": "sign", "seed": 4, "batch_size": 2}
    rt = run.runtime
    assert (rt.workers, rt.envs_per_worker, rt.shards, rt.train_ratio, rt.total_steps) == (3, 2, 2, 64.0, 700)


def test_cli_errors_are_clear():
    with pytest.raises(ValueError, match="give a MODEL"):
        cli.build_run_config(parse())
    with pytest.raises(ValueError, match="runtime.envs_per_worker must be > 0"):
        cli.build_run_config(parse(TINY, "--envs-per-worker", "0"))
    with pytest.raises(SystemExit):
        parse(TINY, "--workers", "zero")
    with pytest.raises(ValueError, match="not a distwm run directory"):
        cli.build_run_config(parse("--resume", "/nonexistent/run"))


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if anything tries to connect to Ray."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the config was checked")

    monkeypatch.setattr(placement, "connect", refuse)


@pytest.mark.parametrize("runtime,message", [
    (dict(workers=1, envs_per_worker=1, shards=2), "1 env streams cannot feed runtime.shards=2"),
    (dict(workers=2, capacity=64, chunk_length=16), "raise buffer_size to"),
    (dict(workers=1, env_factory="runtime_agent:no_such_factory"), "no attribute 'no_such_factory'"),
])
def test_run_fails_before_any_actor_starts(tmp_path, no_ray, runtime, message):
    from distwm.runtime import run

    rt = RuntimeConfig(**{"env_factory": "runtime_agent:make_env", "run_dir": str(tmp_path / "r"),
                          **runtime})
    with pytest.raises((ValueError, ImportError), match=message):
        run(TinyAgentConfig(), rt)
    assert not (tmp_path / "r").exists()


def test_plan_resolves_auto_workers_and_checks_resources():
    rt = RuntimeConfig(workers="auto", shards=1, learner_cpus=1, worker_cpus=1, eval_episodes=0)
    assert placement.plan_actors(rt, cluster_cpus=8, cluster_gpus=0).workers == 7
    assert placement.plan_actors(rt, cluster_cpus=1, cluster_gpus=0).workers == 1
    plan = placement.plan_actors(rt, cluster_cpus=8, cluster_gpus=2)
    assert plan.learner_gpus == 1 and plan.learner_device == "cuda" and plan.bundles[0]["GPU"] == 1
    assert placement.plan_actors(rt, 8, 2, want_gpu=False).learner_device == "cpu"
    plan = placement.plan_actors(rt.replace(workers=4), cluster_cpus=2, cluster_gpus=0)
    with pytest.raises(ValueError, match="needs 5 CPUs .* cluster has 2 CPUs"):
        placement.check_fits(plan, 2, 0)
