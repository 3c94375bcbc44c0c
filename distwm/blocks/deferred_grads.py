"""Weight gradients of a loop's linear layers, each as one matmul after the backward.

A recurrent loop applies the same linear layer at every step (the RSSM's observe loop: 64
steps of ``B = 16`` rows). Autograd then computes the layer's weight gradient at every step,
an outer product of 16 rows, and adds it into ``.grad`` 64 times: small matmuls on the
sequential path of the backward. :class:`DeferredWeightGrads` applies the layer with its
weight detached instead (the backward computes only the input gradient), keeps each step's
input and catches each step's output gradient with a tensor hook, and at the end of the
backward (an autograd engine callback) adds ``sum_t grad_y_t^T x_t`` to ``.grad`` as one
matmul over all steps (and ``sum_t grad_y_t`` to the bias). The gradients are those of the
plain loop, to float rounding.

Only for ``loss.backward()`` (the gradients land in ``.grad`` at the end of that backward):
``torch.autograd.grad`` does not see the deferred weights, so the caller switches the
deferral on around an update only (:func:`deferring`).
"""

from __future__ import annotations

import contextlib
import functools
import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DeferredWeightGrads", "deferring", "active"]

_STATE = threading.local()  # .on: deferring() is active in this thread


@contextlib.contextmanager
def deferring(on: bool = True):
    """Within this scope (this thread) :func:`active` is ``on``."""
    outer = getattr(_STATE, "on", False)
    _STATE.on = bool(on)
    try:
        yield
    finally:
        _STATE.on = outer


def active() -> bool:
    """Whether loops should defer their weight gradients (:func:`deferring`, grad mode on)."""
    return getattr(_STATE, "on", False) and torch.is_grad_enabled()


class _Record:
    __slots__ = ("weight", "bias", "columns", "detached_weight", "detached_bias", "wanted",
                 "inputs", "grads")

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None, columns: slice | None):
        self.weight, self.bias, self.columns = weight, bias, columns
        self.detached_weight = (weight if columns is None else weight[:, columns]).detach()
        self.detached_bias = None if bias is None else bias.detach()
        self.wanted = weight.requires_grad or (bias is not None and bias.requires_grad)
        self.inputs: list[Tensor] = []
        self.grads: dict[int, Tensor] = {}


class DeferredWeightGrads:
    """The linear layers of one loop whose weight gradients wait for the end of the backward
    (module docstring). Make one per forward pass of the loop."""

    def __init__(self):
        self._records: dict[tuple, _Record] = {}
        self._queued = False

    def linear(self, x: Tensor, weight: nn.Parameter, bias: nn.Parameter | None = None,
               columns: slice | None = None) -> Tensor:
        """``F.linear(x, weight[:, columns], bias)`` whose weight (and bias) gradient is
        deferred; ``columns`` selects input columns of ``weight`` (``None``: all)."""
        key = (id(weight), None if columns is None else (columns.start, columns.stop))
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record(weight, bias, columns)
        y = F.linear(x, record.detached_weight, record.detached_bias)
        if not record.wanted:
            return y
        if not y.requires_grad:  # inputs without a graph: y still carries the weight's gradient
            y.requires_grad_()
        step = len(record.inputs)
        record.inputs.append(x.detach())
        y.register_hook(functools.partial(self._catch, record, step))
        return y

    def _catch(self, record: _Record, step: int, grad: Tensor) -> None:
        record.grads[step] = grad
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._finish)

    def _finish(self) -> None:
        self._queued = False
        for record in self._records.values():
            if not record.grads:
                continue
            steps = sorted(record.grads)
            grad_y = torch.cat([record.grads[s].reshape(-1, record.grads[s].shape[-1]) for s in steps], 0)
            inputs = torch.cat([record.inputs[s].reshape(-1, record.inputs[s].shape[-1]) for s in steps], 0)
            record.grads.clear()
            if record.weight.requires_grad:
                _accumulate(record.weight, grad_y.t().mm(inputs), record.columns)
            if record.bias is not None and record.bias.requires_grad:
                _accumulate(record.bias, grad_y.sum(0), None)


def _accumulate(param: nn.Parameter, grad: Tensor, columns: slice | None) -> None:
    """``param.grad += grad`` (into ``param.grad[:, columns]`` when given), as autograd's
    accumulation does (``None`` -> the gradient itself)."""
    grad = grad.to(param.dtype)
    if columns is not None:
        if param.grad is None:
            full = torch.zeros_like(param)
            full[:, columns] = grad
            param.grad = full
        else:
            param.grad[:, columns] += grad
    elif param.grad is None:
        param.grad = grad
    else:
        param.grad += grad
