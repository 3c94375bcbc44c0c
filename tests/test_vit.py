"""The I-JEPA Vision Transformer (distwm.models.vit): sin-cos embeddings, masking, the
predictor, initialisation, the size table, stochastic depth and the modular RSSM's ViT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from distwm.models import vit
from distwm.utils.jepa_utils import apply_masks, repeat_interleave_batch


def _tiny_encoder(**kwargs):
    options = dict(img_size=[16], patch_size=4, embed_dim=16, depth=2, num_heads=2)
    options.update(kwargs)
    return vit.VisionTransformer(**options)


def _indices(batch, keep, num_patches, generator):
    return torch.stack([torch.randperm(num_patches, generator=generator)[:keep] for _ in range(batch)])


# -- sin-cos position embeddings -----------------------------------------------------------

def test_1d_sincos_matches_the_formula():
    dim, positions = 8, np.array([0.0, 1.0, 5.0])
    emb = vit.get_1d_sincos_pos_embed_from_grid(dim, positions)
    assert emb.shape == (3, dim)
    for m, p in enumerate(positions):
        for d in range(dim // 2):
            omega = 1.0 / 10000 ** (2 * d / dim)
            assert emb[m, d] == pytest.approx(math.sin(p * omega))
            assert emb[m, dim // 2 + d] == pytest.approx(math.cos(p * omega))
    with_cls = vit.get_1d_sincos_pos_embed(dim, 4, cls_token=True)
    assert with_cls.shape == (5, dim) and not with_cls[0].any()
    np.testing.assert_allclose(with_cls[1:], vit.get_1d_sincos_pos_embed_from_grid(dim, np.arange(4.0)))


def test_2d_sincos_encodes_row_then_column():
    dim, size = 16, 3
    emb = vit.get_2d_sincos_pos_embed(dim, size)
    assert emb.shape == (size * size, dim)
    one_d = vit.get_1d_sincos_pos_embed_from_grid(dim // 2, np.arange(float(size)))
    for row in range(size):
        for col in range(size):
            k = row * size + col  # row-major patch order
            # ijepa's meshgrid puts the column (w) coordinate first
            np.testing.assert_allclose(emb[k, : dim // 2], one_d[col])
            np.testing.assert_allclose(emb[k, dim // 2:], one_d[row])
    rect = vit.get_2d_sincos_pos_embed(dim, (2, 3), cls_token=True)
    assert rect.shape == (1 + 6, dim) and not rect[0].any()
    with pytest.raises(ValueError, match="divisible by 4"):
        vit.get_2d_sincos_pos_embed(6, 3)


# -- encoder ----------------------------------------------------------------------------------

def test_encoder_shapes_and_fixed_positions():
    enc = _tiny_encoder()
    x = torch.rand(3, 3, 16, 16)
    assert enc(x).shape == (3, 16, 16)
    assert not enc.pos_embed.requires_grad
    np.testing.assert_allclose(enc.pos_embed[0].numpy(), vit.get_2d_sincos_pos_embed(16, 4), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    masks = [_indices(3, 5, 16, g), _indices(3, 5, 16, g)]
    assert enc(x, masks).shape == (2 * 3, 5, 16)
    assert enc(x, masks[0]).shape == (3, 5, 16)  # a lone tensor is one mask


def test_masked_encoder_sees_exactly_the_indexed_patches():
    """Tokens outside the mask must not influence the output; the output equals running the
    blocks on the gathered, position-embedded patch tokens."""
    torch.manual_seed(0)
    enc = _tiny_encoder().eval()
    x = torch.rand(2, 3, 16, 16)
    mask = torch.tensor([[0, 5, 10, 15], [3, 2, 1, 0]])
    out = enc(x, [mask])
    tokens = enc.patch_embed(x) + enc.pos_embed
    kept = torch.stack([tokens[b, mask[b]] for b in range(2)])
    for block in enc.blocks:
        kept = block(kept)
    torch.testing.assert_close(out, enc.norm(kept))
    # change every pixel of a patch that is not kept in sample 0: its output stays the same
    x2 = x.clone()
    x2[0, :, 4:8, 4:8] = 0.0  # patch (1, 1) = index 5 is kept; patch index 6 is (1, 2)
    x3 = x.clone()
    x3[0, :, 4:8, 8:12] = 0.0  # index 6: not kept
    torch.testing.assert_close(enc(x3, [mask]), out)
    assert not torch.allclose(enc(x2, [mask])[0], out[0])


def test_interpolated_positions_for_another_image_size():
    enc = _tiny_encoder()
    assert enc(torch.rand(1, 3, 24, 24)).shape == (1, 36, 16)


def test_init_rescales_block_outputs_by_depth():
    torch.manual_seed(0)
    enc = _tiny_encoder(embed_dim=64, depth=3, num_heads=2, img_size=[8])
    assert all(not b.attn.qkv.bias.any() for b in enc.blocks)
    for layer_id, block in enumerate(enc.blocks, start=1):
        std = block.mlp.fc2.weight.std().item()
        assert std == pytest.approx(0.02 / math.sqrt(2 * layer_id), rel=0.15)
        assert block.mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.15)
        assert block.mlp.fc1.weight.abs().max().item() <= 2.0  # truncated at +-2 (absolute)


def test_size_table():
    expected = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12),
                "vit_large": (1024, 24, 16), "vit_huge": (1280, 32, 16), "vit_giant": (1408, 40, 16)}
    assert {k: v[:3] for k, v in vit.VIT_SIZES.items()} == expected
    assert vit.VIT_SIZES["vit_giant"][3] == pytest.approx(48 / 11)
    model = vit.vit_tiny(patch_size=16, img_size=[32])
    assert (model.embed_dim, len(model.blocks), model.num_heads) == (192, 12, 3)
    assert model.blocks[0].mlp.fc1.out_features == 4 * 192
    assert isinstance(model.norm, nn.LayerNorm) and model.norm.eps == 1e-6
    with pytest.raises(ValueError, match="unknown arguments"):
        vit.vit_tiny(img_size=[32], num_clases=10)


# -- predictor ------------------------------------------------------------------------------

def test_predictor_shapes_and_target_positions():
    torch.manual_seed(0)
    enc = _tiny_encoder()
    pred = vit.vit_predictor(num_patches=16, embed_dim=16, predictor_embed_dim=8, depth=2, num_heads=2)
    assert pred.predictor_pos_embed.shape == (1, 16, 8) and not pred.predictor_pos_embed.requires_grad
    x = torch.rand(3, 3, 16, 16)
    g = torch.Generator().manual_seed(1)
    masks_x = [_indices(3, 6, 16, g)]
    masks = [_indices(3, 4, 16, g) for _ in range(4)]
    out = pred(enc(x, masks_x), masks_x, masks)
    assert out.shape == (4 * 3, 4, 16)
    # target-mask-major like apply_masks on the targets
    targets = apply_masks(enc(x), masks)
    assert targets.shape == out.shape
    # the prediction of a target block depends on where it is
    moved = [torch.roll(m, 1, dims=1) for m in masks]
    assert not torch.allclose(pred(enc(x, masks_x), masks_x, moved), out)
    with pytest.raises(ValueError, match="needs the context masks"):
        pred(enc(x, masks_x), None, masks)


def test_predictor_with_two_context_masks_repeats_targets_per_context():
    pred = vit.vit_predictor(num_patches=16, embed_dim=16, predictor_embed_dim=8, depth=1, num_heads=2)
    ctx = torch.rand(2 * 3, 5, 16)  # two context masks, batch 3
    g = torch.Generator().manual_seed(2)
    masks_x = [_indices(3, 5, 16, g) for _ in range(2)]
    masks = [_indices(3, 4, 16, g) for _ in range(3)]
    assert pred(ctx, masks_x, masks).shape == (3 * 2 * 3, 4, 16)


def test_apply_masks_and_repeat_interleave_batch():
    x = torch.arange(2 * 4 * 1.0).reshape(2, 4, 1)
    got = apply_masks(x, [torch.tensor([[3, 0], [1, 2]]), torch.tensor([[2, 2], [0, 0]])])
    assert got.squeeze(-1).tolist() == [[3, 0], [5, 6], [2, 2], [4, 4]]
    chunks = torch.tensor([0, 1, 2, 3])  # two chunks of B=2
    assert repeat_interleave_batch(chunks, 2, repeat=2).tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    with pytest.raises(ValueError, match="patch indices"):
        apply_masks(x, [torch.tensor([1, 2])])


# -- layers ---------------------------------------------------------------------------------

def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 2)
    out = vit.drop_path(x, 0.25, training=True)
    per_sample = out.reshape(4000, -1)
    assert ((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all()
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert vit.drop_path(x, 0.25, training=False) is x
    module = vit.DropPath()
    assert module.drop_prob == 0.0
    module = vit.DropPath(0.5).train()
    assert set(module(torch.ones(64, 2)).unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(module.eval()(torch.ones(3, 2)), torch.ones(3, 2))


def test_attention_matches_the_explicit_softmax():
    torch.manual_seed(0)
    attn = vit.Attention(8, num_heads=2, qkv_bias=True, qk_scale=0.3)
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = ((q @ k.transpose(-2, -1)) * 0.3).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x), expected)


def test_patch_and_conv_embeddings():
    patch = vit.PatchEmbed(img_size=(8, 12), patch_size=4, in_chans=1, embed_dim=6)
    assert patch.grid_size == (2, 3) and patch.num_patches == 6
    assert patch(torch.rand(2, 1, 8, 12)).shape == (2, 6, 6)
    conv = vit.ConvEmbed(channels=[4, 8, 16], strides=[2, 2, 1], img_size=16, in_chans=3)
    assert conv.num_patches == 16
    assert conv(torch.rand(2, 3, 16, 16)).shape == (2, 16, 16)
    block = vit.Block(8, 2, drop_path=0.1)
    assert isinstance(block.drop_path, vit.DropPath)
    assert block(torch.rand(2, 3, 8)).shape == (2, 3, 8)


# -- the modular RSSM's ViT encoder uses these layers -----------------------------------------

def test_modular_rssm_vit_encoder_uses_the_vit_layers():
    from distwm.models.modular_rssm import ViTEncoder

    torch.manual_seed(0)
    enc = ViTEncoder((3, 16, 24), embed_size=16, patch_size=8, depth=2, num_heads=2)
    assert isinstance(enc.patch_embed, vit.PatchEmbed) and all(isinstance(b, vit.Block) for b in enc.blocks)
    table = vit.get_2d_sincos_pos_embed(16, (2, 3), cls_token=True)
    np.testing.assert_allclose(enc.pos_embed[0].detach().numpy(), table, atol=1e-6)
    out = enc(torch.rand(4, 2, 3, 16, 24) - 0.5)
    assert out.shape == (4, 2, 16)
    out.sum().backward()
    assert enc.pos_embed.grad is not None  # learned, initialised from the sin-cos table
    odd = ViTEncoder((3, 16, 16), embed_size=18, patch_size=8, depth=1, num_heads=2)
    assert odd(torch.rand(1, 3, 16, 16)).shape == (1, 18)
