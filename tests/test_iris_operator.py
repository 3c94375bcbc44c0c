"""IrisOperator: token sequences -> padded/truncated int64 batches with an attention mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distwm.inference import operators
from distwm.inference.operators import get_operator
from distwm.inference.operators.base import OperatorABC
from distwm.inference.operators.iris_operator import IrisOperator


def test_a_list_of_ints_is_padded_with_a_mask():
    op = IrisOperator(seq_length=6, vocab_size=10)
    assert isinstance(op, OperatorABC) and op.seq_length == 6 and op.vocab_size == 10
    out = op.process({"tokens": [3, 1, 4]})
    assert set(out) == {"tokens", "attention_mask", "lengths"}
    assert out["tokens"].dtype == torch.int64 and out["tokens"].shape == (1, 6)
    assert out["tokens"].tolist() == [[3, 1, 4, 0, 0, 0]]
    assert out["attention_mask"].dtype == torch.bool
    assert out["attention_mask"].tolist() == [[True, True, True, False, False, False]]
    assert out["lengths"].dtype == torch.int64 and out["lengths"].tolist() == [3]


def test_long_sequences_keep_their_first_seq_length_tokens():
    op = IrisOperator(seq_length=4, vocab_size=100)
    out = op({"tokens": list(range(10, 20))})
    assert out["tokens"].tolist() == [[10, 11, 12, 13]]
    assert out["attention_mask"].all() and out["lengths"].tolist() == [4]
    exact = op({"tokens": [5, 6, 7, 8]})
    assert exact["tokens"].tolist() == [[5, 6, 7, 8]] and exact["attention_mask"].all()


def test_batches_ragged_lists_and_tensors():
    op = IrisOperator(seq_length=5, vocab_size=50)
    out = op.process({"tokens": [[1, 2], [3, 4, 5, 6, 7, 8], np.array([9])]})
    assert out["tokens"].tolist() == [[1, 2, 0, 0, 0], [3, 4, 5, 6, 7], [9, 0, 0, 0, 0]]
    assert out["attention_mask"].sum(1).tolist() == [2, 5, 1] and out["lengths"].tolist() == [2, 5, 1]
    tensor = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.int32)
    out = op.process({"tokens": tensor})
    assert out["tokens"].dtype == torch.int64 and out["tokens"].shape == (2, 5)
    assert out["tokens"][:, :3].tolist() == tensor.tolist() and out["lengths"].tolist() == [3, 3]
    assert op.process({"tokens": torch.arange(3)})["tokens"].tolist() == [[0, 1, 2, 0, 0]]


def test_embeddings_pass_through_as_float():
    op = IrisOperator(seq_length=4, vocab_size=8)
    emb = np.arange(12, dtype=np.float64).reshape(1, 3, 4)
    out = op.process({"tokens": [1, 2, 3], "embeddings": emb})
    assert out["embeddings"].dtype == torch.float32 and out["embeddings"].shape == (1, 3, 4)
    torch.testing.assert_close(out["embeddings"], torch.as_tensor(emb, dtype=torch.float32))
    half = torch.ones(2, 5, dtype=torch.float16)
    assert op.process({"tokens": [1], "embeddings": half})["embeddings"].dtype == torch.float32
    assert "embeddings" not in op.process({"tokens": [1], "embeddings": None})


@pytest.mark.parametrize("inputs,match", [
    ({"tokens": [1, 10]}, r"token ids \[10\] in sequence 0 are outside \[0, vocab_size=10\)"),
    ({"tokens": [[1], [2, -1, 99]]}, r"token ids \[-1, 99\] in sequence 1 are outside"),
    ({"tokens": torch.tensor([[0, 12]])}, r"\[12\].*vocab_size=10"),
    ({"tokens": [1.0, 2.0]}, "token ids must be integers, got dtype float64"),
    ({"tokens": [True, False]}, "must be integers, got dtype bool"),
    ({"tokens": []}, "non-empty 1-D sequence"),
    ({"tokens": np.zeros((1, 2, 3), np.int64)}, r"1-D / 2-D tensor, got shape \(1, 2, 3\)"),
    ({"tokens": 3}, r"got shape \(\)"),
    ({"tokens": [1, [2, 3]]}, "not a sequence or a batch of sequences"),
    ({"tokens": [1], "embeddings": "abc"}, "'embeddings' must be a numeric tensor"),
    ({"embeddings": torch.zeros(1, 2)}, r"needs a dict with a 'tokens' key.*\['embeddings'\]"),
    ({"tokens": [1], "image": 0}, r"valid keys: tokens, embeddings\), got \['image', 'tokens'\]"),
])
def test_bad_inputs_raise_clear_errors(inputs, match):
    with pytest.raises(ValueError, match=match):
        IrisOperator(seq_length=4, vocab_size=10).process(inputs)


@pytest.mark.parametrize("kwargs,match", [
    ({"seq_length": 0}, "seq_length must be a positive int, got 0"),
    ({"vocab_size": 2.0}, "vocab_size must be a positive int, got 2.0"),
    ({"vocab_size": True}, "vocab_size must be a positive int, got True"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IrisOperator(**kwargs)


def test_registered_as_the_iris_operator():
    op = get_operator("iris", seq_length=7, vocab_size=64)
    assert type(op) is IrisOperator and (op.seq_length, op.vocab_size) == (7, 64)
    assert type(get_operator("IRIS")) is IrisOperator
    default = get_operator("iris")
    assert (default.seq_length, default.vocab_size) == (512, 32000)
    assert operators.IrisOperator is IrisOperator and "IrisOperator" in operators.__all__
    assert operators.OPERATORS["iris"] == "IrisOperator"
    with pytest.raises(ValueError, match="Did you mean 'iris'"):
        get_operator("irs")
