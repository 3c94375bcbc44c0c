"""Named samples: a DataSpec with frames (B x 1) and sequences (B x 20), as IRIS needs, served
by the single-process loop and by the runtime's shards and learner."""

from __future__ import annotations

import math

import pytest

from distwm.agent import DataSpec, SampleSpec
from runtime_agent import SignEnv, TwoSampleAgent, TwoSampleAgentConfig


def test_one_sample_spec_keeps_its_shortcuts():
    spec = DataSpec(16, 64, 512.0)
    assert spec.names == ("sequences",)
    assert (spec.batch_size, spec.seq_len, spec.steps_per_update) == (16, 64, 1024)
    assert spec.updates_per_env_step == pytest.approx(0.5)
    assert all(spec.due(k) == ("sequences",) for k in range(5))


def test_shares_set_how_often_each_sample_is_drawn():
    # frames: 8 x 1 with a tenth of the budget; sequences: 2 x 20 with the rest
    spec = DataSpec(train_ratio=10.0, samples=[SampleSpec("frames", 8, 1, share=0.1),
                                               SampleSpec("sequences", 2, 20, share=0.9)])
    # per replayed step: frames 0.1 / 8 = 0.0125 draws, sequences 0.9 / 40 = 0.0225 draws
    assert spec.frequency("sequences") == 1.0
    assert spec.frequency("frames") == pytest.approx(0.0125 / 0.0225)
    due = [spec.due(k) for k in range(900)]
    frames = sum("frames" in d for d in due)
    assert all("sequences" in d for d in due)
    assert frames == pytest.approx(900 * 0.0125 / 0.0225, abs=1)
    # the replayed steps split as the shares say
    steps = frames * 8 + 900 * 40
    assert frames * 8 / steps == pytest.approx(0.1, abs=0.002)
    assert spec.steps_per_update == pytest.approx(40 + 8 * 0.0125 / 0.0225)


def test_bad_specs_name_the_problem():
    with pytest.raises(ValueError, match="unique"):
        DataSpec(train_ratio=1.0, samples=[SampleSpec("a", 1, 1), SampleSpec("a", 2, 2)])
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        SampleSpec("frames", 4, 0)
    with pytest.raises(ValueError, match="has 2 samples"):
        DataSpec(train_ratio=1.0, samples=[SampleSpec("a", 1, 1), SampleSpec("b", 2, 2)]).batch_size
    with pytest.raises(ValueError, match="unknown sample 'c'"):
        DataSpec(4, 4, 1.0).sample("c")


def test_the_single_process_loop_trains_a_two_sample_agent():
    from distwm.loop.adapters import RunnerCollector, StepReplay
    from distwm.loop.train_loop import TrainLoop
    from distwm.memory.dreamer_memory import ReplayBuffer

    cfg = TwoSampleAgentConfig(seed=1, train_ratio=8.0)
    envs = [SignEnv(seed=i) for i in range(2)]
    agent = TwoSampleAgent.from_config(cfg, envs[0].observation_space, envs[0].action_space)
    buffer = ReplayBuffer(4096, {"state": (4,)}, 2, 20, 2, num_envs=2, seed=0)
    loop = TrainLoop(agent, RunnerCollector(envs, agent, seed=1), StepReplay(buffer),
                     total_steps=600, prefill_steps=100, progress=False)
    result = loop.run()
    spec = agent.data_spec()
    assert result.env_steps >= 600 and result.updates > 20
    assert agent.counts["sequences"] == result.updates
    assert agent.counts["frames"] == sum("frames" in spec.due(k) for k in range(result.updates))
    assert 0 < agent.counts["frames"] < agent.counts["sequences"]
    # replayed steps follow the ratio from the first update on (within one update)
    trained = result.inserted - loop.trained_from
    assert abs(result.replayed - 8.0 * trained) <= spec.steps_per_update + 8 + 40
    assert result.metrics["seq_violations"] == 0.0


@pytest.mark.ray
def test_the_runtime_trains_a_two_sample_agent(ray_session, tmp_path):
    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.runtime import run

    rt = RuntimeConfig(workers=2, envs_per_worker=1, shards=2, steps=800, chunk_length=16,
                       capacity=4096, train_ratio=8.0, min_fill=64, broadcast_interval=5,
                       checkpoint_interval=400, eval_interval=0, eval_episodes=1,
                       progress_seconds=1.0, collect_seconds=0.3, train_seconds=0.5,
                       env_factory="runtime_agent:make_env", run_dir=str(tmp_path / "two"),
                       verbose=False)
    result = run(TwoSampleAgentConfig(seed=2), rt)
    s = result.summary
    assert [x["name"] for x in s["samples"]] == ["frames", "sequences"]
    assert s["updates"] > 10
    # the agent raised on any wrong shape or wrong set of samples; its counts are in the
    # final checkpoint
    from distwm.runtime.learner import load_checkpoint

    counts = load_checkpoint(s["checkpoint"])["agent"]["counts"]
    assert counts["sequences"] == s["updates"]
    spec = TwoSampleAgent(TwoSampleAgentConfig(), 4, 2).data_spec()
    want_frames = sum("frames" in spec.due(k) for k in range(s["updates"]))
    assert counts["frames"] == want_frames
    assert s["metric_max"]["seq_violations"] == 0.0
    # the shards' sampled steps are the two samples' steps together
    sampled = sum(x["sampled"] for x in s["shard_stats"])
    assert sampled >= s["updates"] * 40 + want_frames * 8
    assert math.isclose(s["replay_ratio"], 8.0, rel_tol=0.15)


def test_cadence_fires_once_per_period_reached_and_never_when_off():
    from distwm.loop.schedule import Cadence, UpdateBudget

    c = Cadence(100)
    assert [s for s in (50, 99, 100, 150, 420, 450, 500) if c.due(s)] == [100, 420, 500]
    off = Cadence(0)
    off.next = 200.0  # a resumed schedule with evaluation turned off
    assert not any(off.due(s) for s in (0, 200, 10 ** 9))
    budget = UpdateBudget(train_ratio=64, steps_per_update=512, min_steps=1000)
    assert budget.owed_updates(1000, 0) == 0
    assert budget.owed_updates(1100, 0) == 12  # 64 * 100 / 512 = 12.5
    assert budget.owed_updates(1100, 12 * 512) == 0
    assert budget.ratio(1100, 6400) == 64.0
