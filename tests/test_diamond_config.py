"""DIAMOND's config (paper values, presets, validation, round trips, schedule, env settings) and
its replay dataset (windows, burn-in padding, collate, overwriting, checkpoints)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from distwm.configs.diamond_config import (
    PRESETS,
    DiamondConfig,
    ModelPreset,
    get_default_device,
)
from distwm.configs.rl_config import RLConfig
from distwm.datasets.diamond_dataset import ReplayBuffer, SequenceDataset, collate_fn

# the paper's Atari 100k values, with the reference file (eloialonso/diamond) each comes from
PAPER = {
    # config/agent/default.yaml
    "num_conditioning_frames": 4, "diffusion_channels": [64, 64, 64, 64], "diffusion_res_blocks": 2,
    "diffusion_cond_dim": 256, "sigma_data": 0.5, "sigma_offset_noise": 0.3,
    "reward_channels": [32, 32, 32, 32], "reward_res_blocks": 2, "reward_cond_dim": 128, "reward_lstm_dim": 512,
    "actor_channels": [32, 32, 64, 64], "actor_res_blocks": 1, "actor_lstm_dim": 512,
    # config/trainer.yaml: world_model_env.diffusion_sampler
    "num_sampling_steps": 3, "sigma_min": 2e-3, "sigma_max": 5.0, "rho": 7, "sampling_method": "euler",
    "imagination_horizon": 15,
    # config/trainer.yaml: denoiser.sigma_distribution, the three optimizers and training blocks
    "p_mean": -0.4, "p_std": 1.2, "train_sigma_min": 2e-3, "train_sigma_max": 20.0,
    "learning_rate": 1e-4, "adam_epsilon": 1e-8, "weight_decay_diffusion": 0.01, "weight_decay_reward": 0.01,
    "weight_decay_actor": 0.0, "batch_size": 32, "training_steps_per_epoch": 400, "lr_warmup_steps": 100,
    "diffusion_max_grad_norm": 1.0, "reward_max_grad_norm": 100.0, "actor_max_grad_norm": 100.0,
    "diffusion_steps_first_epoch": 10_000, "reward_steps_first_epoch": 10_000, "actor_steps_first_epoch": 5_000,
    "sample_weights": [0.1, 0.1, 0.1, 0.7],
    # config/trainer.yaml: actor_critic.actor_critic_loss
    "discount_factor": 0.985, "lambda_returns": 0.95, "entropy_weight": 0.001, "weight_value_loss": 1.0,
    # config/trainer.yaml: collection
    "epsilon_greedy": 0.01, "environment_steps_per_epoch": 100, "total_steps": 100_000,
    "initial_collection_steps": 5_000, "initial_collection_max_steps": 10_000,
    "initial_collection_min_reward_count": 10, "eval_epsilon": 0.0, "eval_episodes": 4, "final_eval_episodes": 100,
    # the paper's 1000 epochs; burn-in = the conditioning frames (trainer.py's actor-critic loader)
    "num_epochs": 1000, "burn_in_length": 4,
    # src/envs/env.py, config/env/atari.yaml
    "frameskip": 4, "max_noop": 30, "obs_size": 64, "terminate_on_life_loss": True, "reward_clip": [-1, 1],
}


def test_defaults_are_the_papers_atari_100k_values():
    cfg = DiamondConfig()
    assert isinstance(cfg, RLConfig)
    assert {k: getattr(cfg, k) for k in PAPER} == PAPER
    assert (cfg.game, cfg.env, cfg.env_backend, cfg.image_size, cfg.action_repeat) == (
        "Breakout-v5", "ALE/Breakout-v5", "atari", 64, 1)
    # the seed's 10 / 50 / 100 epochs of logging / evaluation / saving, in env steps
    assert (cfg.preset, cfg.seed, cfg.device, cfg.log_interval, cfg.eval_interval, cfg.checkpoint_interval) == (
        None, 0, "auto", 1000, 5000, 10_000)
    assert DiamondConfig(save_interval=500).checkpoint_interval == 500  # the seed's name
    assert "save_interval" not in cfg.to_dict()
    assert get_default_device() in ("cuda", "mps", "cpu")
    assert cfg.resolved_device == get_default_device()


def test_presets():
    assert set(PRESETS) == {"paper", "medium", "small", "tiny"}
    assert isinstance(PRESETS["tiny"], ModelPreset)
    default = DiamondConfig()
    assert DiamondConfig(preset="paper").to_dict() == {**default.to_dict(), "preset": "paper"}
    for name, preset in PRESETS.items():
        cfg = DiamondConfig(preset=name)
        assert {k: getattr(cfg, k) for k in preset.to_dict()} == preset.to_dict()
        assert cfg.learning_rate == 1e-4 and cfg.sigma_max == 5.0  # presets change the architecture only
    tiny = DiamondConfig(preset="tiny", actor_lstm_dim=96)  # an explicit field wins over the preset
    assert tiny.actor_lstm_dim == 96 and tiny.diffusion_channels == [16, 16, 16, 16]
    assert tiny.replace(preset="small").diffusion_channels == [32, 32, 32, 32]
    assert tiny.replace(preset=None).diffusion_channels == [64, 64, 64, 64]
    with pytest.raises(ValueError, match=r"preset 'huge' is not one of None, 'paper', 'medium', 'small', 'tiny'"):
        DiamondConfig(preset="huge")


@pytest.mark.parametrize("kwargs, message", [
    ({"sampling_method": "rk4"}, r"sampling_method 'rk4' is not one of 'euler', 'heun'"),
    ({"device": "tpu"}, r"device must be one of 'auto', 'cpu', 'mps', 'cuda', 'cuda:N', got 'tpu'"),
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
    ({"max_noop": -1}, r"max_noop must be an integer >= 0, got -1"),
    ({"diffusion_channels": []}, r"diffusion_channels must be a non-empty list of positive integers"),
    ({"reward_clip": [1, 2]}, r"reward_clip must be \[low, high\].*got \[1, 2\]"),
    ({"sample_weights": [0.5, 0.6]}, r"sample_weights must be .* sum to 1, got \[0.5, 0.6\]"),
    ({"discount_factor": 1.5}, r"discount_factor must be in \[0.0, 1.0\], got 1.5"),
    ({"sigma_max": 0.001}, r"sigma_max must be > sigma_min \(0.002\), got 0.001"),
    ({"initial_collection_steps": 5050}, r"initial_collection_steps must be a multiple of .* \(100\), got 5050"),
    ({"obs_type": "rgb"}, r"obs_type 'rgb' is not one of"),
    ({"game": "not a game!"}, r"game must be an Atari id such as 'Breakout-v5', got 'not a game!'"),
    ({"eval_interval": -1}, r"eval_interval must be an integer >= 0"),
])
def test_validation_names_the_bad_value_and_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiamondConfig(**kwargs)


def test_game_env_image_size_and_env_kwargs_stay_consistent():
    assert DiamondConfig(game="Pong-v5").env == "ALE/Pong-v5"
    assert DiamondConfig(env="ALE/Pong-v5").game == "Pong-v5"
    assert DiamondConfig(env="", game="Qbert-v5").env == "ALE/Qbert-v5"
    assert DiamondConfig(game="Pong-v5", env="ALE/Pong-v5").env == "ALE/Pong-v5"
    with pytest.raises(ValueError, match=r"game 'Pong-v5' and env 'ALE/Seaquest-v5' disagree"):
        DiamondConfig(game="Pong-v5", env="ALE/Seaquest-v5")
    pong = DiamondConfig(game="Pong-v5")
    assert (pong.replace(env="ALE/Seaquest-v5").game, pong.replace(game="Qbert-v5").env) == (
        "Seaquest-v5", "ALE/Qbert-v5")
    assert pong.set_dotted("game=Boxing-v5").env == "ALE/Boxing-v5"
    assert DiamondConfig(obs_size=96).image_size == 96 and DiamondConfig(image_size=96).obs_size == 96
    assert pong.replace(obs_size=32).image_size == 32
    with pytest.raises(ValueError, match=r"obs_size 96 and image_size 32 disagree"):
        DiamondConfig(obs_size=96, image_size=32)
    assert DiamondConfig(max_noop=5).env_kwargs["max_noop"] == 5
    assert DiamondConfig(env_kwargs={"preprocessing": "atari100k", "max_noop": 5}).max_noop == 5
    assert DiamondConfig(env_kwargs={"preprocessing": "atari100k"}).env_kwargs["frameskip"] == 4
    assert pong.replace(terminate_on_life_loss=False).env_kwargs["terminate_on_life_loss"] is False
    with pytest.raises(ValueError, match=r"max_noop 5 and env_kwargs\['max_noop'\] 7 disagree"):
        DiamondConfig(max_noop=5, env_kwargs={"max_noop": 7})


def test_training_and_evaluation_env_settings_are_diamonds_atari_100k():
    cfg = DiamondConfig()
    assert cfg.env_kwargs == {"preprocessing": "atari100k", "frameskip": 4, "max_noop": 30,
                              "terminate_on_life_loss": True}
    evaluation = cfg.for_evaluation()
    # evaluation: whole games (no life-loss ends), the same 30 no-op starts and frame skip
    assert evaluation.env_kwargs == {**cfg.env_kwargs, "terminate_on_life_loss": False}
    assert cfg.env_kwargs["terminate_on_life_loss"] is True  # training unchanged
    assert cfg.clip_reward(np.array([-7.0, 0.0, 0.5, 30.0])).tolist() == [-1.0, 0.0, 1.0, 1.0]
    assert cfg.clip_reward(torch.tensor([-2.0, 3.0])).tolist() == [-1.0, 1.0]
    assert DiamondConfig(reward_clip=[0, 1]).clip_reward(np.array([-3.0, 2.0])).tolist() == [0.0, 1.0]


def test_envs_built_from_the_config():
    from conftest import require_module

    require_module("ale_py", "the Atari emulator: pip install -e '.[atari]'")
    from distwm.envs.diamond_atari import DiamondAtariWrapper
    from distwm.envs.factory import make_env_from_config

    cfg = DiamondConfig(game="Pong-v5")
    for config, life_loss in ((cfg, True), (cfg.for_evaluation(), False)):
        env = make_env_from_config(config)
        try:
            inner = env
            while not isinstance(inner, DiamondAtariWrapper):
                inner = inner.env
            assert (inner.frameskip, inner.max_noop, inner.terminate_on_life_loss) == (4, 30, life_loss)
            assert inner.reward_clip is False  # raw env rewards; the agent clips (clip_reward)
            obs, _ = env.reset(seed=0)
            assert obs["image"].shape == (3, 64, 64) and obs["image"].dtype == np.uint8
        finally:
            env.close()


def test_dict_and_yaml_round_trips():
    for cfg in (DiamondConfig(), DiamondConfig(preset="tiny", game="Pong-v5", max_noop=7, obs_size=32),
                DiamondConfig(env="ALE/Seaquest-v5", sigma_max=80.0, device="cpu")):
        data = cfg.to_dict()
        assert DiamondConfig.from_dict(data) == cfg
        assert DiamondConfig.from_yaml(cfg.to_yaml()) == cfg
        assert DiamondConfig.from_dict({**data, "game": "Qbert-v5", "env": "ALE/Qbert-v5"}).game == "Qbert-v5"
    with pytest.raises(ValueError, match=r"Unknown config field 'horizon'"):
        DiamondConfig.from_dict({"horizon": 15})
    with pytest.raises(ValueError, match=r"'batch_size': expected an int, got '32'"):
        DiamondConfig.from_dict({"batch_size": "32"})


def test_schedule_helpers():
    cfg = DiamondConfig()
    assert cfg.updates_per_env_step == 4.0
    assert cfg.prefill_steps == 5000
    assert (cfg.collection_epochs, cfg.final_epochs) == (950, 50)
    assert cfg.first_epoch_updates == 10_000
    assert [cfg.start_update(c) for c in ("diffusion", "reward", "actor")] == [0, 0, 5000]
    assert [cfg.component_steps(c, 1) for c in ("diffusion", "reward", "actor")] == [10_000, 10_000, 5000]
    assert cfg.component_steps("actor", 2) == 400 and cfg.epoch_updates(1) == 10_000 and cfg.epoch_updates(3) == 400
    assert (cfg.diffusion_sequence_length, cfg.reward_sequence_length) == (5, 19)
    with pytest.raises(ValueError, match=r"Unknown DIAMOND component 'critic'; valid: diffusion, reward, actor"):
        cfg.start_update("critic")
    with pytest.raises(ValueError, match=r"epoch must be an integer >= 1, got 0"):
        cfg.component_steps("actor", 0)
    short = DiamondConfig(total_steps=1000, initial_collection_steps=200, initial_collection_max_steps=400,
                          num_epochs=10, training_steps_per_epoch=100)
    assert (short.collection_epochs, short.final_epochs, short.updates_per_env_step) == (8, 2, 1.0)


def test_accessors():
    cfg = DiamondConfig(obs_size=32, preset="small")
    assert cfg.get_frame_shape() == (3, 32, 32)
    diffusion = cfg.get_diffusion_config()
    assert diffusion["channels"] == [32, 32, 32, 32] and diffusion["sigma_max"] == 5.0
    assert diffusion["num_sampling_steps"] == 3 and diffusion["frame_shape"] == (3, 32, 32)
    assert cfg.get_reward_config()["sequence_length"] == 19
    assert cfg.get_rl_config() == {
        "channels": [16, 16, 32, 32], "res_blocks": 1, "lstm_dim": 256, "burn_in": 4, "imagination_horizon": 15,
        "gamma": 0.985, "lambda_": 0.95, "entropy_weight": 0.001, "weight_value_loss": 1.0, "epsilon": 0.01,
        "eval_epsilon": 0.0}


# -- the dataset ------------------------------------------------------------------------------
def _frame(step: int, shape=(4, 4, 3)) -> np.ndarray:
    return np.full(shape, step % 256, np.uint8)


def _fill(buffer: ReplayBuffer, steps: int, done_at=(), start: int = 0) -> None:
    for t in range(start, start + steps):
        buffer.add(_frame(t, buffer.obs_shape), t % 3, float(t), t in done_at, _frame(t + 1, buffer.obs_shape))


def test_replay_buffer_stores_and_samples_transitions():
    buffer = ReplayBuffer(capacity=10, obs_shape=(4, 4, 3), action_dim=1, seed=0)
    assert not buffer.is_ready(1) and len(buffer) == 0
    with pytest.raises(ValueError, match="buffer is empty"):
        buffer.sample(2)
    _fill(buffer, 6, done_at={2})
    assert buffer.is_ready(6) and not buffer.is_ready(7)
    batch = buffer.sample(8)
    assert batch["obs"].shape == (8, 4, 4, 3) and batch["obs"].dtype == torch.uint8
    assert batch["actions"].shape == (8,) and batch["actions"].dtype == torch.int64
    assert batch["rewards"].dtype == torch.float32 and batch["dones"].dtype == torch.bool
    step = batch["rewards"].long()  # reward = step index: every field is of the same transition
    assert torch.equal(batch["obs"][:, 0, 0, 0].long(), step)
    assert torch.equal(batch["next_obs"][:, 0, 0, 0].long(), step + 1)
    assert torch.equal(batch["actions"], step % 3) and torch.equal(batch["dones"], step == 2)
    assert all(isinstance(getattr(buffer, k), np.ndarray) and buffer.__dict__[k].dtype != object
               for k in ("obs", "next_obs", "actions", "rewards", "dones"))
    vector = ReplayBuffer(capacity=4, obs_shape=(2,), action_dim=3, obs_dtype=np.float32)
    vector.add(np.zeros(2, np.float32), np.array([0.0, 1.0, 0.0]), 1.0, False, np.ones(2, np.float32))
    assert vector.sample(1)["actions"].shape == (1, 3)


@pytest.mark.parametrize("call, message", [
    (lambda b: b.add(np.zeros((4, 4), np.uint8), 0, 0.0, False, np.zeros((4, 4, 3), np.uint8)),
     r"obs has shape \(4, 4\), expected \(4, 4, 3\)"),
    (lambda b: b.add(np.zeros((4, 4, 3)), 0, 0.0, False, np.zeros((4, 4, 3))), r"float64 but the buffer stores uint8"),
    (lambda b: b.add(_frame(0), 1.5, 0.0, False, _frame(1)), r"one integer index"),
    (lambda b: b.sample_sequence(2, 5, 5), r"burn_in must be an integer in \[0, sequence_length=5\), got 5"),
])
def test_replay_buffer_refuses_bad_input(call, message):
    buffer = ReplayBuffer(capacity=4, obs_shape=(4, 4, 3))
    with pytest.raises(ValueError, match=message):
        call(buffer)


def test_full_buffer_overwrites_the_oldest_transitions():
    buffer = ReplayBuffer(capacity=5, obs_shape=(4, 4, 3), seed=0)
    _fill(buffer, 8)
    assert len(buffer) == 5 and buffer.total_added == 8
    assert sorted(buffer.rewards.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert sorted(buffer.sample(64)["rewards"].unique().tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    # windows run oldest -> newest across the wrap-around point
    window = buffer.windows(buffer.valid_window_ends(5), 5)
    assert window["rewards"].tolist() == [[3.0, 4.0, 5.0, 6.0, 7.0]]


def test_sequence_windows_burn_in_padding_and_episode_ends():
    buffer = ReplayBuffer(capacity=50, obs_shape=(4, 4, 3), seed=0)
    _fill(buffer, 12, done_at={5})  # episodes: steps 0..5 and 6..11
    # horizon = 5 - 4 = 1: every step can be the predicted one; its burn-in pads before the episode
    ends = buffer.valid_window_ends(5, burn_in=4)
    assert ends.tolist() == list(range(12))
    window = buffer.windows(np.array([7]), 5)
    assert window["mask"].tolist() == [[False, False, False, True, True]]
    assert window["rewards"].tolist() == [[0.0, 0.0, 0.0, 6.0, 7.0]]
    assert window["obs"][0, :3].max() == 0 and window["obs"][0, 3, 0, 0, 0] == 6
    # a horizon never crosses an episode end (the end may be its last step)
    ends = buffer.valid_window_ends(8, burn_in=4)
    assert ends.tolist() == [3, 4, 5, 9, 10, 11]
    batch = buffer.sample_sequence(16, 8, burn_in=4)
    assert batch["obs"].shape == (16, 8, 4, 4, 3) and batch["mask"].shape == (16, 8)
    assert bool(batch["mask"][:, 4:].all()) and not bool(batch["dones"][:, 4:-1].any())
    rewards, mask = batch["rewards"], batch["mask"]
    assert torch.equal(rewards[:, 1:][mask[:, :-1]], rewards[:, :-1][mask[:, :-1]] + 1)  # consecutive
    with pytest.raises(ValueError, match=r"no 20 consecutive steps of one episode among the 12"):
        buffer.sample_sequence(2, 20)


def test_sequence_dataset_and_collate():
    buffer = ReplayBuffer(capacity=50, obs_shape=(4, 4, 3))
    dataset = SequenceDataset(buffer, sequence_length=5, burn_in=4)
    assert len(dataset) == 0
    _fill(buffer, 10, done_at={5})
    assert len(dataset) == 10  # follows the buffer
    item = dataset[9]
    assert set(item) == {"obs", "actions", "rewards", "dones", "next_obs", "mask"}
    assert item["obs"].shape == (5, 4, 4, 3) and item["rewards"].tolist() == [0.0, 6.0, 7.0, 8.0, 9.0]
    assert item["mask"].tolist() == [False, True, True, True, True]
    with pytest.raises(IndexError):
        dataset[10]
    batch = collate_fn([dataset[i] for i in range(3)])
    assert batch["obs"].shape == (3, 5, 4, 4, 3) and batch["actions"].shape == (3, 5)
    assert torch.equal(batch["rewards"][:, -1], torch.tensor([0.0, 1.0, 2.0]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_fn)
    assert [b["obs"].shape[0] for b in loader] == [4, 4, 2]
    with pytest.raises(ValueError, match="empty batch"):
        collate_fn([])
    with pytest.raises(ValueError, match=r"burn_in must be an integer in \[0, sequence_length=3\)"):
        SequenceDataset(buffer, sequence_length=3, burn_in=3)


def test_state_dict_is_plain_arrays_and_round_trips():
    buffer = ReplayBuffer(capacity=6, obs_shape=(4, 4, 3), seed=0)
    _fill(buffer, 9, done_at={4})
    state = buffer.state_dict()
    saved = io.BytesIO()
    np.savez(saved, **state)
    saved.seek(0)
    loaded = dict(np.load(saved, allow_pickle=False))  # nothing pickled
    other = ReplayBuffer(capacity=3, obs_shape=(4, 4, 3))
    other.load_state_dict(loaded)
    assert other.capacity == 6 and len(other) == 6 and other.total_added == 9
    for key in ("obs", "actions", "rewards", "dones", "next_obs"):
        assert np.array_equal(other.state_dict()[key], state[key])
    _fill(other, 1, start=9)  # keeps overwriting the oldest
    assert other.state_dict()["rewards"].tolist() == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match=r"saved obs_shape \(4, 4, 3\) / action_dim 1 differ"):
        ReplayBuffer(capacity=6, obs_shape=(8, 8, 3)).load_state_dict(state)
