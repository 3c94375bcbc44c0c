"""The space-time transformer (:mod:`distwm.blocks.st_transformer`): shapes, causality in
time, attention within a frame in space, and the temporal KV cache against a full forward."""

from __future__ import annotations

import pytest
import torch

from distwm.blocks.st_transformer import (DropPath, STSpatialAttention, STTemporalAttention,
                                          STTransformer, STTransformerBlock,
                                          create_st_transformer)


def small(depth: int = 2) -> STTransformer:
    torch.manual_seed(0)
    return STTransformer(num_frames=5, num_patches_per_frame=4, dim=16, depth=depth,
                         num_heads=2).eval()


def test_shapes_flat_and_4d():
    model = small()
    x = torch.randn(3, 5, 4, 16)
    assert model(x).shape == (3, 5, 4, 16)
    assert model(x.reshape(3, 20, 16)).shape == (3, 20, 16)
    torch.testing.assert_close(model(x.reshape(3, 20, 16)).reshape(3, 5, 4, 16), model(x))
    assert create_st_transformer(num_frames=2, patch_size=4, img_size=16, dim=8, depth=1,
                                 num_heads=2).num_patches_per_frame == 16


def test_frame_outputs_depend_only_on_earlier_frames():
    model = small()
    x = torch.randn(2, 5, 4, 16)
    y = x.clone()
    # change frame 3 (not by a constant: the pre-norm blocks and the final LayerNorm remove a
    # shift of every feature by the same amount)
    y[:, 3] += torch.randn_like(y[:, 3])
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])
    # without the causal mask the past sees the change too
    assert not torch.allclose(model(x, causal=False)[:, :3], model(y, causal=False)[:, :3])


def test_spatial_attention_stays_within_frame_and_temporal_within_position():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 8)
    y = x.clone()
    y[:, 1, 2] += 1.0
    spatial = STSpatialAttention(8, num_heads=2).eval()
    diff = (spatial(x) - spatial(y)).abs().sum(-1)[0]  # (T, N)
    assert (diff[1] > 0).all() and diff[0].max() == 0 and diff[2].max() == 0
    temporal = STTemporalAttention(8, num_heads=2).eval()
    diff = (temporal(x) - temporal(y)).abs().sum(-1)[0]
    assert diff[0].max() == 0  # the past
    assert diff[1:, 2].min() > 0  # the same position, now and later
    assert diff[:, [0, 1, 3]].max() == 0  # other positions


def test_kv_cache_one_frame_at_a_time_equals_full_forward():
    model = small(depth=3)
    x = torch.randn(2, 5, 4, 16)
    full = model(x)
    cache = model.init_cache(batch_size=2)
    outs = []
    for t in range(5):
        scratch = model(x[:, t:t + 1] + 5.0, cache=cache, commit=False)  # a candidate, dropped
        assert cache.length == t and scratch.shape == (2, 1, 4, 16)
        outs.append(model(x[:, t:t + 1], cache=cache))
        assert cache.length == t + 1
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_prefix_then_block_of_frames():
    model = small()
    x = torch.randn(1, 5, 4, 16)
    cache = model.init_cache(batch_size=1)
    head = model(x[:, :2], cache=cache)
    tail = model(x[:, 2:], cache=cache)
    torch.testing.assert_close(torch.cat([head, tail], 1), model(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="holds 5 frames"):
        model(x[:, :1], cache=cache)


@pytest.mark.parametrize("depth", [1, 3])
def test_fill_cache_stores_what_a_committing_forward_stores(depth):
    model = small(depth=depth)
    x = torch.randn(2, 5, 4, 16)
    by_forward, by_fill = model.init_cache(batch_size=2), model.init_cache(batch_size=2)
    model(x[:, :2], cache=by_forward)
    model.fill_cache(x[:, :2].reshape(2, 8, 16), by_fill)  # flat tokens, as forward takes
    assert by_fill.length == by_forward.length == 2
    for got, want in zip(by_fill.keys + by_fill.values, by_forward.keys + by_forward.values):
        assert torch.equal(got, want)  # bit for bit: the same projections
    # and the frames after it see the same past
    assert torch.equal(model(x[:, 2:3], cache=by_fill), model(x[:, 2:3], cache=by_forward))
    torch.testing.assert_close(model(x[:, 3:], cache=by_fill), model(x)[:, 3:], atol=1e-5,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="holds 5 frames"):
        model.fill_cache(x[:, :1], by_fill)
    with pytest.raises(ValueError, match="expects 4 patches of dim 16"):
        model.fill_cache(torch.randn(2, 1, 3, 16), model.init_cache(batch_size=2))


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    layer = DropPath(0.5)
    x = torch.ones(64, 3, 2)
    out = layer.train()(x)
    per_sample = out.reshape(64, -1)
    assert set(per_sample[:, 0].tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    torch.testing.assert_close(layer.eval()(x), x)
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)


def test_errors_name_the_bad_shape():
    model = small()
    with pytest.raises(ValueError, match="not whole frames of 4 patches"):
        model(torch.randn(1, 7, 16))
    with pytest.raises(ValueError, match=r"expects 4 patches of dim 16"):
        model(torch.randn(1, 2, 3, 16))
    with pytest.raises(ValueError, match=r"\(B, T, N, C\)"):
        STTransformerBlock(16, 2)(torch.randn(1, 8, 16))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        STTransformer(dim=10, num_heads=3)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        create_st_transformer(img_size=30, patch_size=4)
