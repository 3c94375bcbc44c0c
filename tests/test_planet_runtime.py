"""PlaNet on the Ray actor-learner runtime (local Ray instance, 2 workers, 2 shards)."""

from __future__ import annotations

import numpy as np

from planet_testing import tiny_planet_config


def test_planet_trains_on_the_runtime(ray_session, tmp_path):
    from distwm.configs.runtime_config import RuntimeConfig
    from distwm.runtime import run
    from distwm.models.planet import PlanetCore
    from distwm.runtime.learner import latest_checkpoint, load_checkpoint

    config = tiny_planet_config(env="Pendulum-v1", time_limit=100, action_repeat=2, train_ratio=16.0)
    runtime = RuntimeConfig(workers=2, shards=2, steps=300, chunk_length=16, min_fill=64, capacity=4000,
                            eval_interval=0, eval_episodes=1, checkpoint_interval=10,
                            learner_gpus=0, run_dir=str(tmp_path / "run"), verbose=False,
                            progress_seconds=2.0)
    result = run(config, runtime)
    assert result.env_steps >= 300
    assert result.updates > 0
    checkpoint = latest_checkpoint(result.run_dir)
    assert checkpoint is not None
    state = load_checkpoint(checkpoint)  # torch.load(..., weights_only=True)
    assert state["updates"] == state["agent"]["updates"] == result.updates
    assert result.summary["final_eval"] is not None
    print({k: result.summary[k] for k in ("env_steps", "updates", "replay_ratio", "final_eval")})

    # the trained agent restores from the checkpoint and plans
    import gymnasium as gym

    spaces = (gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)}),
              gym.spaces.Box(-1.0, 1.0, (1,), np.float32))
    agent = PlanetCore.from_config(config, *spaces)
    agent.load_state_dict(state["agent"])
    action, _ = agent.act({"state": np.zeros((2, 3), np.float32), "is_first": np.ones(2, bool)},
                          agent.initial_state(2), explore=False)
    assert action.shape == (2, 1) and np.abs(action).max() <= 1.0
