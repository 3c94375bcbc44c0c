"""IRIS's transformer (distwm.models.iris.transformer): causality, the KV cache, which position
predicts what, the losses, greedy / sampled decoding, a learning check, bad input."""

from __future__ import annotations

import pytest
import torch

from distwm.models.iris_transformer import IRISTransformer, KVCache

K, V, A = 4, 16, 3


def tiny(**kw) -> IRISTransformer:
    torch.manual_seed(0)
    return IRISTransformer(**{"vocab_size": V, "tokens_per_frame": K, "action_size": A, "embed_dim": 32,
                              "num_layers": 2, "num_heads": 2, "dropout": 0.0, "max_blocks": 6, **kw}).eval()


def batch(b=2, t=3):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, V, (b, t, K), generator=g), torch.randint(0, A, (b, t), generator=g)


def test_reference_defaults():
    model = IRISTransformer()
    assert len(model.blocks) == 10 and model.blocks[0].num_heads == 4 and model.ln_f.normalized_shape == (256,)
    assert model.max_tokens == 20 * 17 and model.head_rewards[-1].out_features == 3


def test_outputs_are_causal_and_the_cache_gives_the_full_forward():
    model = tiny()
    tokens, actions = batch()
    full = model.run(model.embed(tokens, actions))
    changed = tokens.clone()
    changed[:, 2, 1] = (changed[:, 2, 1] + 1) % V  # a later token
    again = model.run(model.embed(changed, actions))
    position = 2 * (K + 1) + 1
    torch.testing.assert_close(again[:, :position], full[:, :position])
    assert not torch.allclose(again[:, position:], full[:, position:])
    cache = KVCache(len(model.blocks))
    pieces = [model.run(e, cache) for e in model.embed(tokens, actions).split([5, 1, 7, 2], dim=1)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-5, atol=1e-5)
    assert cache.size == 3 * (K + 1)
    # a cache allocated once for the context gives the same, and refuses more than it holds
    fixed = KVCache(len(model.blocks), 3 * (K + 1))
    pieces = [model.run(e, fixed) for e in model.embed(tokens, actions).split([1] * 3 * (K + 1), dim=1)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-5, atol=1e-5)
    storage = fixed.keys[0].untyped_storage().data_ptr()
    one = fixed.keys[0][:, :, :1].clone()
    with pytest.raises(ValueError, match="holds"):
        fixed.extend(0, one, one)
    assert fixed.keys[0].untyped_storage().data_ptr() == storage  # written in place, never reallocated


def test_heads_read_the_positions_iris_reads():
    model = tiny()
    tokens, actions = batch()
    x = model.run(model.embed(tokens, actions)).reshape(2, 3, K + 1, -1)
    out = model.heads(tokens, actions)
    torch.testing.assert_close(out["obs"][:, :, :K - 1], model.head_observations(x[:, :, :K - 1]))
    torch.testing.assert_close(out["obs"][:, :, K - 1], model.head_observations(x[:, :, K]))  # the action
    torch.testing.assert_close(out["rewards"], model.head_rewards(x[:, :, K]))
    logits, rewards, ends = model(tokens, actions)
    assert logits.shape == (2, 3, K, V) and rewards.shape == (2, 3) and ends.shape == (2, 3, 2)
    assert float(rewards.detach().abs().max()) <= 1.0


def test_loss_labels_are_the_next_observation_token_the_reward_sign_and_the_end():
    model = tiny()
    tokens, actions = batch()
    rewards, ends = torch.tensor([[0.0, 2.5, -1.0]] * 2), torch.tensor([[0, 0, 1]] * 2)
    losses = model.loss(tokens, actions, rewards, ends)
    out = model.heads(tokens, actions)
    ce = torch.nn.functional.cross_entropy
    flat = out["obs"].flatten(1, 2)[:, :-1]  # entry j predicts the (j + 1)-th observation token
    torch.testing.assert_close(losses["loss_obs"], ce(flat.flatten(0, 1), tokens.flatten(1)[:, 1:].flatten()))
    torch.testing.assert_close(losses["loss_rewards"], ce(out["rewards"].flatten(0, 1),
                                                          torch.tensor([1, 2, 0] * 2)))
    torch.testing.assert_close(losses["loss_ends"], ce(out["ends"].flatten(0, 1), ends.flatten()))
    padded = model.loss(tokens, actions, rewards, ends, valid=torch.tensor([[1, 1, 0]] * 2))
    torch.testing.assert_close(padded["loss_ends"], ce(out["ends"][:, :2].flatten(0, 1), ends[:, :2].flatten()))


def test_greedy_decoding_is_the_teacher_forced_model_on_its_own_tokens():
    model = tiny()
    tokens, actions = batch(t=1)
    logits, hidden = model.predict_next_tokens(tokens[:, 0], actions[:, 0])
    chosen = logits.argmax(-1)
    forced = model.heads(torch.stack([tokens[:, 0], chosen], 1), torch.stack([actions[:, 0]] * 2, 1))
    # the next frame's token k is predicted at the action (k = 0) or at its token k - 1
    expected = torch.cat([forced["obs"][:, 0, K - 1:], forced["obs"][:, 1, :K - 1]], 1)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert hidden.shape == (2, 32)
    torch.manual_seed(3)
    sampled, log_probs = model.sample_next_tokens(tokens[:, 0], actions[:, 0], temperature=1.0)
    assert sampled.shape == (2, K) and bool((log_probs <= 0).all())


def test_the_transformer_learns_deterministic_dynamics():
    model = tiny().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = torch.randint(0, V, (8, 1, K))
    tokens = torch.cat([(start + t) % V for t in range(4)], 1)  # every token + 1 each step
    actions = torch.zeros(8, 4, dtype=torch.long)
    history = []
    for _ in range(80):
        losses = model.loss(tokens, actions, torch.zeros(8, 4), torch.zeros(8, 4))
        optimizer.zero_grad()
        losses["loss_obs"].backward()
        optimizer.step()
        history.append(float(losses["loss_obs"].detach()))
    assert history[-1] < 0.5 * history[0]


def test_bad_input_is_named():
    model = tiny()
    tokens, actions = batch()
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 16\)"):
        model(tokens + V, actions)
    with pytest.raises(ValueError, match=r"\(B, T, 4\)"):
        model(tokens[..., :3], actions)
    with pytest.raises(ValueError, match="context holds 30 tokens"):
        model(*batch(t=7))
    with pytest.raises(ValueError, match="temperature"):
        model.sample_next_tokens(tokens[:, 0], actions[:, 0], temperature=0)
    with pytest.raises(ValueError, match="divisible"):
        IRISTransformer(embed_dim=30, num_heads=4)
