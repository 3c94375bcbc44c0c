"""DIAMOND's agent: replay -> its three samples (the reference's episode-start padding), the
imagined rollout and its mask, the actor-critic loss ignoring steps after an imagined end, the
schedule, acting, files, and the seed's single-process trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import distwm
from distwm.envs.wrappers import OneHotBox


def _config(**overrides):
    from distwm.models.diamond.core import DiamondCore

    return DiamondCore.tiny_test_config(distwm.create_config("diamond")).replace(**overrides)


def _core(size=64, actions=4, **overrides):
    from gymnasium import spaces

    from distwm.models.diamond.core import DiamondCore

    torch.manual_seed(0)
    obs = spaces.Dict({"image": spaces.Box(0, 255, (3, size, size), np.uint8)})
    return DiamondCore.from_config(_config(obs_size=size, **overrides), obs, OneHotBox(actions))


def _batch(b, t, seed=0, actions=4, size=64):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (b, t, 3, size, size), dtype=np.uint8),
            "action": np.eye(actions, dtype=np.float32)[rng.integers(0, actions, (b, t))],
            "reward": rng.choice([-1.0, 0.0, 2.0], (b, t)).astype(np.float32), "is_first": np.zeros((b, t), bool),
            "is_terminal": np.zeros((b, t), bool), "is_last": np.zeros((b, t), bool)}


def test_replay_windows_are_padded_before_an_episode_start():
    from distwm.models.diamond.batches import actor_critic_start, denoiser_windows, reward_end_steps

    batch = _batch(2, 5)
    batch["is_first"][0, 2] = True  # sequence 0 enters a new episode at frame 2
    window = denoiser_windows(batch, "cpu")
    assert window["frames"].shape == (2, 5, 3, 64, 64) and window["actions"].shape == (2, 4)
    assert (window["frames"][0, :2] == 0).all() and (window["frames"][0, 2:] != 0).any()
    assert (window["actions"][0, :2] == 0).all()
    assert torch.equal(window["actions"][1], torch.as_tensor(batch["action"][1, 1:].argmax(-1)))
    assert window["frames"].min() >= -1 and window["frames"].max() <= 1
    steps = reward_end_steps(batch, "cpu")
    assert steps["frames"].shape == steps["next_frames"].shape == (2, 4, 3, 64, 64)
    assert steps["valid"][0].tolist() == [True, False, False, False] and steps["valid"][1].all()
    assert torch.equal(steps["rewards"], torch.as_tensor(batch["reward"][:, 1:]))
    start = actor_critic_start({k: v[:, :4] for k, v in batch.items()}, "cpu")
    assert start["first"][0].tolist() == [False, False, True, False] and not start["first"][1].any()
    assert (start["frames"][0, :2] == 0).all()


def test_the_rollout_follows_the_policy_and_masks_steps_after_an_end():
    model = _core().agent
    frames = torch.from_numpy(_batch(3, 2)["image"])
    rollout = model.imagine(frames, torch.zeros(3, 1, dtype=torch.long), horizon=4)
    assert rollout["frames"].shape == (3, 5, 3, 64, 64) and rollout["values"].shape == (3, 5)
    assert rollout["actions"].shape == rollout["rewards"].shape == rollout["ends"].shape == (3, 4)
    assert rollout["logits"].requires_grad and rollout["values"][:, :-1].requires_grad
    assert set(rollout["rewards"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert rollout["frames"].min() >= -1 and rollout["frames"].max() <= 1
    ends = rollout["ends"].long()
    expected = (torch.cumsum(ends, 1) - ends) == 0
    assert torch.equal(rollout["mask"], expected) and rollout["mask"][:, 0].all()
    with pytest.raises(ValueError, match="needs 2 real frames"):
        model.imagine(frames[:, :1], torch.zeros(3, 1, dtype=torch.long))


def test_the_actor_critic_loss_ignores_what_follows_an_imagined_end():
    model = _core().agent
    torch.manual_seed(1)
    frames = torch.from_numpy(_batch(2, 2)["image"])
    rollout = model.imagine(frames, torch.zeros(2, 1, dtype=torch.long), horizon=4)
    rollout["ends"] = torch.tensor([[False, True, False, False], [False, False, False, False]])
    rollout["mask"] = torch.tensor([[True, True, False, False], [True, True, True, True]])
    rollout["rewards"] = torch.zeros(2, 4)
    changed = dict(rollout, rewards=torch.tensor([[0.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]]))
    loss = lambda r: model.rl_loss(r["logits"], r["actions"], r["rewards"], r["values"], r["ends"].long(),  # noqa: E731
                                   torch.zeros(2, 4, dtype=torch.long), mask=r["mask"])["loss"]
    torch.testing.assert_close(loss(rollout), loss(changed))  # rewards after the end do not count
    rewarded = dict(rollout, rewards=torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert not torch.allclose(loss(rollout), loss(rewarded))
    before = [p.detach().clone() for p in model.actor_critic.parameters()]
    metrics = model.update_actor_critic(rewarded)
    assert metrics["actor/skipped"] == 0.0 and np.isfinite(metrics["actor/loss"])
    assert any(not torch.equal(a, p) for a, p in zip(before, model.actor_critic.parameters()))


def test_the_parts_train_on_their_samples_from_their_start():
    core = _core(actor_steps_first_epoch=9_999)  # the actor-critic joins at update 1
    spec = core.data_spec()
    cfg = core.config
    assert [s.name for s in spec.samples] == ["reward", "diffusion", "actor"]
    assert [s.seq_len for s in spec.samples] == [cfg.num_conditioning_frames + cfg.imagination_horizon,
                                                 cfg.num_conditioning_frames + 1, cfg.num_conditioning_frames]
    assert spec.train_ratio == pytest.approx(sum(s.steps for s in spec.samples) * 4.0)
    batches = {s.name: _batch(s.batch_size, s.seq_len, seed=i) for i, s in enumerate(spec.samples)}
    first = core.update(batches)
    assert first["diffusion/training"] == first["reward/training"] == 1.0 and first["actor/training"] == 0.0
    assert "actor/loss" not in first and np.isfinite(first["diffusion/loss"]) and np.isfinite(first["reward/loss"])
    second = core.update(batches)
    assert second["actor/training"] == 1.0 and "actor/loss" in second and core.updates == 2
    with pytest.raises(ValueError, match="missing"):
        core.update({"reward": batches["reward"]})
    bad = dict(batches, reward=dict(batches["reward"], reward=np.full_like(batches["reward"]["reward"], np.nan)))
    assert core.update(bad)["skipped"] == 1.0 and core.updates == 2


def test_acting_explores_with_epsilon_and_resets_on_episode_starts():
    core = _core(epsilon_greedy=1.0, eval_epsilon=0.0)
    obs = {"image": np.zeros((64, 3, 64, 64), np.uint8), "is_first": np.ones(64, bool)}
    torch.nn.init.constant_(core.agent.actor_critic.actor.bias, 0.0)
    with torch.no_grad():
        core.agent.actor_critic.actor.bias[2] = 50.0  # the policy always picks action 2
    greedy, state = core.act(obs, None, explore=False)
    assert (greedy.argmax(1) == 2).all() and greedy.shape == (64, 4)
    explored, _ = core.act(obs, None, explore=True)
    assert (explored.argmax(1) != 2).any()  # epsilon 1: uniform actions
    _, again = core.act(dict(obs, is_first=np.ones(64, bool)), state, explore=False)
    _, fresh = core.act(obs, None, explore=False)
    torch.testing.assert_close(again[0], fresh[0])  # is_first zeroes the carried state


def test_checkpoints_round_trip_and_name_a_wrong_architecture(tmp_path):
    from distwm.utils.checkpoint import load_file, save_file

    core = _core()
    spec = core.data_spec()
    core.update({s.name: _batch(s.batch_size, s.seq_len) for s in spec.samples})
    path = save_file(core.state_dict(), tmp_path / "diamond.pt")
    other = _core()
    other.load_state_dict(load_file(path, None, "DIAMOND"))  # torch.load(..., weights_only=True)
    assert other.updates == 1
    for (k, a), (_, b) in zip(core.agent.state_dict().items(), other.agent.state_dict().items()):
        assert torch.equal(a, b), k
    wider = _core(actor_lstm_dim=32)
    with pytest.raises(ValueError, match="actor_lstm_dim"):
        wider.load_state_dict(core.state_dict())


def test_bad_configs_and_spaces_are_named():
    from gymnasium import spaces

    from distwm.models.diamond.core import DiamondCore

    with pytest.raises(ValueError, match="sigma_max"):
        _config(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="discrete"):
        DiamondCore.from_config(_config(), spaces.Dict({"image": spaces.Box(0, 255, (3, 64, 64), np.uint8)}),
                                spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(ValueError, match="obs_size 64"):
        DiamondCore.from_config(_config(), spaces.Dict({"image": spaces.Box(0, 255, (3, 32, 32), np.uint8)}),
                                OneHotBox(3))


def test_the_seed_trainer_trains_evaluates_and_checkpoints_on_minatar(tmp_path, monkeypatch):
    from distwm.training.train_diamond import DiamondAgent

    monkeypatch.chdir(tmp_path)
    config = _config(env="minatar:breakout", env_backend="minatar", env_kwargs={}, eval_env_kwargs={},
                     obs_size=16, time_limit=40, total_steps=60, initial_collection_steps=20,
                     initial_collection_max_steps=20, environment_steps_per_epoch=10, training_steps_per_epoch=2,
                     eval_episodes=1, eval_interval=60, checkpoint_interval=60, buffer_size=500)
    agent = DiamondAgent(config)
    assert agent.core is None  # nothing built yet
    summary = agent.train()
    assert summary["env_steps"] >= 60 and summary["updates"] > 0 and summary["eval_history"]
    assert (tmp_path / "checkpoints" / "diamond" / "checkpoint.pt").exists()
    assert np.isfinite(agent.evaluate(1))
    path = agent.save_checkpoint("mine.pt")
    assert path == str(tmp_path.joinpath("checkpoints", "diamond", "mine.pt").relative_to(tmp_path))
    fresh = DiamondAgent(config)
    fresh.load_checkpoint("mine.pt")
    assert fresh.core.updates == agent.core.updates
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        fresh.load_checkpoint(str(tmp_path / "missing.pt"))


@pytest.mark.skip_ok_in_ci("hardware, not an installable dependency: CPUs without AMX / AVX512-BF16")
@pytest.mark.skipif(not __import__("distwm.utils.precision", fromlist=["x"]).cpu_has_bf16(),
                    reason="this CPU has no native bf16 matmuls")
def test_bf16_autocast_trains_every_part_with_float32_outputs():
    core = _core(autocast="bf16", actor_steps_first_epoch=10_000)
    with core.agent.precision():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    spec = core.data_spec()
    metrics = core.update({s.name: _batch(s.batch_size, s.seq_len, seed=i) for i, s in enumerate(spec.samples)})
    assert metrics["skipped"] == 0.0 and all(np.isfinite(v) for v in metrics.values())
    assert all(metrics[f"{part}/training"] == 1.0 for part in ("diffusion", "reward", "actor"))
    rollout = core.agent.imagine(torch.from_numpy(_batch(2, 2)["image"]), torch.zeros(2, 1, dtype=torch.long))
    assert rollout["frames"].dtype == rollout["logits"].dtype == rollout["values"].dtype == torch.float32
    with pytest.raises(ValueError, match=r"autocast 'fp8'.*\('off', 'bf16'\)"):
        _config(autocast="fp8")
