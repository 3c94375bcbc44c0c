"""Dreamer networks: shapes for every version and observation kind, heads that decode what
they encode, the RSSM's sequence paths, and the one-hot fast path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamer_helpers import OBS_CASES, observation, random_batch, tiny_config
from distwm.models.dreamer import Dreamer
from distwm.blocks.dreamer_blocks import MLP, OneHotFeatures
from distwm.vision.dreamer_decoder import ActionDecoder, ConvDecoder, DenseDecoder
from distwm.vision.dreamer_encoder import ConvEncoder
from distwm.models.dreamer_rssm import RSSM
from distwm.utils.dreamer_utils import symlog


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
@pytest.mark.parametrize("obs", sorted(OBS_CASES))
def test_world_model_and_policy_shapes(version, obs):
    shapes = OBS_CASES[obs]
    discrete = version != "v1"
    agent = Dreamer(tiny_config(version), shapes, 3, "cpu", discrete=discrete)
    batch = random_batch(shapes, 3, discrete)
    data = agent._batch_to_tensors(batch)
    loss, post, metrics = agent.model_loss(data)
    rssm = agent.world_model.rssm
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert post["stoch"].shape == (2, 6, rssm.stoch_dim)
    assert post["deter"].shape == (2, 6, agent.args.deter_size)
    for key in shapes:
        assert f"{key}_loss" in metrics
    decoded = agent.world_model.decoder(rssm.get_feat(post))
    for key, shape in shapes.items():
        assert decoded[key].mode().shape == (2, 6, *shape)
    imag = agent.imagine(post, data["is_terminal"])
    horizon = agent.args.imagine_horizon
    assert imag.action.shape == (horizon + 1, 12, 3)
    assert imag.returns.shape == (horizon, 12) and imag.weight.shape == (horizon + 1, 12)
    actions, state = agent.act(observation(shapes, 4), None, explore=True)
    assert actions.shape == (4, 3) and actions.dtype == np.float32
    if discrete:
        assert np.array_equal(actions.sum(-1), np.ones(4)) and set(np.unique(actions)) <= {0.0, 1.0}
    actions, _ = agent.act(observation(shapes, 4, first=False), state, explore=False)
    assert np.all(np.abs(actions) <= 1.0)


def test_continuous_v3_actions_are_bounded():
    agent = Dreamer(tiny_config("v3"), OBS_CASES["vector"], 2, "cpu", discrete=False)
    actions, _ = agent.act(observation(OBS_CASES["vector"], 64), None, explore=True)
    assert actions.shape == (64, 2) and np.all(np.abs(actions) <= 1.0)
    assert len(np.unique(actions)) > 10


def test_twohot_head_decodes_what_it_encodes():
    head = DenseDecoder(4, 4, (), 1, 8, "silu", "twohot", num_buckets=255, symlog_range=20.0)
    targets = torch.tensor([-1000.0, -3.5, 0.0, 0.25, 7.0, 12345.0])
    logits = torch.log(head.twohot.encode(symlog(targets)) + 1e-12)
    dist = head.dist_from_raw(logits)
    torch.testing.assert_close(dist.mode(), targets, rtol=1e-4, atol=1e-4)
    # the encoded value is the likeliest: a value a few buckets away scores lower
    assert torch.all(dist.log_prob(targets)[1:5] > dist.log_prob(targets + 5.0)[1:5])


def test_symlog_state_decoder_inverts_symlog():
    head = DenseDecoder(4, 4, (3,), 1, 8, "silu", "symlog_mse")
    target = torch.tensor([[-50.0, 0.5, 300.0]])
    dist = head.dist_from_raw(symlog(target))  # raw (1, 3): one row of 3 outputs
    torch.testing.assert_close(dist.mode(), target, rtol=1e-4, atol=1e-3)
    assert float(dist.log_prob(target)) == pytest.approx(0.0, abs=1e-6)


def test_binary_and_normal_heads():
    cont = DenseDecoder(4, 4, (), 1, 8, "elu", "binary").dist_from_raw(torch.tensor([[3.0], [-3.0]]))
    assert cont.mode().tolist() == [1.0, 0.0]
    normal = DenseDecoder(4, 4, (1,), 1, 8, "elu", "normal").dist_from_raw(torch.tensor([[2.0]]))
    assert normal.mode().item() == 2.0 and normal.log_prob(torch.tensor([[2.0]])).shape == (1,)


def test_conv_encoder_decoder_shapes():
    enc = ConvEncoder((3, 32, 32), None, "relu", depth=4)
    x = torch.zeros(5, 2, 3, 32, 32)
    assert enc(x).shape == (5, 2, enc.embed_size)
    assert ConvEncoder((3, 32, 32), 17, "relu", depth=4)(x).shape == (5, 2, 17)
    dec = ConvDecoder(6, 10, (3, 32, 32), "relu", depth=4)
    assert dec(torch.zeros(5, 16)).mode().shape == (5, 3, 32, 32)
    with pytest.raises(ValueError, match="power-of-two"):
        ConvEncoder((3, 48, 48), None, "relu")


def test_action_decoders():
    feat = torch.randn(7, 10)
    tanh = ActionDecoder(2, 6, 4, 1, 8, "elu", dist="tanh_normal")
    assert tanh(feat).shape == (7, 2) and torch.all(tanh(feat, deter=True).abs() <= 1)
    onehot = ActionDecoder(3, 6, 4, 1, 8, "elu", dist="onehot", unimix=0.01)
    noisy = onehot.add_exploration(onehot(feat), action_noise=1.0)
    assert torch.all(noisy.sum(-1) == 1)
    with pytest.raises(ValueError, match="dist"):
        ActionDecoder(2, 6, 4, 1, 8, "elu", dist="beta")
    with pytest.raises(ValueError, match="activation"):
        MLP(4, 4, 1, activation="swishy")


def test_rssm_resets_state_at_is_first():
    rssm = RSSM(2, 4, 8, 8, 5, "silu", stoch_classes=4, layer_norm=True, unimix=0.01,
                learned_initial_state=True)
    embed = torch.randn(1, 4, 5)
    actions = torch.randn(1, 4, 2)
    first = torch.tensor([[True, False, True, False]])
    post, prior = rssm.observe(embed, actions, first)
    assert prior["logits"].shape == (1, 4, 4, 4)
    # a reset at step 2 makes step 2 independent of steps 0..1 (later steps sample latents)
    post2, _ = rssm.observe(embed[:, 2:], actions[:, 2:], first[:, 2:])
    torch.testing.assert_close(post["deter"][:, 2], post2["deter"][:, 0])
    other, _ = rssm.observe(embed, actions, torch.tensor([[True, False, False, False]]))
    assert not torch.allclose(other["deter"][:, 2], post2["deter"][:, 0])


def test_seed_style_rollouts():
    rssm = RSSM(2, 3, 8, 8, 5, "elu")
    init = rssm.init_state(4)
    priors, posts = rssm.observe_rollout(torch.randn(6, 4, 5), torch.randn(5, 4, 2),
                                         torch.ones(5, 4, 1), init, 5)
    assert priors["mean"].shape == (5, 4, 3) and posts["deter"].shape == (5, 4, 8)
    states, actions = rssm.imagine_rollout(lambda f: torch.zeros(f.shape[0], 2), init, 3)
    assert states["stoch"].shape == (4, 4, 3) and actions.shape == (4, 4, 2)
    assert rssm.seq_to_batch(posts)["stoch"].shape == (20, 3)


def test_one_hot_features_match_dense_features():
    mlp = MLP(12 + 3, 8, 2, "silu", True, out_dim=5)
    index = torch.randint(0, 4, (6, 3)) + torch.arange(3) * 4
    feats = OneHotFeatures(index, torch.randn(6, 3), 12)
    torch.testing.assert_close(mlp(feats), mlp(feats.dense()))
    mlp(feats).sum().backward()
    sparse_grad = mlp[0].weight.grad.clone()
    mlp.zero_grad()
    mlp(feats.dense()).sum().backward()
    torch.testing.assert_close(sparse_grad, mlp[0].weight.grad)


def test_one_hot_imagination_equals_dense_imagination():
    torch.manual_seed(1)
    rssm = RSSM(2, 3, 8, 8, 5, "silu", stoch_classes=4, layer_norm=True, unimix=0.01)
    post, _ = rssm.observe(torch.randn(2, 3, 5), torch.randn(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool))
    start = {k: v.reshape(6, *v.shape[2:]).detach() for k, v in post.items()}
    policy_net = MLP(12 + 8, 4, 1, "silu", True, out_dim=2)
    with torch.no_grad():
        torch.manual_seed(2)
        feats, actions = rssm.imagine_onehot(policy_net, start, 3)
        torch.manual_seed(2)
        states, dense_actions = rssm.imagine_rollout(policy_net, start, 3, keys=("stoch", "deter"))
    torch.testing.assert_close(feats.dense(), rssm.get_feat(states))
    torch.testing.assert_close(actions, dense_actions)


def test_categorical_sample_is_one_hot_with_straight_through_gradient():
    from distwm.blocks.dreamer_distributions import OneHotDist

    logits = torch.randn(6, 3, 5, requires_grad=True)
    dist = OneHotDist(logits, unimix=0.01, event_dims=1)
    torch.manual_seed(3)
    sample = dist.sample()
    torch.manual_seed(3)
    index = dist.sample_index()
    torch.testing.assert_close(sample.detach(), torch.nn.functional.one_hot(index, 5).float())
    weights = torch.randn(6, 3, 5)
    (grad,) = torch.autograd.grad((sample * weights).sum(), logits, retain_graph=True)
    (expected,) = torch.autograd.grad((dist.probs * weights).sum(), logits)
    torch.testing.assert_close(grad, expected)
    assert not OneHotDist(logits.detach()).sample().requires_grad
