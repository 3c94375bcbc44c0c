"""Inference operator for IRIS: token sequences (and optional embeddings) -> transformer inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from distwm.inference.operators.base import OperatorABC

__all__ = ["IrisOperator"]

_KEYS = ("tokens", "embeddings")


class IrisOperator(OperatorABC):
    """Operator for Iris transformer model: formats sequences and embeddings.

    Args:
        seq_length: length every token sequence is truncated or padded to.
        vocab_size: number of token ids; valid ids are ``0 .. vocab_size - 1``.

    ``process({"tokens": ..., "embeddings": ...})`` (``tokens`` required) returns:

    * ``tokens``: int64 ``(B, seq_length)``. A list of ints (or a 1-D array/tensor) is one
      sequence; a list of lists (lengths may differ) or a 2-D array/tensor is a batch. Longer
      sequences keep their first ``seq_length`` tokens; shorter ones are padded on the right
      with id 0;
    * ``attention_mask``: bool ``(B, seq_length)``, True at real tokens, False at padding;
    * ``lengths``: int64 ``(B,)``, the real tokens of each sequence (after truncation);
    * ``embeddings`` (when given and not None): the tensor as float32, shape unchanged.
    """

    def __init__(self, seq_length: int = 512, vocab_size: int = 32000):
        super().__init__()
        for name, value in (("seq_length", seq_length), ("vocab_size", vocab_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"IrisOperator: {name} must be a positive int, got {value!r}")
        self.seq_length = seq_length
        self.vocab_size = vocab_size

    def _rows(self, tokens: Any) -> list[np.ndarray]:
        """The token sequences of ``tokens`` as 1-D int64 arrays."""
        if torch.is_tensor(tokens):
            tokens = tokens.detach().cpu().numpy()
        if isinstance(tokens, (list, tuple)) and tokens and all(
                isinstance(row, (list, tuple, np.ndarray)) or torch.is_tensor(row) for row in tokens):
            rows = [np.asarray(row.detach().cpu() if torch.is_tensor(row) else row) for row in tokens]
        else:
            try:
                array = np.asarray(tokens)
            except ValueError as exc:  # e.g. ints mixed with lists
                raise ValueError(f"IrisOperator: 'tokens' is not a sequence or a batch of sequences ({exc})") from exc
            if array.ndim not in (1, 2):
                raise ValueError(
                    f"IrisOperator: 'tokens' must be a list of ints, a list of lists or a 1-D / 2-D "
                    f"tensor, got shape {array.shape}"
                )
            rows = list(array) if array.ndim == 2 else [array]
        out = []
        for b, row in enumerate(rows):
            if row.ndim != 1 or row.size == 0:
                raise ValueError(f"IrisOperator: token sequence {b} must be a non-empty 1-D sequence, "
                                 f"got shape {row.shape}")
            if row.dtype.kind not in "iu":
                raise ValueError(f"IrisOperator: token ids must be integers, got dtype {row.dtype} "
                                 f"in sequence {b}")
            bad = row[(row < 0) | (row >= self.vocab_size)]
            if bad.size:
                raise ValueError(
                    f"IrisOperator: token ids {bad[:5].tolist()} in sequence {b} are outside "
                    f"[0, vocab_size={self.vocab_size})"
                )
            out.append(row.astype(np.int64)[: self.seq_length])
        return out

    def process(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Process Iris inputs: token sequences and optional embeddings (see the class docstring).

        Expected inputs: ``{'tokens': list of ints or tensor, 'embeddings': optional tensor}``.
        """
        if not isinstance(inputs, dict) or "tokens" not in inputs or set(inputs) - set(_KEYS):
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(f"IrisOperator.process needs a dict with a 'tokens' key (valid keys: "
                             f"{', '.join(_KEYS)}), got {got}")
        rows = self._rows(inputs["tokens"])
        tokens = torch.zeros(len(rows), self.seq_length, dtype=torch.int64)
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.int64)
        for b, row in enumerate(rows):
            tokens[b, : len(row)] = torch.from_numpy(row)
        out = {
            "tokens": tokens,
            "attention_mask": torch.arange(self.seq_length)[None, :] < lengths[:, None],
            "lengths": lengths,
        }
        embeddings = inputs.get("embeddings")
        if embeddings is not None:
            try:
                out["embeddings"] = torch.as_tensor(
                    np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings,
                    dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise ValueError(f"IrisOperator: 'embeddings' must be a numeric tensor or array ({exc})") from exc
        return out
