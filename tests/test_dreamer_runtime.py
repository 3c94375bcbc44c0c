"""The Ray runtime drives Dreamer unchanged through the agent protocol (tiny, CartPole-v1)."""

from __future__ import annotations

import pytest

from distwm.configs.dreamer_config import DreamerConfig

pytestmark = pytest.mark.ray


def test_runtime_trains_a_tiny_dreamer(ray_session, tmp_path):
    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.runtime import run

    agent = DreamerConfig(env="CartPole-v1", env_backend="gym", action_repeat=1, model_size="tiny",
                          batch_size=2, train_seq_len=8, imagine_horizon=3, train_ratio=4.0)
    runtime = RuntimeConfig(workers=1, envs_per_worker=2, shards=1, steps=384, chunk_length=16,
                            capacity=4096, min_fill=64, broadcast_interval=1,
                            checkpoint_interval=20, eval_interval=0, eval_episodes=1,
                            progress_seconds=1.0, collect_seconds=0.3, train_seconds=0.5,
                            learner_gpus=0, run_dir=str(tmp_path / "run"), verbose=False)
    result = run(agent, runtime)
    summary = result.summary
    assert summary["env_steps"] >= 384 and summary["updates"] > 0
    assert min(summary["worker_versions"].values()) > 0  # the workers acted with learner weights
    assert summary["final_eval"] is not None
