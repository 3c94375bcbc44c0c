"""Genie's dynamics model (:mod:`distwm.models.genie.dynamics_model`) and its MaskGIT sampler
(:mod:`distwm.models.genie.maskgit`): shapes, the mask schedule, training masks and loss,
causality in time, KV-cached sampling against full-history sampling, a tiny learnable task
(a 4x4 token frame whose rows shift left / right with the action), and the error messages."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from distwm.models.genie.dynamics_model import (
    DynamicsModel,
    MaskGITSampler,
    create_dynamics_model,
    masked_token_loss,
)

SIDE = 4  # 4x4 tokens a frame (image_size 4, patch_size 1)
N = SIDE * SIDE


def tiny(num_frames: int = 4, vocab_size: int = 16, action_vocab_size: int = 2, depth: int = 2,
         seed: int = 0) -> DynamicsModel:
    torch.manual_seed(seed)
    return DynamicsModel(num_frames=num_frames, image_size=SIDE, vocab_size=vocab_size,
                         embedding_dim=16, action_vocab_size=action_vocab_size, dim=32,
                         depth=depth, num_heads=2, patch_size=1).eval()


def shift_clips(batch: int, frames: int, generator: torch.Generator):
    """Row r of a frame holds 4r + (c + offset_r) % 4; action 0 shifts the rows one position
    left (offset + 1), action 1 right (offset - 1). actions[:, t] leads from frame t to t+1."""
    offsets = torch.randint(SIDE, (batch, 1, SIDE, 1), generator=generator)
    actions = torch.randint(2, (batch, frames), generator=generator)
    moves = torch.where(actions == 0, 1, -1)
    total = torch.cat([torch.zeros(batch, 1, dtype=torch.long), moves[:, :-1].cumsum(1)], 1)
    rows = torch.arange(SIDE).reshape(1, 1, SIDE, 1)
    cols = torch.arange(SIDE).reshape(1, 1, 1, SIDE)
    tokens = SIDE * rows + (cols + offsets + total.reshape(batch, frames, 1, 1)) % SIDE
    return tokens.reshape(batch, frames, N), actions


@pytest.fixture(scope="module")
def trained():
    """A depth-2 model trained on the shift task, with its loss before and after."""
    model = tiny().train()
    g = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(250):
        tokens, actions = shift_clips(32, 4, g)
        out = model.loss(tokens, actions, generator=g)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    return model.eval(), losses


def test_shapes():
    model = tiny()
    tokens = torch.randint(16, (3, 4, N))
    actions = torch.randint(2, (3, 4))
    logits = model(tokens, actions)
    assert logits.shape == (3, 4, N, 16)
    # (B, T - 1) actions are the same a_0 .. a_{T-2}; the last of (B, T) is unused
    torch.testing.assert_close(model(tokens, actions[:, :3]), logits)
    torch.testing.assert_close(model(tokens, torch.cat([actions[:, :3], 1 - actions[:, 3:]], 1)),
                               logits)
    out = model.loss(tokens, actions)
    assert set(out) >= {"loss", "accuracy", "num_masked", "mask_rate"} and out["loss"].dim() == 0
    sampler = MaskGITSampler(num_steps=3)
    assert model.sample(tokens[:, :1], actions[:, :1], 4, sampler).shape == (3, 4, N)
    assert model.sample(tokens[:, :2], actions[:, :2], 3, sampler).shape == (3, 3, N)
    assert model.autoregressive_sample(tokens[:, :1], actions, 3).shape == (3, 3, N)
    big = create_dynamics_model(num_frames=2, image_size=8, vocab_size=10, embedding_dim=4,
                                action_vocab_size=3, dim=8, depth=1, num_heads=2, patch_size=2)
    assert big.num_patches == 16 and big.mask_token_id == 10
    assert big(torch.randint(10, (1, 2, 16)), torch.zeros(1, 2, dtype=torch.long)).shape == \
        (1, 2, 16, 10)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "square"])
def test_sampler_schedule_reveals_monotonically_and_keeps_fixed_tokens(schedule):
    sampler = MaskGITSampler(num_steps=6, temperature=2.0, mask_schedule=schedule)
    fractions = [sampler.get_mask_prob(s) for s in range(6)]
    assert fractions[0] < 1.0 and fractions[-1] == 0.0
    assert all(a > b for a, b in pairwise(fractions))
    B, T, V = 4, 20, 7
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(V, (B, T), generator=g)
    fixed = torch.rand(B, T, generator=g) < 0.25
    mask = ~fixed
    start = tokens.clone()
    counts = [mask.sum(-1)]
    for step in range(6):
        drawn, new_mask = sampler.sample(torch.randn(B, T, V, generator=g), mask, step, tokens,
                                         generator=g)
        assert new_mask.dtype == mask.dtype and not (new_mask & ~mask).any()  # never re-masks
        revealed = mask & ~new_mask
        assert (drawn[fixed] == start[fixed]).all()  # fixed tokens never change
        assert (drawn[~mask] == tokens[~mask]).all()  # nor do ones revealed earlier
        assert ((drawn >= 0) & (drawn < V)).all()
        expected = sampler.num_masked_after(step, T, mask.sum(-1))
        assert (new_mask.sum(-1) == expected).all()
        if step < 5:
            assert (revealed.sum(-1) >= 1).all() and (new_mask.sum(-1) >= 1).all()
        tokens, mask = torch.where(revealed, drawn, tokens), new_mask
        counts.append(mask.sum(-1))
    assert not mask.any()  # all revealed at the end
    assert all((a > b).all() for a, b in pairwise(counts))


def test_sampler_reveals_the_most_confident_first():
    V, T = 5, 8
    logits = torch.zeros(1, T, V)
    logits[0, torch.arange(T), 0] = torch.arange(T, dtype=torch.float32)  # position 7 surest
    sampler = MaskGITSampler(num_steps=4, temperature=1.0)
    mask = torch.ones(1, T, dtype=torch.bool)
    keep = math.floor(math.cos(math.pi / 8) * T)  # cosine: 7 of 8 stay masked after step 0
    hits = 0
    for seed in range(20):
        drawn, new_mask = sampler.sample(logits, mask, 0, generator=torch.Generator().manual_seed(seed))
        assert new_mask.sum() == keep
        hits += bool(not new_mask[0, 7] and drawn[0, 7] == 0)
    assert hits >= 18  # p(token 0 at position 7) = e^7 / (e^7 + 4)


def test_masking_rate_and_first_frame():
    model = tiny()
    tokens = torch.randint(16, (64, 4, N))
    actions = torch.randint(2, (64, 4))
    rates = torch.linspace(0.0, 1.0, 64)
    mask = model.draw_mask(tokens, rates)
    assert not mask[:, 0].any()
    per_sample = mask[:, 1:].float().mean((1, 2))
    assert (per_sample - rates).abs().max() < 0.2 and per_sample[0] == 0 and per_sample[-1] == 1
    for low, high in ((0.5, 1.0), (0.2, 0.3)):
        for _ in range(5):
            out = model.loss(tokens[:8], actions[:8], mask_prob_range=(low, high))
            assert low <= out["mask_rate"].item() <= high
            fraction = out["num_masked"].item() / (8 * 3 * N)
            assert low - 0.1 <= fraction <= high + 0.1
    # forward(mask_prob=1) masks frames 1.. entirely, and only them
    full = tokens[:2].clone()
    full[:, 1:] = model.mask_token_id
    torch.testing.assert_close(model(tokens[:2], actions[:2], mask_prob=1.0),
                               model(full, actions[:2]))
    assert not torch.allclose(model(tokens[:2], actions[:2], mask_prob=0.5), model(full, actions[:2]))


def test_loss_scores_only_masked_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, N, 16, generator=g, requires_grad=True)
    targets = torch.randint(16, (2, 3, N), generator=g)
    mask = torch.rand(2, 3, N, generator=g) < 0.5
    out = masked_token_loss(logits, targets, mask)
    expected = F.cross_entropy(logits[mask], targets[mask])
    torch.testing.assert_close(out["loss"], expected)
    assert out["num_masked"] == mask.sum()
    changed = logits.detach().clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 16, generator=g) * 10
    torch.testing.assert_close(masked_token_loss(changed, targets, mask)["loss"], out["loss"])
    changed[mask] += torch.randn(int(mask.sum()), 16, generator=g)
    assert not torch.allclose(masked_token_loss(changed, targets, mask)["loss"], out["loss"])
    out["loss"].backward()
    assert logits.grad[~mask].abs().max() == 0 and logits.grad[mask].abs().max() > 0
    none = masked_token_loss(logits, targets, torch.zeros_like(mask))
    assert none["loss"].item() == 0.0 and none["num_masked"] == 0


def test_causal_in_time_and_actions_lead_into_the_next_frame():
    model = tiny()
    tokens = torch.randint(16, (2, 4, N))
    actions = torch.zeros(2, 4, dtype=torch.long)
    base = model(tokens, actions)
    later = tokens.clone()
    later[:, 2] = torch.randint(16, (2, N))
    out = model(later, actions)
    torch.testing.assert_close(out[:, :2], base[:, :2])
    assert not torch.allclose(out[:, 2:], base[:, 2:])
    flipped = actions.clone()
    flipped[:, 1] = 1  # a_1: from frame 1 to frame 2, added to frame 2's tokens
    out = model(tokens, flipped)
    torch.testing.assert_close(out[:, :2], base[:, :2])
    assert not torch.allclose(out[:, 2], base[:, 2])


def full_history_sample(model, prompt, actions, num_frames, sampler, generator):
    """The reference: every refinement pass re-runs the whole history."""
    history = prompt.clone()
    B = prompt.shape[0]
    for t in range(prompt.shape[1], num_frames):
        tokens = torch.full((B, N), model.mask_token_id)
        mask = torch.ones(B, N, dtype=torch.bool)
        for step in range(sampler.num_steps):
            logits = model(torch.cat([history, tokens[:, None]], 1), actions[:, :t])[:, -1]
            drawn, mask = sampler.sample(logits, mask, step, tokens, generator=generator)
            tokens = drawn.masked_fill(mask, model.mask_token_id)
        history = torch.cat([history, tokens[:, None]], 1)
    return history


@pytest.mark.parametrize("choice_temperature", [0.0, 4.5])
def test_cached_sampling_equals_full_history_sampling(choice_temperature):
    model = tiny(num_frames=5, vocab_size=6)
    prompt = torch.randint(6, (2, 2, N))
    actions = torch.randint(2, (2, 4))
    sampler = MaskGITSampler(num_steps=4, temperature=1.5, choice_temperature=choice_temperature)
    cached = model.sample(prompt, actions, 5, sampler, generator=torch.Generator().manual_seed(3))
    reference = full_history_sample(model, prompt, actions, 5, sampler,
                                    torch.Generator().manual_seed(3))
    assert torch.equal(cached, reference)
    # the prompt but its last frame fills the cache once (no logits: no full forward); then
    # each frame is num_steps passes over that one frame, the first also committing the frame
    # before it (two frames in that pass)
    frames_per_pass, full_forwards = [], []
    hooks = [model.transformer.blocks[0].attn_spatial.register_forward_pre_hook(
                 lambda module, args: frames_per_pass.append(args[0].shape[1])),
             model.transformer.register_forward_pre_hook(
                 lambda module, args, kwargs: full_forwards.append(args[0].shape[1]),
                 with_kwargs=True)]
    try:
        model.sample(prompt, actions, 5, sampler)
    finally:
        for hook in hooks:
            hook.remove()
    per_frame = [2] + [1] * (sampler.num_steps - 1)
    assert frames_per_pass == [1] + per_frame * 3
    assert full_forwards == per_frame * 3
    assert torch.equal(cached[:, :2], prompt)
    assert not torch.equal(cached[:, 2], cached[:, 3])  # an untrained model draws noise
    # play frame by frame: the same frames from a one-frame prompt
    g = torch.Generator().manual_seed(4)
    want = model.sample(prompt[:, :1], actions, 4, sampler, generator=g)
    g = torch.Generator().manual_seed(4)
    cache = model.init_cache(2)
    frames = [model.next_frame(cache, prompt[:, 0], actions[:, 0], sampler, generator=g)]
    for t in range(1, 3):
        frames.append(model.next_frame(cache, None, actions[:, t], sampler, generator=g))
    assert cache.length == 4
    assert torch.equal(torch.stack(frames, 1), want[:, 1:])


def test_training_on_the_shift_task_and_sampling_it_back(trained):
    model, losses = trained
    assert sum(losses[-20:]) / 20 < 0.25 * sum(losses[:20]) / 20
    tokens, actions = shift_clips(16, 4, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(8)
    for sampler in (MaskGITSampler(num_steps=4), MaskGITSampler(num_steps=8, temperature=1.0)):
        sampled = model.sample(tokens[:, :1], actions, 4, sampler, generator=g)
        accuracy = (sampled[:, 1:] == tokens[:, 1:]).float().mean().item()
        assert accuracy > 0.8, accuracy
    sampled = model.autoregressive_sample(tokens[:, :1], actions, 4, temperature=1.0, generator=g)
    assert (sampled[:, 1:] == tokens[:, 1:]).float().mean().item() > 0.8


def test_actions_change_the_sample(trained):
    model, _ = trained
    tokens, _ = shift_clips(8, 2, torch.Generator().manual_seed(9))
    sampler = MaskGITSampler(num_steps=4)
    left = model.sample(tokens[:, :1], torch.zeros(8, 1, dtype=torch.long), 2, sampler,
                        generator=torch.Generator().manual_seed(0))
    right = model.sample(tokens[:, :1], torch.ones(8, 1, dtype=torch.long), 2, sampler,
                         generator=torch.Generator().manual_seed(0))
    grid = tokens[:, 0].reshape(8, SIDE, SIDE)
    want_left = grid.roll(-1, dims=2).reshape(8, N)
    want_right = grid.roll(1, dims=2).reshape(8, N)
    assert (left[:, 1] == want_left).float().mean() > 0.8
    assert (right[:, 1] == want_right).float().mean() > 0.8
    assert (left[:, 1] != right[:, 1]).float().mean() > 0.5


def test_errors():
    with pytest.raises(ValueError, match="cosine, linear, square"):
        MaskGITSampler(mask_schedule="cubic")
    for bad in (0, 0.0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            MaskGITSampler(temperature=bad)
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        MaskGITSampler(num_steps=0)
    with pytest.raises(ValueError, match="choice_temperature"):
        MaskGITSampler(choice_temperature=-1.0)
    sampler = MaskGITSampler(num_steps=3)
    with pytest.raises(ValueError, match=r"step must be an int in \[0, 3\)"):
        sampler.get_mask_prob(3)
    with pytest.raises(ValueError, match=r"logits \(B, T, V\) and mask \(B, T\)"):
        sampler.sample(torch.randn(2, 5, 4), torch.ones(2, 4), 0)
    model = tiny()
    tokens = torch.randint(16, (2, 4, N))
    actions = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 16\) \(vocab_size\) or the \[MASK\] id 16"):
        model(tokens + 16, actions)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 16\) \(vocab_size\), got"):
        model.loss(tokens + 1, actions)
    with pytest.raises(ValueError, match=r"must be \(B, T, 16\)"):
        model(tokens[..., :5], actions)
    with pytest.raises(ValueError, match="holds 1..4"):
        model(torch.randint(16, (2, 5, N)), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\) \(action_vocab_size\)"):
        model(tokens, actions + 2)
    with pytest.raises(ValueError, match=r"\(B, T\) or \(B, T - 1\)"):
        model(tokens, actions[:, :2])
    with pytest.raises(ValueError, match="mask_prob_range"):
        model.loss(tokens, actions, mask_prob_range=(0.8, 0.5))
    with pytest.raises(ValueError, match=r"mask_prob must lie in \[0, 1\]"):
        model(tokens, actions, mask_prob=1.5)
    with pytest.raises(ValueError, match=r"num_frames \(total, prompt included\)"):
        model.sample(tokens[:, :1], actions, 5, sampler)
    with pytest.raises(ValueError, match="at least T_prompt - 1 = 1"):
        model.sample(tokens[:, :2], actions[:, :0], 3, sampler)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        model.autoregressive_sample(tokens[:, :1], actions, 3, temperature=0.0)
    with pytest.raises(ValueError, match=r"capacity must lie in \[1, 4\]"):
        model.init_cache(2, capacity=5)
    cache = model.init_cache(2, capacity=2)
    with pytest.raises(ValueError, match="the cache is empty"):
        model.next_frame(cache, None, actions[:, 0], sampler)
    model.next_frame(cache, tokens[:, 0], actions[:, 0], sampler)
    with pytest.raises(ValueError, match="starts play on an empty cache"):
        model.next_frame(cache, tokens[:, 0], actions[:, 0], sampler)
    with pytest.raises(ValueError, match="the cache is full"):
        model.next_frame(cache, None, actions[:, 0], sampler)
    with pytest.raises(ValueError, match="image_size"):
        DynamicsModel(image_size=10, patch_size=4, dim=8, depth=1, num_heads=2)
