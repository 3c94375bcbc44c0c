"""IRIS on the Ray actor-learner runtime (local Ray instance, 2 workers, 2 shards) on an Atari
game with the Atari 100k preprocessing: all three parts train, the checkpoint restores, and
the report holds the reconstruction, open-loop and imagination media."""

from __future__ import annotations

import numpy as np

import distwm


def _tiny_iris(**overrides):
    from distwm.models.iris.core import IRISCore

    config = IRISCore.tiny_test_config(distwm.create_config("iris"))
    return config.replace(**{"time_limit": 60, "tokenizer_start_epochs": 0, "world_model_start_epochs": 0,
                             "actor_critic_start_epochs": 1, "steps_per_epoch": 50, "updates_per_epoch": 10,
                             **overrides})


def test_iris_trains_on_the_runtime(ray_session, tmp_path):
    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.models.iris.core import IRISCore
    from distwm.runtime import run
    from distwm.runtime.learner import latest_checkpoint, load_checkpoint

    config = _tiny_iris(env="ALE/Pong-v5")
    runtime = RuntimeConfig(workers=2, shards=2, steps=160, chunk_length=16, min_fill=64, capacity=4000,
                            eval_interval=0, eval_episodes=1, checkpoint_interval=10, learner_gpus=0,
                            run_dir=str(tmp_path / "run"), verbose=False, progress_seconds=2.0)
    result = run(config, runtime)
    assert result.env_steps >= runtime.total_steps and result.updates > config.start_update("actor_critic")
    state = load_checkpoint(latest_checkpoint(result.run_dir))  # torch.load(..., weights_only=True)
    assert state["updates"] == state["agent"]["updates"] == result.updates
    assert result.summary["final_eval"] is not None
    media = {p.name for p in (tmp_path / "run").rglob("*") if p.suffix in (".png", ".gif", ".mp4")}
    for name in ("reconstruction", "openloop", "imagination"):
        assert any(name in m for m in media), (name, sorted(media))

    import gymnasium as gym

    from distwm.envs.wrappers import OneHotBox

    obs_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)})
    agent = IRISCore.from_config(config, obs_space, OneHotBox(6))
    agent.load_state_dict(state["agent"])
    assert agent.started("actor_critic")
    actions, _ = agent.act({"image": np.zeros((2, 3, 64, 64), np.uint8), "is_first": np.ones(2, bool)},
                           agent.initial_state(2), explore=False)
    assert actions.shape == (2, 6) and (actions.sum(1) == 1).all()

    # the benchmark adapter evaluates the run's checkpoint on IRIS's evaluation envs
    from distwm.benchmarks import IRISAdapter

    adapter = IRISAdapter("ALE/Pong-v5", seed=3, config=config.to_dict(), max_episode_steps=20)
    from distwm.runtime.checkpoints import CHECKPOINT_FILE

    adapter.load_checkpoint(str(latest_checkpoint(result.run_dir)) + "/" + CHECKPOINT_FILE)
    assert adapter.agent.updates == result.updates
    episodes = adapter.evaluate(1)
    assert len(episodes["episode_returns"]) == 1 and 0 < episodes["episode_lengths"][0] <= 20
    adapter.close()
