"""ModularRSSM: every encoder x decoder x backbone combination, image and vector observations."""

from __future__ import annotations

import itertools

import pytest
import torch

from distwm.models.modular_rssm import (
    BACKBONE_TYPES,
    DECODER_TYPES,
    ENCODER_TYPES,
    ConvDecoder,
    ConvEncoder,
    GRUBackbone,
    LSTMBackbone,
    MLPDecoder,
    MLPEncoder,
    ModularRSSM,
    TransformerBackbone,
    ViTEncoder,
    create_modular_rssm,
)

IMAGE = (3, 64, 64)
VECTOR = (5,)
TINY = dict(action_size=2, stoch_size=4, deter_size=8, embed_size=16, hidden_size=8, depth=2,
            hidden_sizes=[8], patch_size=16, vit_depth=1, num_heads=2, num_layers=1, context_length=4)


def _valid_combos():
    for enc, dec, backbone in itertools.product(ENCODER_TYPES, DECODER_TYPES, BACKBONE_TYPES):
        yield enc, dec, backbone, IMAGE
        if enc == "mlp" and dec == "mlp":
            yield enc, dec, backbone, VECTOR


@pytest.mark.parametrize("enc,dec,backbone,obs_shape", list(_valid_combos()))
def test_every_combination_trains_and_imagines(enc, dec, backbone, obs_shape):
    torch.manual_seed(0)
    model = create_modular_rssm(enc, dec, backbone, obs_shape=obs_shape, **TINY)
    steps, batch = 3, 2
    obs = torch.rand(steps, batch, *obs_shape) - 0.5
    actions = torch.rand(steps, batch, 2) * 2 - 1
    nonterms = torch.ones(steps, batch)
    priors, posteriors = model.observe_rollout(obs, actions, nonterms, model.init_state(batch, "cpu"), steps)
    for state in (priors, posteriors):
        assert state["stoch"].shape == (steps, batch, 4)
        assert state["deter"].shape == (steps, batch, 8)
        assert (state["std"] > 0).all()
    features = model.get_features(posteriors)
    obs_dist = model.decode_observation(features)
    assert obs_dist.event_shape == obs_shape and obs_dist.batch_shape == (steps, batch)
    kl = torch.distributions.kl_divergence(model.get_dist(posteriors["mean"], posteriors["std"]),
                                           model.get_dist(priors["mean"], priors["std"]))
    loss = (-obs_dist.log_prob(obs).mean() - model.decode_reward(features).log_prob(torch.zeros(steps, batch, 1)).mean()
            + kl.mean())
    loss.backward()
    for part in (model.encoder, model.decoder, model.backbone, model.reward_decoder):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), type(part).__name__

    actor = torch.nn.Linear(4 + 8, 2)
    start = model.detach_state(model.seq_to_batch(posteriors))
    imagined = model.imagine_rollout(lambda f: torch.tanh(actor(f)), start, horizon=4)
    assert imagined["stoch"].shape == (4, steps * batch, 4)
    imagined["deter"].sum().backward()
    assert actor.weight.grad is not None and actor.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("enc,dec", [("conv", "mlp"), ("vit", "mlp"), ("mlp", "conv"), ("conv", "conv")])
def test_image_only_components_are_refused_for_vector_observations(enc, dec):
    with pytest.raises(ValueError, match="needs image observations"):
        create_modular_rssm(enc, dec, "gru", obs_shape=VECTOR, **TINY)


@pytest.mark.parametrize("kwargs,match", [
    (dict(encoder_type="resnet"), "Unknown encoder type 'resnet'.*conv, mlp, vit"),
    (dict(decoder_type="pixelcnn"), "Unknown decoder type 'pixelcnn'"),
    (dict(backbone_type="mamba"), "Unknown backbone type 'mamba'.*gru, lstm, transformer"),
    (dict(obs_shape=(3, 64)), "obs_shape must be"),
    (dict(colour=True), "unknown argument.*colour"),
])
def test_factory_errors_name_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_modular_rssm(**kwargs)


def test_component_size_mismatches_are_refused():
    encoder = MLPEncoder(5, embed_size=16, hidden_sizes=[8])
    decoder = MLPDecoder(4, 8, 5, hidden_sizes=[8])
    with pytest.raises(ValueError, match="embeds to 16 values but the backbone expects embed_size=32"):
        ModularRSSM(encoder, decoder, GRUBackbone(2, 4, 8, 8, 32))
    with pytest.raises(ValueError, match="decoder reads 4\\+8 features"):
        ModularRSSM(encoder, decoder, GRUBackbone(2, 4, 16, 8, 16))
    with pytest.raises(ValueError, match="too small"):
        ConvEncoder((3, 32, 32), 16)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        ViTEncoder((3, 64, 64), 16, patch_size=7, num_heads=2)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TransformerBackbone(2, 4, 8, 18, num_heads=4)
    with pytest.raises(ValueError, match="64x64"):
        ConvDecoder(4, 8, (3, 32, 32))
    with pytest.raises(ValueError, match="unknown dist 'poisson'"):
        MLPDecoder(4, 8, 1, dist="poisson")


def test_decode_reward_without_reward_decoder_raises():
    model = create_modular_rssm("mlp", "mlp", "gru", obs_shape=VECTOR, reward_decoder=False, **TINY)
    with pytest.raises(ValueError, match="without a reward_decoder"):
        model.decode_reward(torch.zeros(1, 12))


@pytest.mark.parametrize("backbone_cls", [GRUBackbone, LSTMBackbone, TransformerBackbone])
def test_nonterm_zero_resets_the_history(backbone_cls):
    """At an episode start (nonterm 0) the step must not depend on the previous state or
    action: it equals a step from the initial state with a zero action."""
    torch.manual_seed(0)
    if backbone_cls is TransformerBackbone:
        backbone = backbone_cls(2, 4, 8, 16, num_heads=2, num_layers=1, context_length=4)
    else:
        backbone = backbone_cls(2, 4, 8, 8, 16)
    fresh = backbone.init_state(3, "cpu")
    # a state with a history: a few steps from the fresh one
    state = fresh
    for _ in range(3):
        _, state = backbone(state, torch.randn(3, 2), torch.randn(3, 16))
    action, embed = torch.randn(3, 2), torch.randn(3, 16)
    reset_prior, _ = backbone(state, action, embed, nonterm=torch.zeros(3))
    fresh_prior, _ = backbone(fresh, torch.zeros(3, 2), embed, nonterm=1.0)
    continued_prior, _ = backbone(state, action, embed, nonterm=torch.ones(3))
    torch.testing.assert_close(reset_prior["deter"], fresh_prior["deter"])
    torch.testing.assert_close(reset_prior["mean"], fresh_prior["mean"])
    assert not torch.allclose(continued_prior["deter"], fresh_prior["deter"])


def test_posterior_is_prior_without_observation_and_lstm_carries_cell():
    backbone = LSTMBackbone(2, 4, 8, 8, 16)
    state = backbone.init_state(2, "cpu")
    assert state["cell"].shape == (2, 8)
    prior, posterior = backbone(state, torch.zeros(2, 2))
    assert posterior is prior and "cell" in prior
    _, posterior = backbone(state, torch.zeros(2, 2), torch.randn(2, 16))
    assert not torch.equal(posterior["mean"], prior["mean"])


def test_observe_rollout_rejects_a_horizon_beyond_the_data():
    model = create_modular_rssm("mlp", "mlp", "gru", obs_shape=VECTOR, **TINY)
    with pytest.raises(ValueError, match="horizon 5 exceeds"):
        model.observe_rollout(torch.zeros(3, 1, 5), torch.zeros(3, 1, 2), torch.ones(3, 1),
                              model.init_state(1, "cpu"), 5)


def test_conv_components_match_the_seed_signatures():
    encoder = ConvEncoder((3, 64, 64), embed_size=32, depth=4)
    assert encoder(torch.zeros(5, 3, 64, 64)).shape == (5, 32) and encoder.get_embed_size() == 32
    dist = ConvDecoder(4, 8, (3, 64, 64), depth=4)(torch.zeros(5, 12))
    assert dist.batch_shape == (5,) and dist.event_shape == (3, 64, 64)
    assert MLPDecoder(4, 8, 1)(torch.zeros(5, 12)).batch_shape == (5,)
