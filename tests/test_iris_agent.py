"""IRIS's agent: the replay -> IRIS step conversion, the lambda-returns of the reference code,
the rollout / re-run equivalence of the actor-critic step, the epoch schedule, acting, files,
the perceptual term's loading, and the single-process trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import distwm
from distwm.envs.wrappers import OneHotBox


def _config(**overrides):
    from distwm.models.iris.core import IRISCore

    return IRISCore.tiny_test_config(distwm.create_config("iris")).replace(**overrides)


def _core(**overrides):
    from gymnasium import spaces

    from distwm.models.iris.core import IRISCore

    torch.manual_seed(0)
    obs = spaces.Dict({"image": spaces.Box(0, 255, (3, 64, 64), np.uint8)})
    return IRISCore.from_config(_config(**overrides), obs, OneHotBox(4))


def _batch(b, t, seed=0, actions=4):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (b, t, 3, 64, 64), dtype=np.uint8),
            "action": np.eye(actions, dtype=np.float32)[rng.integers(0, actions, (b, t))],
            "reward": rng.normal(size=(b, t)).astype(np.float32), "is_first": np.zeros((b, t), bool),
            "is_terminal": np.zeros((b, t), bool), "is_last": np.zeros((b, t), bool)}


def _batches(core, seed=0):
    return {s.name: _batch(s.batch_size, s.seq_len, seed) for s in core.data_spec().samples}


def _reference_lambda_returns(rewards, values, ends, gamma, lambda_):
    """IRIS's ``compute_lambda_returns`` (src/models/actor_critic.py), verbatim in maths."""
    t = rewards.size(1)
    out = torch.empty_like(values)
    out[:, -1] = values[:, -1]
    out[:, :-1] = rewards[:, :-1] + ends[:, :-1].logical_not() * gamma * (1 - lambda_) * values[:, 1:]
    last = values[:, -1]
    for i in list(range(t - 1))[::-1]:
        out[:, i] += ends[:, i].logical_not() * gamma * lambda_ * last
        last = out[:, i]
    return out


def test_lambda_returns_are_the_reference_codes():
    from distwm.models.iris_agent import compute_lambda_return

    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 20, generator=g), torch.randn(3, 20, generator=g)
    ends = torch.rand(3, 20, generator=g) < 0.1
    expected = _reference_lambda_returns(rewards, values, ends, 0.995, 0.95)[:, :-1]
    got = compute_lambda_return(rewards[:, :-1], values, 0.995 * (~ends[:, :-1]).float(), 0.95)
    torch.testing.assert_close(got, expected)


def test_replay_batches_become_iris_steps():
    from distwm.models.step_batches import actor_critic_batch, frame_steps

    batch = _batch(2, 5)
    batch["is_first"][1, 3] = True  # row 1: a new episode at step 3
    batch["is_terminal"][1, 2] = True
    steps = frame_steps(batch, "cpu")
    assert steps["frames"].shape == (2, 4, 3, 64, 64)
    np.testing.assert_array_equal(steps["actions"].numpy(), batch["action"][:, 1:].argmax(-1))
    np.testing.assert_array_equal(steps["rewards"].numpy(), batch["reward"][:, 1:])
    np.testing.assert_array_equal(steps["ends"].numpy()[1], [0, 1, 0, 0])  # frame 1 -> terminal frame 2
    np.testing.assert_array_equal(steps["valid"].numpy(), [[1, 1, 1, 1], [1, 1, 0, 0]])
    start = actor_critic_batch(batch, "cpu")
    assert start["burn_in"].shape == (2, 4, 3, 64, 64) and start["start"].shape == (2, 3, 64, 64)
    assert start["burn_in_first"][1, 3] and not start["start_first"].any()


def test_the_actor_critic_step_re_runs_what_the_rollout_acted_on():
    core = _core(imagine_horizon=4)
    agent = core.agent
    frames = torch.rand(3, 3, 64, 64)
    burn_in = torch.rand(3, 2, 3, 64, 64)
    rollout = agent.imagine_rollout(frames, 4, burn_in_frames=burn_in)
    assert rollout["frames"].shape == (3, 4, 3, 64, 64)
    assert rollout["actions"].shape == rollout["rewards"].shape == rollout["ends"].shape == (3, 3)
    assert set(rollout["rewards"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    logits, values, _ = agent.actor_critic.unroll(rollout["frames"], rollout["hidden"])
    torch.testing.assert_close(logits, rollout["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, rollout["values"], atol=1e-5, rtol=1e-5)
    # the burn-in mattered: from a zero state the same frames give other values
    cold, _, _ = agent.actor_critic.unroll(rollout["frames"], agent.actor_critic.initial_state(3))
    assert not torch.allclose(cold, logits)
    before = [p.detach().clone() for p in agent.actor_critic.parameters()]
    metrics = agent.update_actor_critic(rollout)
    assert metrics["actor_critic/skipped"] == 0.0 and np.isfinite(metrics["actor_critic/loss"])
    assert any(not torch.equal(a, p) for a, p in zip(before, agent.actor_critic.parameters()))


def test_the_parts_start_on_their_epochs():
    core = _core(tokenizer_start_epochs=0, world_model_start_epochs=1, actor_critic_start_epochs=2,
                 updates_per_epoch=1, steps_per_epoch=4)
    assert core.data_spec().updates_per_env_step == 0.25
    parts = {name: getattr(core.agent, name) for name in ("tokenizer", "transformer", "actor_critic")}

    def changed(batches):
        before = {n: [p.detach().clone() for p in m.parameters()] for n, m in parts.items()}
        core.update(batches)
        return {n for n, m in parts.items() if any(not torch.equal(a, p) for a, p in zip(before[n], m.parameters()))}

    assert changed(_batches(core, 0)) == {"tokenizer"}
    assert changed(_batches(core, 1)) == {"tokenizer", "transformer"}
    assert changed(_batches(core, 2)) == {"tokenizer", "transformer", "actor_critic"}
    with pytest.raises(ValueError, match="missing \\['actor_critic'\\]"):
        core.update({k: v for k, v in _batches(core).items() if k != "actor_critic"})


def test_acting_explores_with_epsilon_and_evaluates_at_its_temperature():
    core = _core(epsilon=1.0)
    obs = {"image": np.zeros((16, 3, 64, 64), np.uint8), "is_first": np.ones(16, bool)}
    with torch.no_grad():
        core.agent.actor_critic.actor.bias.copy_(torch.tensor([20.0, 0.0, 0.0, 0.0]))
    explored, _ = core.act(obs, None, explore=True)
    greedy, _ = core.act(obs, None, explore=False)
    assert (greedy.argmax(1) == 0).all()  # logit 20 at temperature 0.5: always action 0
    assert (explored.argmax(1) != 0).any()  # epsilon 1: all 16 at action 0 has odds 4^-16
    # the same choice on many logits (the networks cost most of act): epsilon 1 is uniform
    logits = torch.tensor([20.0, 0.0, 0.0, 0.0]).expand(4000, 4)
    counts = np.bincount(core.choose_actions(logits, explore=True).numpy(), minlength=4)
    assert counts.min() > 850, counts  # 1000 each expected, sd 27
    assert (core.choose_actions(logits, explore=False) == 0).all()


def test_agent_files_round_trip(tmp_path):
    core = _core()
    core.update(_batches(core))
    path = str(tmp_path / "iris.pt")
    core.agent.save(path)
    other = _core()
    other.agent.load(path)
    for (k, a), (_, b) in zip(core.agent.state_dict().items(), other.agent.state_dict().items()):
        assert torch.equal(a, b), k
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an IRISAgent.save file"):
        other.agent.load(str(tmp_path / "bad.pt"))


def test_bad_configs_and_spaces_are_named():
    from gymnasium import spaces

    from distwm.models.iris.core import IRISCore

    with pytest.raises(ValueError, match="tokens_per_frame must be a square"):
        _config(tokens_per_frame=5)
    with pytest.raises(ValueError, match="actor_critic_start_epochs"):
        _config(world_model_start_epochs=60)
    obs = spaces.Dict({"image": spaces.Box(0, 255, (3, 32, 32), np.uint8)})
    with pytest.raises(ValueError, match="image_size 64"):
        IRISCore.from_config(_config(), obs, OneHotBox(3))


def test_actor_critic_stages_follow_the_config_on_small_frames():
    """``actor_critic_channels`` sets the conv + max-pool stages, so 10x10 frames (MinAtar's
    grid, one pixel per cell) take one stage; a size they do not divide is named."""
    from distwm.models.iris.agent import IRISAgent

    config = _config(image_size=10, tokens_per_frame=25, actor_critic_channels=[8])
    agent = IRISAgent(config, 3, "cpu")
    convs = [m for m in agent.actor_critic.features.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8] and agent.actor_critic.features.conv_size == 8 * 5 * 5
    logits, values, _ = agent.actor_critic.step(torch.rand(2, 3, 10, 10), agent.actor_critic.initial_state(2))
    assert logits.shape == (2, 3) and values.shape == (2,)
    assert [c.out_channels for c in IRISAgent(_config(), 3, "cpu").actor_critic.features.convs
            if isinstance(c, torch.nn.Conv2d)] == [32, 32, 64, 64]  # IRIS's by default
    with pytest.raises(ValueError, match=r"image_size \(10\) must be a multiple of 16 for 4 actor_critic_channels"):
        _config(image_size=10, tokens_per_frame=25)
    with pytest.raises(ValueError, match="actor_critic_channels must be a non-empty list"):
        _config(actor_critic_channels=[])


def test_the_squared_error_weight_reaches_the_tokenizer():
    from distwm.models.iris.agent import IRISAgent

    assert IRISAgent(_config(), 3, "cpu").tokenizer.l2_weight == 0.0  # IRIS's L1 only
    assert IRISAgent(_config(reconstruction_l2_weight=10.0), 3, "cpu").tokenizer.l2_weight == 10.0
    with pytest.raises(ValueError, match="reconstruction_l2_weight must be >= 0"):
        _config(reconstruction_l2_weight=-0.5)


def test_perceptual_term_needs_weights_on_disk(tmp_path, caplog):
    from distwm.vision import perceptual

    perceptual._SAID_ABSENT = False
    with caplog.at_level("WARNING"):
        assert perceptual.load_perceptual(None) is None
    assert "without the LPIPS term" in caplog.text
    with pytest.raises(ValueError, match="lpips|no file"):
        perceptual.load_perceptual(str(tmp_path / "missing.pth"))


def test_the_trainer_trains_and_evaluates_on_atari(tmp_path):
    from distwm.training.train_iris import IRISTrainer

    config = _config(time_limit=30, steps_per_epoch=10, updates_per_epoch=2, tokenizer_start_epochs=1,
                     world_model_start_epochs=1, actor_critic_start_epochs=2, buffer_size=500,
                     eval_episodes=1, log_interval=10)
    trainer = IRISTrainer("ALE/Pong-v5", device="cpu", seed=1, config=config)
    assert trainer.core is None  # nothing built yet
    mean = trainer.collect_experience(12)
    assert len(trainer.replay) >= 12 and (np.isnan(mean) or np.isfinite(mean))
    metrics = trainer.train_epoch(1)
    assert metrics["tokenizer/training"] == 1.0 and "world_model/loss" in metrics
    returns, videos, latents = trainer.evaluate(1, render=True)
    assert len(returns) == 1 and videos[0].shape[1:] == (64, 64, 3) and latents.shape[1] == 16
    summary = trainer.train(total_epochs=3, eval_interval=3, save_dir=str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "latest.pt").exists()
    assert summary["env_steps"] >= 30 and summary["updates"] > 0 and summary["eval_history"]
    frame = trainer.preprocess_frame(np.zeros((210, 160, 3), np.uint8))
    assert frame.shape == (3, 64, 64) and frame.dtype == np.float32


def test_categorical_sampling_follows_the_softmax_at_its_temperature():
    from distwm.blocks.layers import sample_categorical

    torch.manual_seed(0)
    logits = torch.tensor([0.0, 1.0, 2.0]).expand(20000, 3)
    for temperature in (1.0, 0.5):
        counts = torch.bincount(sample_categorical(logits, temperature), minlength=3).float() / 20000
        torch.testing.assert_close(counts, torch.softmax(logits[0] / temperature, -1), atol=0.015, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        sample_categorical(logits, 0.0)


@pytest.mark.skip_ok_in_ci("hardware, not an installable dependency: CPUs without AMX / AVX512-BF16")
@pytest.mark.skipif(not __import__("distwm.utils.precision", fromlist=["x"]).cpu_has_bf16(),
                    reason="this CPU has no native bf16 matmuls")
def test_bf16_autocast_and_channels_last_train_every_part_with_float32_codes():
    plain, fast = _core(imagine_horizon=4).agent, _core(imagine_horizon=4, autocast="bf16", channels_last=True).agent
    assert fast.tokenizer.encoder.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    frames = torch.rand(2, 3, 3, 64, 64)
    # the nearest-code search runs in float32 under autocast: the same codes as without it
    z = torch.randn(64, fast.config.embed_dim)
    with fast.precision():
        codes = fast.tokenizer.encoder.quantizer.nearest(z)
    assert torch.equal(codes, fast.tokenizer.encoder.quantizer.nearest(z))
    distances = torch.cdist(z, fast.tokenizer.encoder.quantizer.codebook)
    assert torch.equal(codes, distances.argmin(1))
    with fast.precision():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    # bf16 latents may pick another code for a few tokens (1 of these 24 on a CPU with AMX);
    # from the same codes, the bf16 decoder draws the float32 frames to bf16 rounding
    with torch.no_grad():
        flat = frames.flatten(0, -4)
        plain_codes = plain.tokenizer.encode(flat)
        with fast.precision():
            fast_codes = fast.tokenizer.encode(flat)
            fast_frames = fast.tokenizer.decode(plain_codes).float()
        assert float((fast_codes == plain_codes).float().mean()) >= 0.9
        assert float((fast_frames - plain.tokenizer.decode(plain_codes)).abs().mean()) < 0.02
    assert fast.reconstruct(frames).dtype == torch.float32
    metrics = {**fast.update_autoencoder(frames[:, 0]),
               **fast.update_transformer(frames, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3),
                                         torch.zeros(2, 3))}
    rollout = fast.imagine_rollout(frames[:, 0], 4, burn_in_frames=frames)
    assert rollout["frames"].dtype == rollout["logits"].dtype == torch.float32
    metrics.update(fast.update_actor_critic(rollout))
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert all(metrics[f"{part}/skipped"] == 0.0 for part in ("tokenizer", "world_model", "actor_critic"))
    with pytest.raises(ValueError, match=r"autocast 'fp8'.*\('off', 'bf16'\)"):
        _config(autocast="fp8")
