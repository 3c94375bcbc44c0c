"""IRIS's world model (distwm.models.iris.world_model): tokenised training losses, and a
KV-cached imagination that samples what an uncached rollout samples, past the context."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from distwm.models.iris_transformer import IRISTransformer, IRISWorldModel
from distwm.vision.iris_decoder import DiscreteAutoencoder

K, V, A = 4, 16, 3


def world(max_blocks: int = 8) -> IRISWorldModel:
    torch.manual_seed(0)
    ae = DiscreteAutoencoder(vocab_size=V, tokens_per_frame=K, embedding_dim=8, base_channels=32,
                             frame_shape=(3, 8, 8))
    transformer = IRISTransformer(vocab_size=V, tokens_per_frame=K, action_size=A, embed_dim=32,
                                  num_layers=2, num_heads=2, dropout=0.0, max_blocks=max_blocks)
    return IRISWorldModel(ae.encoder, ae.decoder, transformer).eval()


def test_training_losses_label_every_next_frame_token():
    wm = world()
    frames, actions = torch.rand(2, 4, 3, 8, 8), torch.randint(0, A, (2, 3))
    predictions, losses = wm(frames, actions, rewards=torch.tensor([[1.0, 0, -2]] * 2),
                             ends=torch.tensor([[0, 0, 1]] * 2))
    tokens = wm.tokenize(frames)
    assert predictions["token_logits"].shape == (2, 3, K, V) and tokens.shape == (2, 4, K)
    expected = torch.nn.functional.cross_entropy(predictions["token_logits"].flatten(0, 2),
                                                 tokens.flatten(1)[:, 1:3 * K + 1].flatten())
    torch.testing.assert_close(losses["loss_obs"], expected)
    assert {"loss_rewards", "loss_ends"} <= set(losses)
    assert torch.autograd.grad(losses["loss_obs"], wm.transformer.obs_embedding.weight)[0].abs().sum() > 0


def _uncached_rollout(wm: IRISWorldModel, start: Tensor, actions: list[Tensor]) -> Tensor:
    """The same sampling as imagine, recomputing the whole sequence at every token."""
    model = wm.transformer
    sequence = model.obs_embedding(start)
    frames = [start]
    for action in actions:
        sequence = torch.cat([sequence, model.act_embedding(action).unsqueeze(1)], 1)
        x = model.run(sequence)
        torch.distributions.Categorical(logits=model.head_rewards(x[:, -1])).sample()
        torch.distributions.Categorical(logits=model.head_ends(x[:, -1])).sample()
        chosen = []
        for _ in range(K):
            token = torch.distributions.Categorical(logits=model.head_observations(x[:, -1])).sample()
            chosen.append(token)
            sequence = torch.cat([sequence, model.obs_embedding(token).unsqueeze(1)], 1)
            x = model.run(sequence)
        frames.append(torch.stack(chosen, 1))
    return torch.stack(frames, 1)



def test_cached_imagination_samples_what_the_uncached_rollout_samples():
    wm = world()
    with torch.no_grad():  # sharp, context-dependent logits: a wrong context changes the samples
        for param in wm.transformer.parameters():
            param.normal_(0.0, 0.5)
    start = torch.randint(0, V, (3, K))
    fixed = [torch.tensor([0, 1, 2]), torch.tensor([2, 2, 0]), torch.tensor([1, 0, 1])]
    steps = iter(fixed)
    torch.manual_seed(5)
    out = wm.imagine(start, lambda frames: next(steps), horizon=3)
    torch.manual_seed(5)
    expected = _uncached_rollout(wm, start, fixed)
    assert torch.equal(out["tokens"], expected)
    assert out["frames"].shape == (3, 4, 3, 8, 8) and out["actions"].shape == (3, 3)
    assert set(out["rewards"].unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_imagination_runs_past_the_context_and_takes_policy_logits():
    wm = world(max_blocks=2)  # 10 tokens: the cache is re-primed every step
    out = wm.imagine(torch.randint(0, V, (2, K)), lambda frames: torch.zeros(2, A), horizon=5)
    assert out["tokens"].shape == (2, 6, K)
    with pytest.raises(ValueError, match=r"policy actions must be \(B,\) integers in \[0, 3\)"):
        wm.imagine(torch.randint(0, V, (2, K)), lambda frames: torch.full((2,), 7), horizon=1)
    with pytest.raises(ValueError, match=r"observations \(B, T \+ 1"):
        wm(torch.rand(2, 3, 3, 8, 8), torch.zeros(2, 3, dtype=torch.long))
