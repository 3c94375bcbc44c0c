"""PlanetCore (the agent protocol), PlanetEnv, RolloutGenerator, Planet and train_rssm end to end."""

from __future__ import annotations

import io
import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from distwm.agent import Agent, DataSpec, import_object
from distwm.configs.planet_config import PlanetConfig
from distwm.controller.rollout_generator import RolloutGenerator
from distwm.models.planet import Planet, PlanetCore, make_scheduler
from distwm.models.planet.env import PlanetEnv
from planet_testing import tiny_planet_config, toy_memory

STATE_SPACE = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)})
IMAGE_SPACE = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
                               "state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)})
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _batch(b=3, t=6, image=False):
    rng = np.random.default_rng(0)
    batch = {"action": rng.uniform(-1, 1, (b, t, 2)).astype(np.float32),
             "reward": rng.normal(size=(b, t)).astype(np.float32),
             "is_first": np.zeros((b, t), bool), "is_terminal": np.zeros((b, t), bool),
             "is_last": np.zeros((b, t), bool)}
    batch["is_first"][:, 0] = True
    batch["is_first"][0, 3] = True
    if image:
        batch["image"] = rng.integers(0, 256, (b, t, 3, 64, 64), dtype=np.uint8)
    else:
        batch["state"] = rng.normal(size=(b, t, 3)).astype(np.float32)
    return batch


def test_agent_class_implements_the_protocol():
    config = tiny_planet_config()
    agent_cls = import_object(PlanetConfig.AGENT_CLASS)
    agent = agent_cls.from_config(config, STATE_SPACE, ACTION_SPACE, device="cpu")
    assert isinstance(agent, Agent) and agent.obs_key == "state"
    assert agent.data_spec() == DataSpec(4, 8, 32.0)


@pytest.mark.parametrize("space", [STATE_SPACE, IMAGE_SPACE], ids=["state", "image"])
def test_act_plans_within_bounds_and_resets_at_is_first(space):
    agent = PlanetCore.from_config(tiny_planet_config(), space, ACTION_SPACE)
    image = "image" in space.spaces
    assert agent.obs_key == ("image" if image else "state")
    obs = {k: np.stack([s.sample() for _ in range(3)]) for k, s in space.spaces.items()}
    obs["is_first"] = np.array([True, True, True])
    state = agent.initial_state(3)
    action, state = agent.act(obs, state, explore=True)
    assert action.shape == (3, 2) and action.dtype == np.float32 and np.abs(action).max() <= 1.0
    assert state["h"].shape == (3, 16)
    # after a reset the filter ignores what came before: identical obs -> identical h
    torch.manual_seed(0)
    _, after_reset = agent.act(obs, state, explore=False)
    torch.manual_seed(0)
    _, fresh = agent.act(obs, agent.initial_state(3), explore=False)
    torch.testing.assert_close(after_reset["h"], fresh["h"])
    obs["is_first"] = np.array([False, False, False])
    _, continued = agent.act(obs, after_reset, explore=False)
    assert not torch.allclose(continued["h"], fresh["h"])


def test_discrete_actions_are_one_hot():
    env = gym.make("CartPole-v1")
    from distwm.envs.wrappers import standardize_actions

    space = standardize_actions(env).action_space
    agent = PlanetCore.from_config(tiny_planet_config(), STATE_SPACE, space)
    action, _ = agent.act({"state": np.zeros((4, 3), np.float32), "is_first": np.ones(4, bool)},
                          agent.initial_state(4), explore=True)
    assert action.shape == (4, 2) and set(np.unique(action)) <= {0.0, 1.0}
    np.testing.assert_array_equal(action.sum(-1), 1.0)


@pytest.mark.parametrize("image", [False, True], ids=["state", "image"])
def test_update_learns_and_round_trips_through_weights_only_checkpoints(image):
    torch.manual_seed(0)
    space = IMAGE_SPACE if image else STATE_SPACE
    agent = PlanetCore.from_config(tiny_planet_config(), space, ACTION_SPACE)
    batch = _batch(image=image)
    before = agent.get_weights()
    metrics = agent.update({"sequences": batch})
    for key in ("loss", "obs_loss", "reward_loss", "kl_loss", "grad_norm"):
        assert np.isfinite(metrics[key]), key
    assert agent.updates == 1
    weights = agent.get_weights()
    assert all(v.device.type == "cpu" for v in weights.values())
    assert any(not torch.equal(weights[k], before[k]) for k in weights)

    other = PlanetCore.from_config(tiny_planet_config(), space, ACTION_SPACE)
    other.set_weights(weights)
    assert all(torch.equal(other.get_weights()[k], weights[k]) for k in weights)

    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    restored = PlanetCore.from_config(tiny_planet_config(), space, ACTION_SPACE)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.updates == 1
    assert restored.optimizer.state_dict()["state"].keys() == agent.optimizer.state_dict()["state"].keys()
    with pytest.raises(ValueError, match="missing"):
        restored.load_state_dict({"rssm": {}})


def test_update_refuses_a_batch_without_its_observation():
    agent = PlanetCore.from_config(tiny_planet_config(), STATE_SPACE, ACTION_SPACE)
    batch = _batch()
    del batch["state"]
    with pytest.raises(ValueError, match="no 'state'"):
        agent.update({"sequences": batch})


def test_planet_env_and_rollout_generator_on_a_gym_env():
    env = PlanetEnv(gym.make("Pendulum-v1", max_episode_steps=12), bit_depth=5)
    assert env.observation_size == (3,) and env.action_size == 1 and not env.discrete
    assert env.max_episode_steps == 12
    generator = RolloutGenerator(env, "cpu")
    episodes = generator.rollout_n(2, random_policy=True)
    assert [e.size for e in episodes] == [12, 12] and episodes[0].x.shape == (13, 3)
    assert np.abs(episodes[0].u).max() <= 2.0  # Pendulum's own bounds
    with pytest.raises(ValueError, match="needs a policy"):
        generator.rollout_once()


def test_planet_trains_evaluates_and_checkpoints(tmp_path):
    config = tiny_planet_config(env="Pendulum-v1", time_limit=40, action_repeat=2, seed_episodes=2,
                                log_dir=str(tmp_path), exp_name="planet")
    planet = Planet(config, headless=True)
    assert planet._env is None  # nothing built yet
    history = planet.train(epochs=2, steps_per_epoch=3, batch_size=4, H=8, save_every=1,
                           scheduler_type="cosine")
    out = tmp_path / "planet"
    assert len(history) == 2 and len(planet.memory) == 4 and planet.memory.size == 80
    assert {"loss", "lr", "train_return", "eval_return", "eval_reward_mse"} <= set(history[-1])
    # the open-loop prediction errors of a replayed batch come with every evaluation
    assert all(any(k.startswith("openloop/") for k in row) for row in history)
    assert history[1]["lr"] < config.learning_rate
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    checkpoint = out / "checkpoint_00002.pt"
    assert checkpoint.is_file()
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 2 and state["agent"]["updates"] == 6

    again = Planet(config, headless=True)
    again.load_checkpoint(str(checkpoint))
    assert again.epoch == 2
    assert all(torch.equal(again.rssm.state_dict()[k], v) for k, v in planet.rssm.state_dict().items())
    with pytest.raises(ValueError, match="state_size=16 but this Planet has state_size=32"):
        Planet(config.replace(state_size=32)).load_checkpoint(str(checkpoint))


def test_planet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown policy_cfg key"):
        Planet("Pendulum-v1", policy_cfg={"horizon": 3})
    with pytest.raises(ValueError, match="Unknown scheduler_type 'linear'"):
        make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), "linear", None, 10)
    with pytest.raises(ValueError, match="Bad scheduler_kwargs"):
        make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), "step", {"size": 1}, 10)
    with pytest.raises(ValueError, match="top_candidates \\(20\\) cannot exceed num_candidates \\(10\\)"):
        PlanetCore.from_config(tiny_planet_config(num_candidates=10, top_candidates=20), STATE_SPACE, ACTION_SPACE)
    with pytest.raises(ValueError, match="image_size must be 64"):
        PlanetConfig(obs_type="pixels", image_size=32)


@pytest.mark.parametrize("model_kind", ["planet", "modular"])
def test_train_rssm_phase_and_evaluation(tmp_path, model_kind):
    from distwm.models.modular_rssm import create_modular_rssm
    from distwm.models.planet import RecurrentStateSpaceModel
    from distwm.training.train_rssm import evaluate, train_rssm

    torch.manual_seed(0)
    if model_kind == "planet":
        model = RecurrentStateSpaceModel(2, 16, 4, 16, 16, obs_shape=(4,))
    else:
        model = create_modular_rssm("mlp", "mlp", "lstm", obs_shape=(4,), action_size=2, stoch_size=4,
                                    deter_size=16, embed_size=16, hidden_size=16, hidden_sizes=[16])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    memory = toy_memory()
    first = train_rssm(memory, model, optimizer, steps=3, batch_size=4, seq_len=8, free_nats=0.0)
    later = train_rssm(memory, model, optimizer, steps=40, batch_size=8, seq_len=8, free_nats=0.0)
    assert {"loss", "obs_loss", "kl_loss", "reward_loss"} <= set(later)
    assert later["loss"] < first["loss"]
    result = evaluate(memory, model, str(tmp_path), eps=3, seq_len=8)
    assert os.path.isfile(result["image"]) and result["image"].endswith("eval_3.png")
    assert np.isfinite(result["prior_mse"]) and np.isfinite(result["posterior_mse"])


def test_save_frames_writes_a_target_prior_posterior_grid(tmp_path):
    import imageio.v2 as iio

    from distwm.training.train_rssm import save_frames

    target = torch.rand(7, 3, 16, 16) - 0.5
    path = save_frames(target, torch.zeros(7, 3, 8, 8), target.numpy(), str(tmp_path / "grid"), n_rows=4)
    grid = iio.imread(path)
    assert grid.shape == (4 * 16, 2 * 3 * 16, 3)  # 4 rows, 2 columns of (target|prior|posterior)
    np.testing.assert_array_equal(grid[:16, :16], grid[:16, 32:48])  # posterior == target
    with pytest.raises(ValueError, match="pred_prior has 6 frames"):
        save_frames(target, target[:6], target, str(tmp_path / "bad"))


def test_image_rssm_evaluation_and_torch_image_env(tmp_path):
    from distwm.controller.rollout_generator import RolloutGenerator
    from distwm.memory.planet_memory import Episode, Memory
    from distwm.models.planet.env import PlanetImageEnv
    from distwm.models.planet import RecurrentStateSpaceModel
    from distwm.training.train_rssm import evaluate

    env = PlanetImageEnv(gym.make("Pendulum-v1", render_mode="rgb_array", max_episode_steps=10), 5)
    obs, _ = env.reset()
    assert obs.shape == (3, 64, 64) and obs.min() >= -0.5 and obs.max() <= 0.5
    assert env.max_episode_steps == 5  # 10 env steps at action repeat 2
    generator = RolloutGenerator(env, "cpu", episode_gen=lambda: Episode(postprocess_fn=env.to_storage))
    memory = Memory()
    memory.append(generator.rollout_n(1, random_policy=True))
    assert memory[0].x.dtype == np.uint8 and memory[0].x.shape == (6, 3, 64, 64)
    model = RecurrentStateSpaceModel(1, 16, 4, 16, 32)
    result = evaluate(memory, model, str(tmp_path), eps=0, seq_len=4)
    assert result["image"].endswith("eval_0.png") and os.path.isfile(result["image"])
    with pytest.raises(ValueError, match="observation_shape must be"):
        PlanetImageEnv("Pendulum-v1", 5, observation_shape=(1, 64, 64))


def test_train_planet_and_train_rssm_scripts(tmp_path):
    from distwm.training import train_planet, train_rssm

    tiny = ["state_size=16", "latent_size=4", "hidden_size=16", "embedding_size=16", "num_candidates=16",
            "top_candidates=4", "num_iterations=2", "planning_horizon=3", "seed_episodes=1", "time_limit=20"]
    history = train_planet.main(["--env", "Pendulum-v1", "--device", "cpu", "--epochs", "1",
                                 "--steps-per-epoch", "2", "--batch-size", "2", "--chunk-length", "4",
                                 "--results-dir", str(tmp_path / "planet"), "--headless",
                                 *[a for kv in tiny for a in ("--set", kv)]])
    assert len(history) == 1 and (tmp_path / "planet" / "checkpoint_00001.pt").is_file()
    with pytest.raises(SystemExit):
        train_planet.main(["--scheduler", "linear"])

    rows = train_rssm.main(["--env", "Pendulum-v1", "--model", "modular", "--backbone", "transformer",
                            "--episodes", "2", "--seed-episodes", "1", "--steps-per-episode", "2",
                            "--batch-size", "2", "--seq-len", "4", "--eval-every", "1",
                            "--max-episode-steps", "10", "--device", "cpu",
                            "--results-dir", str(tmp_path / "rssm")])
    assert [r["episode"] for r in rows] == [1, 2] and "eval_prior_mse" in rows[-1]
    assert (tmp_path / "rssm" / "checkpoint.pt").is_file()
    assert torch.load(tmp_path / "rssm" / "checkpoint.pt", weights_only=True)["episode"] == 2
