"""Vector quantisers (distwm.vision.vq_layer): nearest-entry lookup, straight-through
gradient, which loss trains what, EMA codebook updates, shapes and bad input."""

from __future__ import annotations

import pytest
import torch

from distwm.vision.vq_layer import VectorQuantizer, VectorQuantizerEMA


@pytest.mark.parametrize("cls", [VectorQuantizer, VectorQuantizerEMA])
@pytest.mark.parametrize("shape", [(5, 8), (2, 8, 3, 4), (2, 8, 2, 3, 3)])
def test_each_vector_goes_to_its_nearest_entry_and_decodes_back(cls, shape):
    vq = cls(vocab_size=16, embedding_dim=8).eval()
    z = torch.randn(*shape)
    z_q, indices, losses = vq(z)
    rows = z.movedim(1, -1).reshape(-1, 8)
    expected = torch.cdist(rows, vq.codebook).argmin(1)
    assert indices.shape == (shape[0], *shape[2:])
    assert torch.equal(indices.reshape(-1), expected)
    assert z_q.shape == z.shape
    torch.testing.assert_close(z_q, vq.decode_indices(indices))
    torch.testing.assert_close(losses["commitment_loss"], ((rows - vq.codebook[expected]) ** 2).mean())
    assert 1.0 <= float(losses["perplexity"]) <= 16.0


def test_straight_through_gradient_and_which_loss_trains_what():
    vq = VectorQuantizer(vocab_size=16, embedding_dim=4, commitment_weight=0.25)
    z = torch.randn(3, 4, 2, 2, requires_grad=True)
    z_q, _, losses = vq(z)
    weight = torch.randn_like(z)
    (grad_z,) = torch.autograd.grad((z_q * weight).sum(), z)
    torch.testing.assert_close(grad_z, weight)  # the identity: straight through
    assert torch.autograd.grad((z_q * weight).sum(), vq.embedding.weight, allow_unused=True)[0] is None
    book_z, book_e = torch.autograd.grad(losses["codebook_loss"], [z, vq.embedding.weight], allow_unused=True)
    assert book_z is None and float(book_e.abs().sum()) > 0  # the codebook loss moves the codebook
    commit_z, commit_e = torch.autograd.grad(losses["commitment_loss"], [z, vq.embedding.weight],
                                             allow_unused=True)
    assert commit_e is None and float(commit_z.abs().sum()) > 0  # the commitment loss moves z
    total = losses["codebook_loss"] + 0.25 * losses["commitment_loss"]
    torch.testing.assert_close(losses["vq_loss"], total)


def test_ema_codebook_moves_to_the_cluster_means_in_training_mode_only():
    torch.manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    vq = VectorQuantizerEMA(vocab_size=3, embedding_dim=2, ema_decay=0.8)
    with torch.no_grad():
        vq.embedding.copy_(centres + torch.randn(3, 2) * 0.5)  # one entry near each cluster
        vq.embedding_sum.copy_(vq.embedding)
    data = lambda: (centres[torch.randint(0, 3, (256,))] + 0.1 * torch.randn(256, 2))  # noqa: E731
    for _ in range(60):
        _, _, losses = vq(data())
    assert float(losses["codebook_loss"]) == 0.0  # no gradient codebook
    assert not any(p.requires_grad for p in vq.parameters())
    torch.testing.assert_close(vq.embedding, centres, atol=0.1, rtol=0)
    frozen = vq.embedding.clone()
    vq.eval()
    vq(data() + 1.0)
    assert torch.equal(vq.embedding, frozen)


def test_vq_learns_a_codebook_that_reconstructs_clustered_data():
    torch.manual_seed(0)
    centres = torch.randn(8, 6) * 3
    vq = VectorQuantizer(vocab_size=8, embedding_dim=6)
    with torch.no_grad():  # start the entries from data points (a common VQ initialisation)
        vq.embedding.weight.copy_(centres + 0.3 * torch.randn(8, 6))
    optimizer = torch.optim.Adam(vq.parameters(), lr=0.05)
    for _ in range(200):
        z = centres[torch.randint(0, 8, (128,))] + 0.05 * torch.randn(128, 6)
        _, _, losses = vq(z)
        optimizer.zero_grad()
        losses["vq_loss"].backward()
        optimizer.step()
    assert float(losses["commitment_loss"]) < 0.01


@pytest.mark.parametrize("cls", [VectorQuantizer, VectorQuantizerEMA])
def test_bad_input_names_the_value_and_what_is_expected(cls):
    vq = cls(vocab_size=16, embedding_dim=8)
    with pytest.raises(ValueError, match=r"\(B, 8\).*got shape \(2, 5, 3\)"):
        vq(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"\[0, 16\).*16"):
        vq.decode_indices(torch.tensor([0, 16]))
    with pytest.raises(ValueError, match="integer"):
        vq.decode_indices(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="vocab_size.*0"):
        cls(vocab_size=0)
