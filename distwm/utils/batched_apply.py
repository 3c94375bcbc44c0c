"""Apply a model to inputs with leading dimensions it does not know about.

``apply_model(model, x, ignore_dim=2)`` with ``x`` shaped ``(T, B, C, H, W)`` calls
``model`` once on ``(T * B, C, H, W)`` and gives its outputs back as ``(T, B, ...)``
(:func:`distwm.utils.utils.bottle` is the case ``ignore_dim=2``); ``ignore_dim=0`` runs a model
on one unbatched sample (a batch axis of 1 is added and removed).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["apply_model"]


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "reshape")


def _tensors(inputs: Any) -> list:
    if _is_tensor(inputs):
        return [inputs]
    if isinstance(inputs, Mapping):
        values = list(inputs.values())
    elif isinstance(inputs, (tuple, list)):
        values = list(inputs)
    else:
        return []
    return [v for v in values if _is_tensor(v)]


def _restore(out: Any, leading: tuple, rows: int) -> Any:
    """Split the first axis of every tensor in ``out`` (nested tuples / lists / dicts) back into
    ``leading``; 0-d tensors (e.g. a loss) and other values pass through."""
    if _is_tensor(out) and len(out.shape) > 0:
        if out.shape[0] != rows:
            raise ValueError(f"apply_model: the model returned shape {tuple(out.shape)}, whose "
                             f"first axis is not the {rows} merged rows of leading dims {leading}")
        return out.reshape(*leading, *out.shape[1:])
    if isinstance(out, Mapping):
        return type(out)((k, _restore(v, leading, rows)) for k, v in out.items())
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple
        return type(out)(*(_restore(v, leading, rows) for v in out))
    if isinstance(out, (tuple, list)):
        return type(out)(_restore(v, leading, rows) for v in out)
    return out


def apply_model(model, inputs, ignore_dim=None):
    """Call ``model`` on ``inputs`` and return its output.

    ``inputs``: a tensor (``model(x)``), a tuple / list (positional arguments) or a dict
    (keyword arguments); non-tensor entries are passed unchanged. ``ignore_dim``: ``None``
    calls the model on the inputs as they are; an int ``k >= 0`` merges the first ``k`` axes of
    every tensor input (they must agree) into one batch axis before the call and splits the
    first axis of every tensor in the output (also inside tuples, lists and dicts) back into
    those ``k`` axes (0-d tensors, e.g. a loss, and non-tensors are returned as they are).
    """
    if isinstance(inputs, Mapping):
        def call(values: Mapping) -> Any:
            return model(**values)
    elif isinstance(inputs, (tuple, list)):
        def call(values) -> Any:
            return model(*values)
    else:
        def call(value) -> Any:
            return model(value)
    if ignore_dim is None:
        return call(inputs)
    if isinstance(ignore_dim, bool) or not isinstance(ignore_dim, int) or ignore_dim < 0:
        raise ValueError(f"ignore_dim must be None or an int >= 0, got {ignore_dim!r}")
    tensors = _tensors(inputs)
    if not tensors:
        raise ValueError("apply_model: ignore_dim needs at least one tensor input, got "
                         f"{type(inputs).__name__}")
    k = ignore_dim
    leading = tuple(tensors[0].shape[:k])
    for t in tensors:
        if len(t.shape) < k or tuple(t.shape[:k]) != leading:
            raise ValueError(f"apply_model: every tensor input needs the same {k} leading dims; got "
                             f"shapes {[tuple(x.shape) for x in tensors]}")
    rows = math.prod(leading)

    def merge(x: Any) -> Any:
        return x.reshape(rows, *x.shape[k:]) if _is_tensor(x) else x

    if isinstance(inputs, Mapping):
        merged = {key: merge(v) for key, v in inputs.items()}
    elif isinstance(inputs, (tuple, list)):
        merged = [merge(v) for v in inputs]
    else:
        merged = merge(inputs)
    return _restore(call(merged), leading, rows)
