"""I-JEPA's mask collators (distwm.masks): multi-block and random masks, default collation."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from distwm.masks import (
    DefaultCollator,
    MaskCollator,
    MultiblockMaskCollator,
    RandomMaskCollator,
)
from distwm.masks.multiblock import PAPER_SETTINGS

GRID = 14  # 224 / 16


def _paper_collator(**kwargs):
    options = dict(input_size=(224, 224), patch_size=16, **PAPER_SETTINGS)
    options.update(kwargs)
    return MultiblockMaskCollator(**options)


def _samples(n, size=8):
    return [(torch.rand(3, size, size), i % 3) for i in range(n)]


def _bounding_box(indices, width=GRID):
    rows, cols = indices // width, indices % width
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def _sizes_of(collator, iteration):
    """The (target, context) block sizes the collator draws at ``iteration``."""
    from distwm.masks._common import batch_generators

    shared, _ = batch_generators(collator.seed, iteration)
    p_size = collator._sample_block_size(shared, collator.pred_mask_scale, collator.aspect_ratio)
    e_size = collator._sample_block_size(shared, collator.enc_mask_scale, (1.0, 1.0))
    return p_size, e_size


def test_exports_and_seed_defaults():
    assert MaskCollator is MultiblockMaskCollator
    from distwm.masks import multiblock, random

    assert MultiblockMaskCollator is multiblock.MaskCollator and RandomMaskCollator is random.MaskCollator
    c = multiblock.MaskCollator()
    assert (c.height, c.width) == (14, 14)
    assert (c.enc_mask_scale, c.pred_mask_scale, c.aspect_ratio) == ((0.2, 0.8), (0.5, 1.0), (0.3, 3.0))
    assert (c.nenc, c.npred, c.min_keep, c.allow_overlap) == (1, 2, 4, False)
    r = random.MaskCollator()
    assert r.ratio == (0.4, 0.6) and (r.height, r.width) == (14, 14)


def test_multiblock_masks_shapes_and_collated_batch():
    collator = _paper_collator(seed=0)
    batch, masks_enc, masks_pred = collator(_samples(5))
    images, labels = batch
    assert images.shape == (5, 3, 8, 8) and labels.tolist() == [0, 1, 2, 0, 1]
    assert len(masks_enc) == 1 and len(masks_pred) == 4
    for m in masks_enc + masks_pred:
        assert m.dtype == torch.int64 and m.shape[0] == 5 and m.dim() == 2
        assert ((0 <= m) & (m < GRID * GRID)).all()
        assert m.shape[1] > PAPER_SETTINGS["min_keep"]
    assert len({m.shape[1] for m in masks_pred}) == 1  # truncated to the batch minimum
    # a batched tensor and a dict pass through unchanged
    x = torch.rand(4, 3, 8, 8)
    out, enc, pred = collator(x)
    assert out is x and enc[0].shape[0] == 4 and pred[0].shape[0] == 4
    d = {"image": x, "label": torch.zeros(4)}
    assert collator(d)[0] is d


def test_block_sizes_lie_in_scale_and_aspect_drawn_independently():
    collator = _paper_collator(seed=3)
    patches = GRID * GRID
    areas, aspects = [], []
    for iteration in range(300):
        (h, w), (eh, ew) = _sizes_of(collator, iteration)
        assert 0.15 * patches - (h + w) <= h * w <= 0.2 * patches + (h + w)
        assert (h - 0.5) / (w + 0.5) <= 1.5 and (h + 0.5) / (w - 0.5) >= 0.75
        assert eh == ew and int(0.85 * patches) - 2 * eh <= eh * ew <= patches
        areas.append(h * w)
        aspects.append(h / w)
    assert min(areas) < 0.16 * patches and max(areas) > 0.19 * patches
    assert min(aspects) < 0.85 and max(aspects) > 1.35
    # scale and aspect ratio are independent draws (ijepa's code reuses one uniform for both)
    corr = torch.corrcoef(torch.tensor([areas, aspects], dtype=torch.float64))[0, 1].item()
    assert abs(corr) < 0.4


def test_every_block_of_a_batch_has_the_batch_size():
    collator = _paper_collator(seed=5)
    p_size, e_size = _sizes_of(collator, 0)
    sampled = []
    original = collator._sample_block_mask

    def record(size, generator, regions=None):
        kept, complement = original(size, generator, regions)
        sampled.append((size, regions is None, kept))
        return kept, complement

    collator._sample_block_mask = record
    masks_enc, masks_pred = collator.sample_masks(6)
    assert len(sampled) == 6 * (4 + 1)
    for size, is_target, kept in sampled:
        assert size == (p_size if is_target else e_size)
        if is_target:  # a whole h x w block
            assert len(kept) == p_size[0] * p_size[1] and _bounding_box(kept) == p_size
        else:  # inside one context block
            assert all(a <= b for a, b in zip(_bounding_box(kept), e_size))
    # truncated to the shortest mask of its kind
    assert masks_pred[0].shape[1] == p_size[0] * p_size[1]
    assert masks_enc[0].shape[1] == min(len(k) for _, is_target, k in sampled if not is_target)


def test_context_excludes_the_targets():
    collator = _paper_collator(seed=1)
    for _ in range(3):
        _, masks_enc, masks_pred = collator(_samples(6))
        for b in range(6):
            context = set(masks_enc[0][b].tolist())
            for m in masks_pred:
                assert not context & set(m[b].tolist())
    overlapping = _paper_collator(seed=1, allow_overlap=True)
    _, masks_enc, masks_pred = overlapping(_samples(6))
    context_size = masks_enc[0].shape[1]
    assert context_size >= 0.85 * GRID * GRID - 2 * GRID  # the whole context block, targets included


def test_masks_are_deterministic_with_a_seed_and_the_counter_advances():
    a, b = _paper_collator(seed=7), _paper_collator(seed=7)
    first_a, first_b = a.sample_masks(3), b.sample_masks(3)
    for x, y in zip(first_a[0] + first_a[1], first_b[0] + first_b[1]):
        assert torch.equal(x, y)
    second = a.sample_masks(3)
    assert not all(torch.equal(x, y) for x, y in zip(second[1], first_a[1]))
    other = _paper_collator(seed=8).sample_masks(3)
    assert not all(torch.equal(x, y) for x, y in zip(other[1], first_a[1]))
    # pickling (spawned workers, Ray) keeps the counter's position
    copy = pickle.loads(pickle.dumps(a))
    assert copy._itr_counter.value == a._itr_counter.value == 1
    assert all(torch.equal(x, y) for x, y in zip(copy.sample_masks(3)[1], a.sample_masks(3)[1]))


def test_block_sizes_come_from_the_iteration_not_the_seeded_positions():
    """Unseeded collators (positions from the global RNG, as in ijepa) agree on each batch's
    sizes: what keeps DataLoader workers and ranks consistent."""
    a, b = _paper_collator(), _paper_collator()
    torch.manual_seed(0)
    ma = a.sample_masks(2)
    torch.manual_seed(1)
    mb = b.sample_masks(2)
    assert ma[1][0].shape == mb[1][0].shape
    assert _sizes_of(a, 0) == _sizes_of(b, 0)


def test_blocks_may_reach_the_last_row_and_column():
    collator = MultiblockMaskCollator(input_size=32, patch_size=8, pred_mask_scale=(0.25, 0.25),
                                      aspect_ratio=(1.0, 1.0), npred=1, min_keep=1, seed=0)
    seen = set()
    for _ in range(60):
        seen |= set(collator.sample_masks(4)[1][0].flatten().tolist())
    assert seen == set(range(16))


def test_min_keep_that_no_block_can_hold_is_refused():
    collator = MultiblockMaskCollator(input_size=32, patch_size=8, pred_mask_scale=(0.1, 0.1), min_keep=4, seed=0)
    with pytest.raises(ValueError, match="min_keep=4"):
        collator.sample_masks(2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(enc_mask_scale=(0.9, 0.2)), "enc_mask_scale"),
    (dict(pred_mask_scale=(0.1, 1.5)), "pred_mask_scale"),
    (dict(npred=0), "npred"),
    (dict(patch_size=0), "patch_size"),
    (dict(input_size=8, patch_size=16), "holds no"),
])
def test_bad_multiblock_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiblockMaskCollator(**kwargs)


def test_random_collator_ratio_and_partition():
    collator = RandomMaskCollator(ratio=(0.4, 0.6), input_size=(64, 48), patch_size=8, seed=0)
    num_patches = 8 * 6
    for _ in range(5):
        batch, masks_enc, masks_pred = collator(_samples(3))
        assert batch[0].shape == (3, 3, 8, 8)
        enc, pred = masks_enc[0], masks_pred[0]
        assert enc.shape[0] == pred.shape[0] == 3
        assert enc.shape[1] + pred.shape[1] == num_patches
        assert int(num_patches * 0.4) <= enc.shape[1] <= math.ceil(num_patches * 0.6)
        for b in range(3):
            assert sorted(enc[b].tolist() + pred[b].tolist()) == list(range(num_patches))
    a = RandomMaskCollator(seed=4).sample_masks(2)
    b = RandomMaskCollator(seed=4).sample_masks(2)
    assert torch.equal(a[0][0], b[0][0])
    with pytest.raises(ValueError, match="ratio"):
        RandomMaskCollator(ratio=(0.7, 0.2))


def test_default_collator():
    batch, masks_enc, masks_pred = DefaultCollator()(_samples(2))
    assert batch[0].shape == (2, 3, 8, 8) and masks_enc is None and masks_pred is None
    with pytest.raises(ValueError, match="no samples"):
        DefaultCollator()([])


def test_collators_in_a_dataloader():
    from torch.utils.data import DataLoader

    data = _samples(8)
    loader = DataLoader(data, batch_size=4, collate_fn=_paper_collator(input_size=32, patch_size=4, seed=0))
    batches = list(loader)
    assert len(batches) == 2
    for images_labels, masks_enc, masks_pred in batches:
        assert images_labels[0].shape == (4, 3, 8, 8) and len(masks_pred) == 4
