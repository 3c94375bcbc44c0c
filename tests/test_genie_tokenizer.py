"""Genie's video tokenizer (:mod:`distwm.vision.video_tokenizer`): shapes, pixels in [0, 1],
straight-through gradients, causality in time, the cached frame-by-frame path against a full
call, a few training steps, the EMA codebook and every input check."""

from __future__ import annotations

import pytest
import torch

from distwm.vision.video_tokenizer import (VideoTokenizer, create_video_tokenizer, patchify,
                                           unpatchify)

TINY = dict(num_frames=4, image_size=16, in_channels=3, encoder_dim=32, decoder_dim=48,
            encoder_depth=1, decoder_depth=1, num_heads=2, patch_size=4, vocab_size=64,
            embedding_dim=8)


def tiny(**overrides) -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(**{**TINY, **overrides})


def clip(batch: int = 2, frames: int = 4) -> torch.Tensor:
    return torch.rand(batch, 3, frames, 16, 16)


def test_patchify_round_trip_and_layout():
    video = clip()
    patches = patchify(video, 4)
    assert patches.shape == (2, 4, 16, 48)
    # patch 1 of frame 2 is the top row, second column block, flattened as (C, p, p)
    torch.testing.assert_close(patches[1, 2, 1], video[1, :, 2, 0:4, 4:8].reshape(-1))
    torch.testing.assert_close(unpatchify(patches, 4, 3, 4), video)


def test_shapes_dtypes_range_and_loss_keys():
    model = tiny()
    video = clip()
    with torch.no_grad():
        reconstructed, indices, losses = model(video)
    assert reconstructed.shape == video.shape and reconstructed.dtype == torch.float32
    assert 0.0 <= float(reconstructed.min()) and float(reconstructed.max()) <= 1.0
    assert indices.shape == (2, 4, 4, 4) and indices.dtype == torch.int64
    assert int(indices.min()) >= 0 and int(indices.max()) < 64
    assert {"loss", "recon_loss", "vq_loss", "commitment_loss", "codebook_loss",
            "perplexity"} <= set(losses)
    torch.testing.assert_close(losses["loss"], losses["recon_loss"] + losses["vq_loss"])
    torch.testing.assert_close(losses["recon_loss"], ((reconstructed - video) ** 2).mean())
    z_q, enc_indices, _ = model.encode(video)
    z_q = z_q.detach()
    assert z_q.shape == (2, 4, 4, 4, 8)
    assert torch.equal(enc_indices, indices)
    # the tokens' embeddings are the codebook entries, by grid or by flat index
    torch.testing.assert_close(model.decode_indices(indices), z_q)
    torch.testing.assert_close(model.decode_indices(indices.reshape(2, 4, 16)), z_q)
    torch.testing.assert_close(model.decode(model.decode_indices(indices)), reconstructed)
    assert create_video_tokenizer(**TINY).vq.commitment_weight == 0.25


def test_gradients_reach_encoder_through_straight_through_estimator():
    model = tiny()
    _, _, losses = model(clip())
    losses["recon_loss"].backward()  # reconstruction only: it passes the quantiser straight through
    for param in (model.patch_embed.weight, model.encoder_pos.temporal, model.to_vq_embedding.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert model.vq.embedding.weight.grad is None  # the codebook learns from the codebook loss only
    model.zero_grad()
    model(clip())[2]["loss"].backward()
    assert model.vq.embedding.weight.grad.abs().sum() > 0


def test_tokens_and_reconstruction_of_a_frame_ignore_later_frames():
    model = tiny().eval()
    video = clip()
    changed = video.clone()
    changed[:, :, 2] = torch.rand(2, 3, 16, 16)
    rec_a, idx_a, _ = model(video)
    rec_b, idx_b, _ = model(changed)
    assert torch.equal(idx_a[:, :2], idx_b[:, :2])
    torch.testing.assert_close(rec_a[:, :, :2], rec_b[:, :, :2])
    assert (idx_a[:, 2] != idx_b[:, 2]).any()
    # the decoder alone: changing the tokens of frame 2 changes frames 2.. only
    z_q = model.decode_indices(idx_a)
    z_changed = z_q.clone()
    z_changed[:, 2] = model.decode_indices((idx_a[:, 2:3] + 1) % 64)[:, 0]
    a, b = model.decode(z_q), model.decode(z_changed)
    torch.testing.assert_close(a[:, :, :2], b[:, :, :2])
    assert not torch.allclose(a[:, :, 2:], b[:, :, 2:])


@pytest.mark.parametrize("chunk", [1, 2])
def test_cached_frame_by_frame_equals_full_call(chunk):
    model = tiny(encoder_depth=2, decoder_depth=2).eval()
    with torch.no_grad():  # frame positions that matter (a trained model's, not the init's 0.02)
        model.encoder_pos.temporal.normal_()
        model.decoder_pos.temporal.normal_()
    video = clip()
    z_full, idx_full, _ = model.encode(video)
    rec_full = model.decode(z_full)
    encoder_cache, decoder_cache = model.init_cache(2)
    for start in range(0, 4, chunk):
        z, idx, _ = model.encode(video[:, :, start:start + chunk], cache=encoder_cache)
        rec = model.decode(z, cache=decoder_cache)
        assert torch.equal(idx, idx_full[:, start:start + chunk])
        torch.testing.assert_close(z, z_full[:, start:start + chunk])
        torch.testing.assert_close(rec, rec_full[:, :, start:start + chunk], atol=1e-5, rtol=1e-4)
    assert encoder_cache.length == decoder_cache.length == 4
    # frames already shown fill the decoder cache without being decoded
    decoder_cache = model.init_cache(2)[1]
    model.fill_decoder_cache(z_full[:, :2], decoder_cache)
    assert decoder_cache.length == 2
    torch.testing.assert_close(model.decode(z_full[:, 2:], cache=decoder_cache),
                               rec_full[:, :, 2:], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="needs the decoder cache"):
        model.fill_decoder_cache(z_full[:, :1], None)


def test_a_few_adam_steps_reduce_the_loss():
    model = tiny()
    video = clip()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = model(video)[2]["loss"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(video)[2]["loss"].item() < 0.7 * first


def test_ema_codebook_moves_in_training_only():
    model = tiny(use_ema=True, ema_decay=0.9)
    video = clip()
    before = model.vq.embedding.clone()
    model.eval()
    _, _, losses = model(video)
    assert torch.equal(model.vq.embedding, before) and float(losses["codebook_loss"]) == 0.0
    model.train()
    model(video)
    assert not torch.equal(model.vq.embedding, before)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"image_size \(18\) must be a multiple of patch_size \(4\)"):
        tiny(image_size=18)
    with pytest.raises(ValueError, match="num_frames must be an integer >= 1, got 0"):
        tiny(num_frames=0)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        tiny(num_heads=3)


def test_input_errors():
    model = tiny().eval()
    for bad in (torch.rand(2, 1, 4, 16, 16), torch.rand(2, 3, 4, 16, 12), torch.rand(2, 3, 5, 16, 16),
                torch.rand(3, 4, 16, 16)):
        with pytest.raises(ValueError, match=r"VideoTokenizer.encode expects a video \(B, 3, T, 16, 16\) "
                                             r"with 1 <= T <= 4, got shape"):
            model.encode(bad)
    with pytest.raises(ValueError, match="float pixels"):
        model(torch.zeros(1, 3, 2, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"decode expects z_q \(B, T, 4, 4, 8\) with 1 <= T <= 4"):
        model.decode(torch.zeros(1, 2, 16, 8))
    with pytest.raises(ValueError, match=r"decode_indices expects \(B, T, 4, 4\) or \(B, T, 16\)"):
        model.decode_indices(torch.zeros(1, 2, 15, dtype=torch.long))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 64\)"):
        model.decode_indices(torch.full((1, 2, 16), 64))


def test_cache_errors():
    model = tiny().eval()
    with pytest.raises(ValueError, match=r"capacity \(5\) exceeds the tokenizer's num_frames \(4\)"):
        model.init_cache(1, capacity=5)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        model.init_cache(0)
    encoder_cache, decoder_cache = model.init_cache(1, capacity=2)
    model.encode(clip(1, 2), cache=encoder_cache)
    with pytest.raises(ValueError, match="the cache holds 2 frames and room for 2; 1 more do not fit"):
        model.encode(clip(1, 1), cache=encoder_cache)
    with pytest.raises(ValueError, match="does not belong to this transformer and a batch of 2"):
        model.encode(clip(2, 1), cache=model.init_cache(1)[0])
    z_q = model.encode(clip(1, 1))[0]
    with pytest.raises(ValueError, match="VideoTokenizer.decode: the cache does not belong"):
        model.decode(z_q, cache=encoder_cache)  # the encoder's cache, not the decoder's
    with pytest.raises(ValueError, match="cache must be a TemporalKVCache"):
        model.decode(z_q, cache=(encoder_cache, decoder_cache))
