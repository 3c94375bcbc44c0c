"""DIAMOND on the Ray actor-learner runtime (local Ray instance, 2 workers, 2 shards) on an
Atari game with the Atari 100k preprocessing (32x32 frames): all three parts train, the
checkpoint restores, the report holds the open-loop and imagination media, and the benchmark
adapter evaluates the run's checkpoint."""

from __future__ import annotations

import numpy as np

import distwm


def test_diamond_trains_on_the_runtime(ray_session, tmp_path):
    from distwm.benchmarks import DiamondAdapter
    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.models.diamond.core import DiamondCore
    from distwm.runtime import run
    from distwm.runtime.checkpoints import CHECKPOINT_FILE
    from distwm.runtime.learner import latest_checkpoint, load_checkpoint

    config = DiamondCore.tiny_test_config(distwm.create_config("diamond", env="ALE/Pong-v5")).replace(
        obs_size=32, time_limit=60, actor_steps_first_epoch=9_996, training_steps_per_epoch=10, environment_steps_per_epoch=100)
    runtime = RuntimeConfig(workers=2, shards=2, steps=160, chunk_length=16, min_fill=64, capacity=4000,
                            eval_interval=0, eval_episodes=1, checkpoint_interval=10, learner_gpus=0,
                            run_dir=str(tmp_path / "run"), verbose=False, progress_seconds=2.0)
    result = run(config, runtime)
    assert result.env_steps >= 160 and result.updates > config.start_update("actor")
    state = load_checkpoint(latest_checkpoint(result.run_dir))  # torch.load(..., weights_only=True)
    assert state["updates"] == state["agent"]["updates"] == result.updates
    assert result.summary["final_eval"] is not None
    media = {p.name for p in (tmp_path / "run").rglob("*") if p.suffix in (".png", ".gif", ".mp4")}
    for name in ("openloop", "imagination"):
        assert any(name in m for m in media), (name, sorted(media))

    adapter = DiamondAdapter("ALE/Pong-v5", seed=3, config=config.to_dict(), max_episode_steps=20)
    adapter.load_checkpoint(str(latest_checkpoint(result.run_dir)) + "/" + CHECKPOINT_FILE)
    assert adapter.agent.updates == result.updates and adapter.agent.started("actor")
    episodes = adapter.evaluate(1)
    assert len(episodes["episode_returns"]) == 1 and 0 < episodes["episode_lengths"][0] <= 20
    frames = np.zeros((2, *config.get_frame_shape()), np.uint8)
    actions, _ = adapter.agent.act({"image": frames, "is_first": np.ones(2, bool)}, None, explore=False)
    assert actions.shape == (2, 6) and (actions.sum(1) == 1).all()
    adapter.close()
