"""IRIS's tokenizer (distwm.vision.iris_encoder / iris_decoder): the reference layout (64x64
frames -> 4x4 tokens), token grids, the shared codebook, gradients, a learning check, bad input."""

from __future__ import annotations

import pytest
import torch

from distwm.vision.iris_decoder import DiscreteAutoencoder, IRISDecoder, UpsampleBlock
from distwm.vision.iris_encoder import IRISEncoder, ResidualBlock, SelfAttentionBlock


def test_reference_layout_64x64_frames_to_16_tokens():
    torch.manual_seed(0)
    encoder = IRISEncoder()  # the seed's defaults: 512 codes of dim 512, 16 tokens, 64 channels
    downsamplings = [m for m in encoder.net if m.__class__.__name__ == "_Downsample"]
    attention = [m for m in encoder.net if isinstance(m, SelfAttentionBlock)]
    assert len(downsamplings) == 4  # 64 -> 32 -> 16 -> 8 -> 4
    assert len(attention) == 2 * 2 + 1  # two per block at 16x16 and 8x8, one in the middle
    assert encoder.quantizer.codebook.shape == (512, 512)
    assert encoder.quantizer.commitment_weight == 1.0  # IRIS's beta
    with torch.no_grad():
        z_q, indices, losses = encoder(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert z_q.shape == (2, 512, 4, 4) and indices.shape == (2, 4, 4)
    assert {"codebook_loss", "commitment_loss", "vq_loss", "perplexity"} <= set(losses)


def small(**kw) -> DiscreteAutoencoder:
    torch.manual_seed(0)
    return DiscreteAutoencoder(**{"vocab_size": 32, "tokens_per_frame": 16, "embedding_dim": 16,
                                  "base_channels": 32, "frame_shape": (3, 16, 16), **kw})


def test_token_grid_follows_tokens_per_frame_and_decodes_both_index_layouts():
    ae = small(tokens_per_frame=64)  # 16x16 frames -> 8x8 tokens
    x = torch.rand(3, 3, 16, 16)
    recon, indices, _ = ae(x)
    assert recon.shape == x.shape and indices.shape == (3, 8, 8)
    assert ae.decoder.embedding is ae.encoder.quantizer.embedding  # one codebook
    assert torch.equal(ae.encode(x), indices)
    torch.testing.assert_close(ae.decode(indices), ae.decode(indices.reshape(3, 64)))
    z = ae.encoder.decode_from_indices(indices)
    torch.testing.assert_close(ae.decoder(z), ae.decoder.decode_from_embeddings(z.flatten(2).transpose(1, 2)))


def test_reconstruction_gradient_reaches_the_encoder_through_the_quantiser():
    ae = small()
    _, _, losses = ae(torch.rand(2, 3, 16, 16))
    grads = torch.autograd.grad(losses["reconstruction_loss"], [ae.encoder.net[0].weight,
                                                                 ae.encoder.quantizer.embedding.weight],
                                allow_unused=True)
    assert grads[0] is not None and float(grads[0].abs().sum()) > 0  # straight through
    assert grads[1] is None  # the codebook learns from the codebook loss only
    assert "perceptual_loss" not in losses  # no LPIPS weights given: the term is left out
    torch.testing.assert_close(losses["loss"], losses["vq_loss"] + losses["reconstruction_loss"])


def test_a_given_perceptual_term_is_added():
    ae = small(perceptual=lambda x, y: (x - y).pow(2).mean((1, 2, 3)))
    _, _, losses = ae(torch.rand(2, 3, 16, 16))
    torch.testing.assert_close(losses["loss"], losses["vq_loss"] + losses["reconstruction_loss"]
                               + losses["perceptual_loss"])


def test_a_squared_error_term_is_added_at_its_weight_and_is_off_by_default():
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 16, 16)
    _, _, plain = small()(frames)
    assert "reconstruction_l2_loss" not in plain  # IRIS: L1 only
    torch.manual_seed(0)
    output, _, losses = small(l2_weight=10.0)(frames)
    torch.testing.assert_close(losses["reconstruction_l2_loss"], ((output * 2 - 1) - (frames * 2 - 1)).pow(2).mean())
    torch.testing.assert_close(losses["loss"], losses["vq_loss"] + losses["reconstruction_loss"]
                               + 10.0 * losses["reconstruction_l2_loss"])
    with pytest.raises(ValueError, match="l2_weight must be a number >= 0, got -1"):
        small(l2_weight=-1)


def test_the_tokenizer_learns_to_reconstruct_a_small_set_of_frames():
    ae = small()
    frames = torch.zeros(8, 3, 16, 16)
    for i in range(8):  # bright squares at different places on a dark background
        r, c = divmod(i, 4)
        frames[i, i % 3, 4 * r:4 * r + 8, 4 * c:4 * c + 4] = 1.0
    optimizer = torch.optim.Adam(ae.parameters(), lr=1e-3)
    first = None
    for _ in range(60):
        _, _, losses = ae(frames)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        first = first if first is not None else float(losses["reconstruction_loss"].detach())
    assert float(losses["reconstruction_loss"]) < 0.5 * first


def test_blocks_keep_shapes():
    x = torch.randn(2, 32, 8, 8)
    assert ResidualBlock(32)(x).shape == x.shape
    assert SelfAttentionBlock(32)(x).shape == x.shape
    assert UpsampleBlock(32, 32, 64)(x).shape == (2, 64, 16, 16)


def test_bad_configs_and_inputs_are_named():
    with pytest.raises(ValueError, match="tokens_per_frame must be a square.*12"):
        IRISEncoder(tokens_per_frame=12)
    with pytest.raises(ValueError, match="cannot be halved.*3x3"):
        IRISEncoder(tokens_per_frame=9)
    with pytest.raises(ValueError, match="multiple of 32.*48"):
        IRISDecoder(base_channels=48)
    ae = small()
    with pytest.raises(ValueError, match=r"frames \(B, 3, 16, 16\).*\(2, 3, 32, 32\)"):
        ae.encoder(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        ae(torch.full((1, 3, 16, 16), 255.0))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        ae.decode(torch.full((1, 16), 40))
