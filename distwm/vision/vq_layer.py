"""Vector quantisation (VQ-VAE, van den Oord et al. 2017): the discrete bottleneck shared by
IRIS's tokenizer, Genie's video tokenizer and its latent action model.

Both quantisers map each ``embedding_dim`` vector of the input to its nearest codebook entry
(squared Euclidean distance), pass the gradient straight through to the input, and return
``(z_q, indices, losses)``:

* ``z_q``: the quantised input, shaped like the input, equal to the codebook entries in value
  and to the input in gradient (straight-through estimator);
* ``indices``: the chosen entries, the input's shape without the channel axis;
* ``losses``: ``codebook_loss`` (``||sg(z) - e||^2``, trains the codebook; 0 with EMA updates),
  ``commitment_loss`` (``||z - sg(e)||^2``, unweighted), ``vq_loss`` (``codebook_loss +
  commitment_weight * commitment_loss``, what a model adds to its loss) and ``perplexity``
  (``exp`` of the entropy of the code usage in the batch; diagnostics, no gradient).

:class:`VectorQuantizer` learns the codebook by the codebook loss (the paper's main form, and
IRIS's tokenizer, which initialises the codebook uniformly in ``+-1/vocab_size``).
:class:`VectorQuantizerEMA` keeps the codebook as exponential moving averages of the assigned
vectors (the paper's appendix A.1) with Laplace-smoothed counts; under ``torch.distributed``
the counts and sums are summed over the ranks before the update, so every data-parallel
replica keeps the same codebook.

Inputs are ``(B, C)`` vectors or ``(B, C, *spatial)`` maps (channels first, as the seed's
encoders produce them); ``C`` must equal ``embedding_dim``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VectorQuantizer", "VectorQuantizerEMA", "check_indices"]


def check_indices(indices: Tensor, vocab_size: int) -> None:
    """A ``ValueError`` naming the values unless ``indices`` are integers in ``[0, vocab_size)``."""
    if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
    if indices.numel() and bool(((indices < 0) | (indices >= vocab_size)).any()):
        raise ValueError(f"indices must lie in [0, {vocab_size}); got values from "
                         f"{int(indices.min())} to {int(indices.max())}")


def _check_args(vocab_size: int, embedding_dim: int, commitment_weight: float) -> None:
    for name, value in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not commitment_weight >= 0:
        raise ValueError(f"commitment_weight must be >= 0, got {commitment_weight!r}")


class _Quantizer(nn.Module):
    """Nearest-entry lookup, straight-through output and losses over a ``codebook``
    ``(vocab_size, embedding_dim)`` that subclasses provide."""

    vocab_size: int
    embedding_dim: int
    commitment_weight: float
    codebook: Tensor  # (vocab_size, embedding_dim): a property of each subclass

    def _flatten(self, z: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """``z`` -> ``(N, C)`` rows (channels last) and the shape of the index tensor."""
        if z.dim() < 2 or z.shape[1] != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.embedding_dim}) or "
                f"(B, {self.embedding_dim}, *spatial) input (embedding_dim={self.embedding_dim}), "
                f"got shape {tuple(z.shape)}")
        index_shape = (z.shape[0], *z.shape[2:])
        rows = z.movedim(1, -1).reshape(-1, self.embedding_dim)
        return rows, index_shape

    def _unflatten(self, rows: Tensor, index_shape: tuple[int, ...]) -> Tensor:
        return rows.reshape(*index_shape, self.embedding_dim).movedim(-1, 1)

    def nearest(self, rows: Tensor) -> Tensor:
        """Index of the nearest codebook entry of each row of ``rows`` ``(N, C)``."""
        with torch.autocast(rows.device.type, enabled=False):  # float32 distances under autocast
            rows, codebook = rows.float(), self.codebook.float()
            distances = (rows.pow(2).sum(1, keepdim=True) - 2.0 * rows @ codebook.t()
                         + codebook.pow(2).sum(1).unsqueeze(0))
        return distances.argmin(1)

    def _losses(self, rows: Tensor, quantized: Tensor, indices: Tensor, learn_codebook: bool):
        commitment = F.mse_loss(rows, quantized.detach())
        codebook = F.mse_loss(quantized, rows.detach()) if learn_codebook else rows.new_zeros(())
        with torch.no_grad():
            usage = torch.bincount(indices, minlength=self.vocab_size).to(rows.dtype)
            probs = usage / usage.sum().clamp(min=1)
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return {"codebook_loss": codebook, "commitment_loss": commitment,
                "vq_loss": codebook + self.commitment_weight * commitment, "perplexity": perplexity}

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Codebook entries of ``indices`` ``(B,)`` or ``(B, *spatial)``: ``(B, C)`` or
        ``(B, C, *spatial)``."""
        check_indices(indices, self.vocab_size)
        return F.embedding(indices.long(), self.codebook).movedim(-1, 1)


class VectorQuantizer(_Quantizer):
    """VQ with a codebook learnt by gradient (the codebook loss); see the module docstring."""

    def __init__(self, vocab_size: int = 512, embedding_dim: int = 512, commitment_weight: float = 0.25):
        super().__init__()
        _check_args(vocab_size, embedding_dim, commitment_weight)
        self.vocab_size, self.embedding_dim = vocab_size, embedding_dim
        self.commitment_weight = float(commitment_weight)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / vocab_size, 1.0 / vocab_size)

    @property
    def codebook(self) -> Tensor:
        return self.embedding.weight

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Quantise ``z`` ``(B, C)`` or ``(B, C, *spatial)``: ``(z_q, indices, losses)``."""
        rows, index_shape = self._flatten(z)
        indices = self.nearest(rows.detach())
        quantized = self.embedding(indices).to(rows.dtype)
        losses = self._losses(rows, quantized, indices, learn_codebook=True)
        straight = rows + (quantized - rows).detach()
        return self._unflatten(straight, index_shape), indices.reshape(index_shape), losses


class VectorQuantizerEMA(_Quantizer):
    """VQ with an exponential-moving-average codebook (no gradient reaches it); see the module
    docstring. The averages update in training mode only."""

    def __init__(self, vocab_size: int = 512, embedding_dim: int = 512, commitment_weight: float = 0.25,
                 ema_decay: float = 0.99, epsilon: float = 1e-5):
        super().__init__()
        _check_args(vocab_size, embedding_dim, commitment_weight)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay!r}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.vocab_size, self.embedding_dim = vocab_size, embedding_dim
        self.commitment_weight = float(commitment_weight)
        self.ema_decay, self.epsilon = float(ema_decay), float(epsilon)
        embedding = torch.randn(vocab_size, embedding_dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("cluster_size", torch.zeros(vocab_size))
        self.register_buffer("embedding_sum", embedding.clone())

    @property
    def codebook(self) -> Tensor:
        return self.embedding

    @torch.no_grad()
    def _update(self, rows: Tensor, indices: Tensor) -> None:
        onehot = F.one_hot(indices, self.vocab_size).to(torch.float32)
        counts = onehot.sum(0)
        sums = onehot.t() @ rows.float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        decay = self.ema_decay
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        self.embedding_sum.mul_(decay).add_(sums, alpha=1 - decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.vocab_size * self.epsilon) * total
        self.embedding.copy_(self.embedding_sum / smoothed.unsqueeze(1))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Quantise ``z`` (and, in training mode, move the codebook): ``(z_q, indices, losses)``."""
        rows, index_shape = self._flatten(z)
        indices = self.nearest(rows.detach())
        # the entries that were nearest, before this batch moves them (as the paper's appendix)
        quantized = F.embedding(indices, self.embedding).to(rows.dtype)
        if self.training:
            self._update(rows.detach(), indices)
        losses = self._losses(rows, quantized, indices, learn_codebook=False)
        straight = rows + (quantized - rows).detach()
        return self._unflatten(straight, index_shape), indices.reshape(index_shape), losses
