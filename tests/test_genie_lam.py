"""Genie's latent action model (:mod:`distwm.models.genie.latent_action_model`): shapes, the
clip-level and the seed's (x_prev, x_next) interface, straight-through gradients, causality,
actions that depend on the next frame, both poolings, a few training steps and the checks."""

from __future__ import annotations

import pytest
import torch

from distwm.models.genie.latent_action_model import LatentActionModel, create_latent_action_model

TINY = dict(num_frames=4, image_size=16, in_channels=3, encoder_dim=32, decoder_dim=48,
            encoder_depth=1, decoder_depth=1, num_heads=2, patch_size=8, vocab_size=8,
            embedding_dim=8)


def tiny(**overrides) -> LatentActionModel:
    torch.manual_seed(0)
    return LatentActionModel(**{**TINY, **overrides})


def clip(batch: int = 2, frames: int = 4) -> torch.Tensor:
    return torch.rand(batch, 3, frames, 16, 16)


@pytest.mark.parametrize("pooling", ["mean", "windowed_attention"])
def test_clip_loss_shapes_range_and_composition(pooling):
    model = tiny(action_pooling=pooling, window_attention_heads=2, action_variance_weight=0.5)
    video = clip()
    with torch.no_grad():
        out = model.clip_loss(video)
    assert out["latent_actions"].shape == (2, 3) and out["latent_actions"].dtype == torch.int64
    assert 0 <= int(out["latent_actions"].min()) and int(out["latent_actions"].max()) < 8
    assert out["z_q"].shape == out["continuous_actions"].shape == (2, 3, 8)
    assert out["predictions"].shape == (2, 3, 3, 16, 16)
    assert 0.0 <= float(out["predictions"].min()) and float(out["predictions"].max()) <= 1.0
    # z_q are the codebook entries of the chosen actions
    torch.testing.assert_close(model.action_embeddings(out["latent_actions"]), out["z_q"])
    torch.testing.assert_close(out["recon_loss"], ((out["predictions"] - video[:, :, 1:]) ** 2).mean())
    torch.testing.assert_close(out["loss"], out["recon_loss"] + out["vq_loss"]
                               + 0.5 * out["action_variance_loss"])
    assert {"codebook_loss", "commitment_loss", "perplexity"} <= set(out)
    assert torch.equal(model.infer_actions(video), out["latent_actions"])


def test_seed_interface_is_the_clip_view():
    model = tiny().eval()
    video = clip()
    x_prev, x_next = video[:, :, :-1], video[:, :, -1]
    with torch.no_grad():
        actions, z_q = model.encode(x_prev, x_next)
        out = model(x_prev, x_next)
        reference = model.clip_loss(video)
        predicted = model.decode(x_prev, z_q)
    assert actions.shape == (2, 3) and z_q.shape == (2, 3, 8)
    assert torch.equal(actions, reference["latent_actions"])
    assert torch.equal(out["latent_actions"], actions)
    torch.testing.assert_close(out["loss"], reference["loss"])
    assert predicted.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out["reconstructed"], predicted)
    torch.testing.assert_close(predicted, reference["predictions"][:, :, -1])
    assert create_latent_action_model(**TINY).vq.commitment_weight == 1.0


@pytest.mark.parametrize("pooling", ["mean", "windowed_attention"])
def test_reconstruction_gradient_reaches_encoder_through_straight_through(pooling):
    model = tiny(action_pooling=pooling)
    model.clip_loss(clip())["recon_loss"].backward()
    params = [model.patch_embed.weight, model.encoder_pos.temporal, model.to_action.weight]
    if pooling == "windowed_attention":
        params.append(model.pool.query)
    for param in params:
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert model.vq.embedding.weight.grad is None


def test_actions_and_predictions_ignore_later_frames():
    model = tiny().eval()
    video = clip()
    changed = video.clone()
    changed[:, :, 2] = torch.rand(2, 3, 16, 16)  # frame 2 (0-based): the end of transition 1
    with torch.no_grad():
        a, b = model.clip_loss(video), model.clip_loss(changed)
    torch.testing.assert_close(a["continuous_actions"][:, 0], b["continuous_actions"][:, 0])
    assert not torch.allclose(a["continuous_actions"][:, 1], b["continuous_actions"][:, 1])
    torch.testing.assert_close(a["predictions"][:, :, 0], b["predictions"][:, :, 0])
    assert not torch.allclose(a["predictions"][:, :, 2], b["predictions"][:, :, 2])
    # the decoder: action t conditions the predictions of frames t+1.. only
    z_q = model.action_embeddings(torch.zeros(2, 3, dtype=torch.long))
    other = z_q.clone()
    other[:, 1] = model.action_embeddings(torch.full((2,), 5))
    with torch.no_grad():
        p, q = model.predict_next_frames(video[:, :, :3], z_q), model.predict_next_frames(video[:, :, :3], other)
    torch.testing.assert_close(p[:, :, 0], q[:, :, 0])
    assert not torch.allclose(p[:, :, 1], q[:, :, 1])


def test_different_next_frames_give_different_action_codes():
    model = tiny().eval()
    x_prev = clip(1, 3)
    x_next_a, x_next_b = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    with torch.no_grad():
        action_a = model.continuous_actions(torch.cat([x_prev, x_next_a[:, :, None]], 2))[0, -1]
        action_b = model.continuous_actions(torch.cat([x_prev, x_next_b[:, :, None]], 2))[0, -1]
        assert not torch.allclose(action_a, action_b)
        model.vq.embedding.weight.fill_(100.0)  # codes 2..7 far away from both
        model.vq.embedding.weight[3] = action_a
        model.vq.embedding.weight[6] = action_b
        codes_a, _ = model.encode(x_prev, x_next_a)
        codes_b, _ = model.encode(x_prev, x_next_b)
    assert int(codes_a[0, -1]) == 3 and int(codes_b[0, -1]) == 6
    # the earlier transitions are the same in both clips
    assert torch.equal(codes_a[:, :-1], codes_b[:, :-1])


@pytest.mark.parametrize("pooling", ["mean", "windowed_attention"])
def test_a_few_adam_steps_reduce_the_loss(pooling):
    model = tiny(action_pooling=pooling, window_attention_heads=2)
    video = clip()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(20):
        loss = model.clip_loss(video)["loss"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.clip_loss(video)["loss"].item() < 0.7 * first


def test_action_variance_loss():
    same = torch.zeros(4, 3, 8)
    assert LatentActionModel.action_variance_loss(same).item() == pytest.approx(0.99)
    spread = torch.randn(64, 3, 8) * 10.0
    assert LatentActionModel.action_variance_loss(spread).item() == 0.0
    assert LatentActionModel.action_variance_loss(torch.zeros(1, 1, 8)).item() == 0.0


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"action_pooling must be one of \('mean', "
                                         r"'windowed_attention'\), got 'max'"):
        tiny(action_pooling="max")
    with pytest.raises(ValueError, match=r"embedding_dim \(8\) must be a multiple of "
                                         r"window_attention_heads \(3\)"):
        tiny(action_pooling="windowed_attention", window_attention_heads=3)
    with pytest.raises(ValueError, match="window_attention_heads must be an integer >= 1, got 0"):
        tiny(window_attention_heads=0)
    with pytest.raises(ValueError, match=r"num_frames must be >= 2 \(one transition\), got 1"):
        tiny(num_frames=1)
    with pytest.raises(ValueError, match=r"image_size \(20\) must be a multiple of patch_size \(8\)"):
        tiny(image_size=20)
    with pytest.raises(ValueError, match="action_variance_weight must be >= 0"):
        tiny(action_variance_weight=-1.0)


def test_input_errors():
    model = tiny().eval()
    for bad in (clip(2, 1), clip(2, 5), torch.rand(2, 1, 3, 16, 16), torch.rand(2, 3, 3, 8, 8)):
        with pytest.raises(ValueError, match=r"LatentActionModel expects a video \(B, 3, T, 16, 16\) "
                                             r"with 2 <= T <= 4"):
            model.infer_actions(bad)
    with pytest.raises(ValueError, match=r"x_prev expects a video \(B, 3, T, 16, 16\) with 1 <= T <= 3"):
        model.encode(clip(2, 4), torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"x_next must be one frame \(B, C, H, W\) = \(2, 3, 16, 16\)"):
        model(clip(2, 3), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"one action per previous frame: z_q \(2, 3, 8\), got \(2, 2, 8\)"):
        model.decode(clip(2, 3), torch.zeros(2, 2, 8))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 8\)"):
        model.action_embeddings(torch.full((2, 3), 8))
