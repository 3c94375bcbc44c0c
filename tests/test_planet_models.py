"""PlaNet's RSSM, CNN encoder/decoder, reward/value heads, loss and one training step."""

from __future__ import annotations

import pytest
import torch

from distwm.models.planet import RecurrentStateSpaceModel
from distwm.models.planet.heads import RewardModel, ValueModel
from distwm.training.train_planet import train
from distwm.vision.planet_decoder import CNNDecoder
from distwm.vision.planet_encoder import CNNEncoder
from planet_testing import toy_memory


def _rssm(obs_shape=(4,), **kw):
    torch.manual_seed(0)
    return RecurrentStateSpaceModel(2, state_size=8, latent_size=3, hidden_size=8, embed_size=16,
                                    obs_shape=obs_shape, **kw)


def test_cnn_encoder_and_decoder_shapes():
    encoder = CNNEncoder(32)
    assert encoder(torch.zeros(2, 5, 3, 64, 64)).shape == (2, 5, 32)
    assert isinstance(CNNEncoder(1024).fc, torch.nn.Identity)
    decoder = CNNDecoder(state_size=8, latent_size=3, embedding_size=32)
    assert decoder(torch.zeros(2, 5, 3), torch.zeros(2, 5, 8)).shape == (2, 5, 3, 64, 64)
    with pytest.raises(ValueError, match="expects images shaped"):
        encoder(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expects \(\.\.\., 3\) and \(\.\.\., 8\)"):
        decoder(torch.zeros(2, 8), torch.zeros(2, 3))


def test_reward_and_value_heads():
    reward, value = RewardModel(8, 3, 16), ValueModel(8, 3, 16)
    assert reward(torch.zeros(4, 8), torch.zeros(4, 3)).shape == (4,)
    assert value(torch.zeros(6, 4, 8), torch.zeros(6, 4, 3)).shape == (6, 4)
    assert sum(isinstance(m, torch.nn.Linear) for m in value.modules()) == 4  # deeper than reward
    with pytest.raises(ValueError, match="RewardModel"):
        reward(torch.zeros(4, 3), torch.zeros(4, 8))


def test_rssm_steps_and_rollouts():
    rssm = _rssm()
    h, s = rssm.get_init_state(torch.randn(5, 16), mean=True)
    assert h.shape == (5, 8) and s.shape == (5, 3)
    h_again, s_again = rssm.get_init_state(torch.randn(5, 16) * 0 + 1, mean=True)
    torch.testing.assert_close(rssm.get_init_state(torch.ones(5, 16), mean=True)[1], s_again)
    # unbatched, [1, A] and scalar actions broadcast over the batch
    assert rssm.deterministic_state_fwd(h, s, torch.zeros(2)).shape == (5, 8)
    assert rssm.deterministic_state_fwd(h, s, torch.zeros(1, 2)).shape == (5, 8)
    with pytest.raises(ValueError, match="fits neither"):
        rssm.deterministic_state_fwd(h, s, torch.zeros(3))
    mean, std = rssm.state_prior(h)
    assert (std >= 0.1).all() and rssm.state_prior(h, sample=True).shape == (5, 3)
    assert rssm.pred_reward(h, s).shape == (5,)
    states, latents = rssm.rollout_prior(torch.zeros(7, 5, 2), h, s)
    assert states.shape == (7, 5, 8) and latents.shape == (7, 5, 3)


def test_prior_samples_follow_the_prior_distribution():
    rssm = _rssm()
    h = torch.randn(20000, 8)
    with torch.no_grad():
        mean, std = rssm.state_prior(h)
        z = (rssm.state_prior(h, sample=True) - mean) / std
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1.0) < 0.05


def test_forward_on_images_returns_lists_of_T():
    rssm = RecurrentStateSpaceModel(2, state_size=8, latent_size=3, hidden_size=8, embed_size=16)
    states, priors, posteriors = rssm(torch.rand(2, 4, 3, 64, 64) - 0.5, torch.zeros(2, 3, 2))
    assert len(states) == len(priors) == len(posteriors) == 3
    assert states[0].shape == (2, 8) and priors[0][0].shape == (2, 3) and posteriors[0][1].shape == (2, 3)
    with pytest.raises(ValueError, match="T\\+1 observations"):
        rssm(torch.zeros(2, 3, 3, 64, 64), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="must be \\(C, 64, 64\\)"):
        RecurrentStateSpaceModel(2, obs_shape=(3, 32, 32))


def test_is_first_resets_the_filter():
    """Observing a sequence with is_first at t equals observing the tail from scratch."""
    rssm = _rssm()
    embeds, actions = torch.randn(6, 2, 16), torch.randn(6, 2, 2)
    is_first = torch.zeros(6, 2)
    is_first[0] = 1
    is_first[3] = 1
    torch.manual_seed(1)
    whole = rssm.observe(embeds, actions, is_first)
    torch.manual_seed(1)
    rssm.observe(embeds[:3], actions[:3], is_first[:3])  # same random draws for the head
    tail = rssm.observe(embeds[3:], actions[3:], is_first[3:])
    torch.testing.assert_close(whole.states[3:], tail.states)
    torch.testing.assert_close(whole.posterior_mean[3:], tail.posterior_mean)


def test_a_planet_training_step_updates_every_part_and_lowers_the_loss():
    rssm = _rssm()
    optimizer = torch.optim.Adam(rssm.parameters(), lr=3e-3)
    memory = toy_memory()
    before = {k: v.clone() for k, v in rssm.state_dict().items()}
    torch.manual_seed(0)
    first = train(memory, rssm, optimizer, "cpu", N=8, H=10, grads=True, free_nats=0.0)
    for key in ("loss", "obs_loss", "reward_loss", "kl_loss", "grad_norm", "grad_norm/encoder",
                "grad_norm/reward_model"):
        assert key in first and torch.isfinite(torch.tensor(first[key])), key
    changed = [k for k, v in rssm.state_dict().items() if not torch.equal(v, before[k])]
    for part in ("encoder", "decoder", "rnn", "fc_prior", "fc_posterior", "reward_model"):
        assert any(k.startswith(part) for k in changed), part
    losses = [train(memory, rssm, optimizer, "cpu", N=8, H=10, free_nats=0.0)["loss"] for _ in range(80)]
    assert sum(losses[-10:]) / 10 < 0.5 * first["loss"]


def test_free_nats_clip_the_kl_term():
    rssm = _rssm()
    optimizer = torch.optim.SGD(rssm.parameters(), lr=0.0)
    metrics = train(toy_memory(), rssm, optimizer, "cpu", N=4, H=5, free_nats=1000.0)
    assert metrics["kl_loss"] == pytest.approx(1000.0)
    assert metrics["kl"] < 1000.0
