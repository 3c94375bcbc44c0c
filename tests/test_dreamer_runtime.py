"""The Ray runtime drives Dreamer unchanged through the agent protocol (tiny, CartPole-v1)."""

from __future__ import annotations

import pytest

from distwm.configs.dreamer_config import DreamerConfig
from runtime_agent import check_final_eval

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
    final = summary["final_eval"]
    check_final_eval(final, episodes=1, max_length=500)
    assert final["returns"] == [float(n) for n in final["lengths"]]  # CartPole: 1 per step


def test_pixel_run_reports_open_loop_predictions(ray_session, tmp_path):
    """With pixel observations the report and TensorBoard get the open-loop strip and video
    (at each checkpoint and at the end)."""
    import json
    import os

    import imageio.v3 as iio

    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.runtime import run

    agent = DreamerConfig(env="square", model_size="tiny", cnn_depth=4, batch_size=2,
                          train_seq_len=8, imagine_horizon=3, train_ratio=4.0, device="cpu")
    runtime = RuntimeConfig(workers=1, envs_per_worker=1, shards=1, steps=256, chunk_length=16,
                            capacity=4096, min_fill=64, checkpoint_interval=64, eval_episodes=0,
                            progress_seconds=1.0, collect_seconds=0.3, train_seconds=0.5,
                            learner_gpus=0, env_factory="runtime_agent:make_square_env",
                            run_dir=str(tmp_path / "pixels"), verbose=False)
    result = run(agent, runtime)
    media = result.summary["media"]
    strip = iio.imread(media["images"]["openloop"])
    # rows: truth, model, error per sequence (2 sequences), 64x64 frames (+ borders), 8 frames
    assert strip.ndim == 3 and strip.shape[2] == 3 and strip.shape[0] > 6 * 64 and strip.shape[1] > 8 * 64
    assert os.path.isfile(media["videos"]["openloop"])
    assert "openloop/image_mse" in media["scalars"]
    assert "Open-loop predictions" in result.report
    assert os.path.relpath(media["images"]["openloop"], result.run_dir) in result.report
    rows = [json.loads(line) for line in open(os.path.join(result.run_dir, "metrics.jsonl"))]
    # logged at the checkpoints during the run as well as at the end
    assert sum("openloop/image_mse" in row for row in rows) >= 2
