"""Shared blocks against references computed here: distwm.blocks.returns, distwm.blocks.mhsa."""

import math

import numpy as np
import pytest
import torch

from distwm.blocks.returns import (
    TwoHotEncoder,
    compute_lambda_return,
    compute_return,
    symexp,
    symlog,
)


def _reference_lambda_returns(rewards, values, discounts, lam):
    """Batch-major lambda returns by an explicit backward loop over Python floats."""
    rewards, values, discounts = (np.asarray(a, dtype=np.float64)
                                  for a in (rewards, values, discounts))
    batch, horizon = rewards.shape
    out = np.zeros((batch, horizon))
    for b in range(batch):
        nxt = values[b, horizon]
        for t in reversed(range(horizon)):
            nxt = rewards[b, t] + discounts[b, t] * ((1 - lam) * values[b, t + 1] + lam * nxt)
            out[b, t] = nxt
    return out


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_lambda_returns_match_backward_loop(lam):
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    values = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    discounts = 0.99 * (torch.rand(3, 7, generator=gen, dtype=torch.float64) > 0.2)
    expected = _reference_lambda_returns(rewards, values, discounts, lam)
    np.testing.assert_allclose(compute_lambda_return(rewards, values, discounts, lam).numpy(),
                               expected, rtol=1e-12, atol=1e-12)
    time_major = compute_return(rewards.T, values[:, :-1].T, discounts.T, lam, values[:, -1])
    np.testing.assert_allclose(time_major.T.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_symlog_matches_formula_and_symexp_inverts_it():
    x = torch.linspace(-1e4, 1e4, 1001, dtype=torch.float64)
    expected = [math.copysign(math.log(1 + abs(v)), v) for v in x.tolist()]
    np.testing.assert_allclose(symlog(x).numpy(), expected, rtol=1e-12)
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-10, atol=1e-10)
    y = torch.linspace(-8, 8, 101, dtype=torch.float64)
    torch.testing.assert_close(symlog(symexp(y)), y)


def test_two_hot_round_trip_and_reference_weights():
    enc = TwoHotEncoder(num_buckets=41, symlog_range=4.0)
    centres = np.linspace(-4.0, 4.0, 41)
    targets = torch.tensor([-5.0, -4.0, -1.23, 0.0, 0.05, 2.5, 3.99, 7.0], dtype=torch.float64)
    code = enc.encode(targets).numpy()
    for row, t in zip(code, targets.tolist()):
        t = min(max(t, -4.0), 4.0)
        ref = np.zeros(41)
        k = min(int(np.searchsorted(centres, t, side="right")) - 1, 39)
        w = (t - centres[k]) / (centres[k + 1] - centres[k])
        ref[k], ref[k + 1] = 1 - w, w
        np.testing.assert_allclose(row, ref, atol=1e-12)
    values = torch.tensor([-20.0, -1.0, 0.0, 0.3, 12.0], dtype=torch.float64)
    logits = torch.log(enc.encode(symlog(values)).clamp_min(1e-300))
    # bucket centres are float32, so decoding is exact to float32 precision
    torch.testing.assert_close(enc.decode(logits), values, rtol=1e-6, atol=1e-6)


# -- attention ---------------------------------------------------------------------------------
def _torch_mha(attn):
    """An ``nn.MultiheadAttention`` holding the same weights (the names are the same)."""
    ref = torch.nn.MultiheadAttention(attn.embed_size, attn.num_heads, batch_first=True)
    ref.load_state_dict(attn.state_dict())
    return ref


def test_mhsa_matches_torch_multihead_attention_with_masks():
    from distwm.blocks.mhsa import MultiHeadSelfAttention

    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4)
    ref = _torch_mha(attn)
    x = torch.randn(3, 5, 16)
    padding = torch.tensor([[False] * 5, [True, True, False, False, False], [False] * 4 + [True]])
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # torch: True = may NOT attend
    torch.testing.assert_close(attn(x), ref(x, x, x, need_weights=False)[0])
    torch.testing.assert_close(attn(x, key_padding_mask=padding),
                               ref(x, x, x, key_padding_mask=padding, need_weights=False)[0])
    torch.testing.assert_close(attn(x, causal=True),
                               ref(x, x, x, attn_mask=causal, need_weights=False)[0])
    torch.testing.assert_close(attn(x, attn_mask=~causal), attn(x, causal=True))


def test_mhsa_fully_masked_query_gives_zero_not_nan():
    from distwm.blocks.mhsa import MultiHeadSelfAttention

    attn = MultiHeadSelfAttention(8, 2)
    x = torch.randn(1, 3, 8)
    out = attn(x, key_padding_mask=torch.tensor([[True, True, True]]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, attn.out_proj.bias.expand(1, 3, 8))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadSelfAttention(10, 3)


def test_transformer_block_matches_torch_pre_norm_encoder_layer():
    from distwm.blocks.mhsa import TransformerBlock

    torch.manual_seed(1)
    block = TransformerBlock(16, 4, 4.0, "gelu")
    ref = torch.nn.TransformerEncoderLayer(16, 4, 64, dropout=0.0, activation=torch.nn.GELU(),
                                           batch_first=True, norm_first=True)
    names = {"attn.": "self_attn.", "mlp.0.": "linear1.", "mlp.2.": "linear2."}
    state = {}
    for key, value in block.state_dict().items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs) if key.startswith(ours) else key
        state[key] = value
    ref.load_state_dict(state)
    x = torch.randn(2, 6, 16)
    padding = torch.tensor([[False] * 6, [True] * 2 + [False] * 4])
    torch.testing.assert_close(block(x, key_padding_mask=padding),
                               ref(x, src_key_padding_mask=padding))


def test_modular_rssm_transformer_block_is_the_shared_one():
    from distwm.blocks.mhsa import TransformerBlock
    from distwm.models import modular_rssm

    assert modular_rssm.TransformerBlock is TransformerBlock


# -- the conv stack ----------------------------------------------------------------------------
@pytest.mark.parametrize("padding,sizes", [(0, (31, 14, 6, 2)), (1, (32, 16, 8, 4))])
def test_conv_stack_shapes(padding, sizes):
    from distwm.vision.conv import ConvStack, conv_output_size

    stack = ConvStack(3, depth=4, stages=4, activation="relu", padding=padding)
    x = torch.zeros(2, 3, 64, 64)
    for i, conv in enumerate(m for m in stack if isinstance(m, torch.nn.Conv2d)):
        x = conv(x)
        assert x.shape[1:] == (4 * 2 ** i, sizes[i], sizes[i])
        assert conv_output_size(64, i + 1, padding) == sizes[i]
    assert stack.output_shape(64, 64) == (32, sizes[-1], sizes[-1])


def test_deconv_stack_mirrors_the_conv_stack():
    from distwm.vision.conv import PLANET_KERNELS, DeconvStack

    planet = DeconvStack(40, 3, depth=8, kernels=PLANET_KERNELS)
    widths = [m.out_channels for m in planet if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [32, 16, 8, 3]
    assert planet(torch.zeros(2, 40, 1, 1)).shape == (2, 3, 64, 64)
    halving = DeconvStack(64, 1, depth=8, kernels=(4, 4, 4, 4), padding=1, layer_norm=True)
    assert halving(torch.zeros(2, 64, 4, 4)).shape == (2, 1, 64, 64)
    assert all(m.bias is None for m in list(halving)[:-1] if isinstance(m, torch.nn.ConvTranspose2d))


def test_rms_norm_and_adaptive_norm():
    from distwm.blocks import AdaLNNormalization, MultiHeadAttention, MultiHeadSelfAttention, RMSNorm

    assert MultiHeadAttention is MultiHeadSelfAttention
    x = torch.randn(4, 7, 8) * 3.0 + 1.0
    out = RMSNorm(8)(x)
    assert torch.allclose(out.square().mean(-1), torch.ones(4, 7), atol=1e-4)
    norm = AdaLNNormalization(8, 5)
    t_emb = torch.randn(4, 5)
    assert torch.allclose(norm(x, t_emb), out, atol=1e-6)  # zero-initialised modulation: plain RMS
    with torch.no_grad():  # scale 1 (x2) and shift 0.5 on every channel
        norm.modulation[-1].bias[:8] = 1.0
        norm.modulation[-1].bias[8:] = 0.5
    assert torch.allclose(norm(x, t_emb), 2.0 * out + 0.5, atol=1e-5)
    assert norm(x[:, 0], t_emb).shape == (4, 8)  # (B, d_model) inputs too
    with pytest.raises(ValueError, match="batch"):
        norm(x, t_emb[:2])
