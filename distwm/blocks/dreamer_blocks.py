"""Layers shared by the Dreamer networks: activations, normalised MLPs, conv stages, init.

DreamerV3 normalises every hidden layer (``Linear -> LayerNorm -> SiLU``); DreamerV1 uses
plain ``Linear -> ELU``. Both are :class:`MLP` with ``layer_norm`` on or off. ``norm="rms"``
(the current dreamerv3 code) normalises with :class:`RMSNorm` (a scale, no shift, eps 1e-4)
and keeps the biases of the linear layers; ``norm="layer"`` (V2/V3) uses LayerNorm (eps 1e-3)
and drops them (the norm's shift replaces them).

:class:`OneHotFeatures` holds latent features ``[one-hot categoricals, dense rest]`` as the
index of each categorical's active class. An :class:`MLP` fed with it computes its first
layer as a sum of weight columns instead of a dense matmul over the mostly-zero one-hot part:
the same numbers, about 30 times fewer operations for 32 x 32 latents. Dreamer's imagination
uses it, where the latents carry no gradient.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.blocks.layers import AlignedLinear, activation_module
from distwm.blocks.normalization import RMSNorm

__all__ = ["MLP", "ChannelNorm", "ChannelRMSNorm", "RMSNorm", "NORMS", "norm_layer",
           "use_rms_norm_", "OneHotFeatures", "linear_features", "reuse_embedding_tables",
           "zero_init_", "init_weights_", "WEIGHT_INITS", "run_layers"]

#: ``torch``: PyTorch's defaults; ``xavier_uniform``: Keras' default, zero biases (DreamerV1/V2's
#: TensorFlow code); ``trunc_normal``: DreamerV3's (truncated normal, variance 1/fan_avg, zero
#: biases); ``trunc_normal_in``: the current dreamerv3 code's (variance 1/fan_in)
WEIGHT_INITS = ("torch", "xavier_uniform", "trunc_normal", "trunc_normal_in")
#: kinds of normalisation of :func:`norm_layer`
NORMS = ("layer", "rms")
_TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


def zero_init_(layer: nn.Linear) -> nn.Linear:
    """Zero the weights and bias of ``layer`` (DreamerV3's reward and critic outputs); marked
    so that :func:`init_weights_` leaves it at zero."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    layer._distwm_zero_init = True
    return layer


@torch.no_grad()
def init_weights_(module: nn.Module, scheme: str) -> nn.Module:
    """Initialise every Linear and (transposed) conv layer of ``module`` with ``scheme`` (one
    of :data:`WEIGHT_INITS`); layers :func:`zero_init_` zeroed stay zero, norms keep 1 and 0."""
    if scheme not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {scheme!r}")
    if scheme == "torch":
        return module
    for layer in module.modules():
        # a layer with ``fans()`` (e.g. a block-diagonal linear) says its own fan-in / fan-out
        if not (isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) or hasattr(layer, "fans")):
            continue
        if getattr(layer, "_distwm_zero_init", False):
            continue
        if hasattr(layer, "fans"):
            fan_in, fan_out = layer.fans()
        else:
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        if scheme == "xavier_uniform":
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            nn.init.uniform_(layer.weight, -bound, bound)
        else:
            fan = fan_in if scheme == "trunc_normal_in" else (fan_in + fan_out) / 2.0
            std = (1.0 / fan) ** 0.5 / _TRUNC_STD
            nn.init.trunc_normal_(layer.weight, 0.0, std, -2.0 * std, 2.0 * std)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module


def norm_layer(kind: str, width: int) -> nn.Module:
    """``LayerNorm(width, eps=1e-3)`` (``"layer"``, DreamerV2/V3) or ``RMSNorm(width, eps=1e-4)``
    (``"rms"``, the current dreamerv3 code)."""
    if kind == "layer":
        return nn.LayerNorm(width, eps=1e-3)
    if kind == "rms":
        return RMSNorm(width, eps=1e-4)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


@dataclass(frozen=True)
class OneHotFeatures:
    """Features ``[one_hot(index) (width), rest]`` with the one-hot part stored as indices.

    ``index`` ``(..., S)`` long: for each of ``S`` categoricals the column of its active class
    in the flattened one-hot vector (``group * classes + class``); ``rest`` ``(..., D)``.
    """

    index: Tensor
    rest: Tensor
    width: int

    def __getitem__(self, item) -> "OneHotFeatures":
        return OneHotFeatures(self.index[item], self.rest[item], self.width)

    def detach(self) -> "OneHotFeatures":
        return OneHotFeatures(self.index, self.rest.detach(), self.width)

    def dense(self) -> Tensor:
        """The ordinary feature tensor ``(..., width + D)``."""
        onehot = torch.zeros(*self.index.shape[:-1], self.width, dtype=self.rest.dtype,
                             device=self.rest.device)
        onehot.scatter_(-1, self.index, 1.0)
        return torch.cat([onehot, self.rest], -1)


class _OneHotMatmul(torch.autograd.Function):
    """``one_hot(index) @ weight.T`` as a sum of columns; gradient to ``weight`` only.

    ``table`` is ``weight.T`` contiguous (the embedding table; callers may reuse it while the
    weight is unchanged). The weight's gradient is the plain linear layer's, ``grad.T @
    one_hot``: on CPU in float32 as a sparse (CSR) matmul of the transposed one-hot matrix with
    ``grad`` (1.7 ms at 1,024 rows of 32x32 classes and 256 units, 31 ms at 16,384 rows, on 2
    cores), elsewhere (GPU, bf16 tables, compiled code) as a dense matmul with the one-hot
    matrix in blocks of rows (3.1 ms and 66 ms here). One ``index_add_`` per categorical, the
    obvious scatter, takes 35 ms at 1,024 rows: it does not vectorise.
    """

    @staticmethod
    def forward(ctx, index: Tensor, weight: Tensor, table: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.width, ctx.dtype, ctx.table_dtype = weight.shape[1], weight.dtype, table.dtype
        return F.embedding_bag(index, table, mode="sum")

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        # under bf16 autocast the matmul it replaces is in bf16
        return None, _one_hot_weight_grad(index, grad, ctx.width, ctx.table_dtype).to(ctx.dtype), None


def _one_hot_weight_grad(index: Tensor, grad: Tensor, width: int, dtype: torch.dtype) -> Tensor:
    """``grad.T @ one_hot(index)`` ``(units, width)`` for ``index`` ``(rows, S)`` and ``grad``
    ``(rows, units)``, computed in ``dtype`` (see :class:`_OneHotMatmul`)."""
    grad = grad.to(dtype)
    if grad.device.type == "cpu" and dtype == torch.float32 and not torch.compiler.is_compiling():
        return (_sparse_one_hot_t(index, width) @ grad).t()
    out = None
    # in row blocks: a (rows, width) one-hot of a whole imagination (16k rows x 1024 classes,
    # 64 MB) would be a fresh allocation, and its page faults, at every update
    for start in range(0, index.shape[0], _BACKWARD_ROWS):
        rows = index[start:start + _BACKWARD_ROWS]
        onehot = torch.zeros(rows.shape[0], width, dtype=dtype, device=grad.device)
        onehot.scatter_(1, rows, 1.0)
        block = grad[start:start + _BACKWARD_ROWS].t()
        out = block @ onehot if out is None else out.addmm_(block, onehot)
    return out


class _ReplayedFirstLayer(torch.autograd.Function):
    """The output ``first`` ``(rows, units)`` of ``linear(OneHotFeatures(index, rest))``,
    computed earlier without a graph, given the linear layer's gradient: the weight's (and the
    bias's) gradient from ``index`` and ``rest``, nothing to the inputs."""

    @staticmethod
    def forward(ctx, first: Tensor, index: Tensor, rest: Tensor, weight: Tensor, bias, width: int):
        ctx.save_for_backward(index, rest)
        ctx.width, ctx.has_bias, ctx.dtype = width, bias is not None, weight.dtype
        return first.view_as(first)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, rest = ctx.saved_tensors
        grad = grad.to(ctx.dtype)
        onehot = _one_hot_weight_grad(index, grad, ctx.width, ctx.dtype)
        weight = torch.cat([onehot, grad.t() @ rest.to(ctx.dtype)], 1)
        return None, None, None, weight, (grad.sum(0) if ctx.has_bias else None), None


def _sparse_one_hot_t(index: Tensor, width: int) -> Tensor:
    """The transposed one-hot matrix ``(width, rows)`` of ``index`` ``(rows, S)`` as a CSR
    tensor: row ``c`` lists the rows whose index names column ``c``, in order."""
    flat = index.reshape(-1)
    # the stable sort of small integer keys is 3.6x faster in int16 than in int64 (16k rows x 32
    # categoricals: 2.2 ms against 7.8 ms), and the order is the same
    keys = flat.to(torch.int16 if width <= 2 ** 15 else torch.int32)
    order = torch.argsort(keys, stable=True)
    rows = torch.div(order, index.shape[1], rounding_mode="floor")
    crow = torch.zeros(width + 1, dtype=torch.long, device=index.device)
    crow[1:] = torch.bincount(flat, minlength=width).cumsum(0)
    values = torch.ones(flat.shape[0], dtype=torch.float32, device=index.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the matmul is all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, rows, values, (width, index.shape[0]))


#: rows of the one-hot matrix per block in :class:`_OneHotMatmul`'s backward
_BACKWARD_ROWS = 2048


_TABLES: dict | None = None  # the embedding tables of an active reuse_embedding_tables() scope


@contextlib.contextmanager
def reuse_embedding_tables():
    """Within this scope :func:`linear_features` transposes each weight once and reuses the
    table (e.g. over the steps of an imagination); the weights must not change inside it."""
    global _TABLES
    outer = _TABLES
    _TABLES = {} if outer is None else outer
    try:
        yield
    finally:
        _TABLES = outer


def _embedding_table(linear: nn.Linear, width: int) -> Tensor:
    """``linear.weight[:, :width].T`` contiguous, in the autocast dtype under autocast (as the
    matmul it replaces); reused inside :func:`reuse_embedding_tables`."""
    weight = linear.weight.detach()  # the gradient goes through _OneHotMatmul's weight
    device = weight.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    if _TABLES is None or torch.compiler.is_compiling():
        return weight[:, :width].t().to(dtype).contiguous()
    key = (id(linear), width, dtype)
    check = (weight.data_ptr(), weight._version)
    cached = _TABLES.get(key)
    if cached is None or cached[0] != check:
        cached = (check, weight[:, :width].t().to(dtype).contiguous())
        _TABLES[key] = cached
    return cached[1]


def _rest_weight(linear: nn.Linear, width: int) -> Tensor:
    """``linear.weight[:, width:].T``; under autocast cast to its dtype once per
    :func:`reuse_embedding_tables` scope (autocast itself caches only whole parameters)."""
    weight = linear.weight[:, width:].t()
    device = weight.device.type
    if _TABLES is None or not torch.is_autocast_enabled(device) or torch.compiler.is_compiling():
        return weight
    key = (id(linear), width, "rest", torch.is_grad_enabled())
    check = (linear.weight.data_ptr(), linear.weight._version)
    cached = _TABLES.get(key)
    if cached is None or cached[0] != check:
        cached = (check, weight.to(torch.get_autocast_dtype(device)))
        _TABLES[key] = cached
    return cached[1]


def linear_features(linear: nn.Linear, x) -> Tensor:
    """``linear(x)`` for a tensor or :class:`OneHotFeatures` (exploiting the one-hot part)."""
    if not isinstance(x, OneHotFeatures):
        return linear(x)
    lead = x.index.shape[:-1]
    index = x.index.reshape(-1, x.index.shape[-1])
    rest = x.rest.reshape(index.shape[0], x.rest.shape[-1])  # the rest may have width 0
    weight = linear.weight
    out = _OneHotMatmul.apply(index, weight[:, : x.width], _embedding_table(linear, x.width))
    # + rest @ W_rest.T in the matmul's accumulation (one pass over the output, not two)
    inplace = not torch.is_grad_enabled() and not torch.is_autocast_enabled(out.device.type)
    if inplace:
        out = out.addmm_(rest, weight[:, x.width:].t())
    else:
        out = torch.addmm(out, rest, _rest_weight(linear, x.width))
    if linear.bias is not None:
        out = out.add_(linear.bias) if inplace else out + linear.bias
    return out.reshape(*lead, out.shape[-1])


#: activations applied in place where no gradient is recorded (their input is a fresh output)
_INPLACE_ACTS = {nn.SiLU: lambda m, x: F.silu(x, inplace=True),
                 nn.ReLU: lambda m, x: F.relu(x, inplace=True),
                 nn.ELU: lambda m, x: F.elu(x, m.alpha, inplace=True)}


def run_layers(layers, x: Tensor) -> Tensor:
    """``x`` through ``layers`` in order; without autograd the activations work in place."""
    inplace = not torch.is_grad_enabled()
    for layer in layers:
        act = _INPLACE_ACTS.get(type(layer)) if inplace else None
        x = act(layer, x) if act is not None else layer(x)
    return x


class MLP(nn.Sequential):
    """``layers`` x (``Linear -> [LayerNorm] -> act``), optionally followed by ``Linear(out_dim)``.

    Without ``out_dim`` the output width is ``units``. With LayerNorm the hidden linears
    have no bias (the norm's shift replaces it), as in DreamerV3; with ``norm="rms"`` they keep
    it (RMSNorm has no shift), as in the current dreamerv3 code.
    """

    def __init__(self, in_dim: int, units: int, layers: int, activation: str = "silu",
                 layer_norm: bool = True, out_dim: int | None = None, zero_out: bool = False,
                 norm: str = "layer"):
        if in_dim <= 0 or units <= 0 or layers < 0:
            raise ValueError(
                f"MLP needs in_dim > 0, units > 0 and layers >= 0, got {in_dim}, {units}, {layers}"
            )
        modules: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            modules.append(nn.Linear(width, units, bias=not layer_norm or norm == "rms"))
            if layer_norm:
                modules.append(norm_layer(norm, units))
            modules.append(activation_module(activation))
            width = units
        if out_dim is not None:
            head = AlignedLinear(width, out_dim)
            modules.append(zero_init_(head) if zero_out else head)
            width = out_dim
        super().__init__(*modules)
        self.out_dim = width

    def replays_first_layer(self) -> bool:
        """Whether :meth:`first_and_output` / :meth:`from_first` apply: a first linear whose
        output no in-place activation overwrites."""
        return (len(self) > 1 and isinstance(self[0], nn.Linear)
                and type(self[1]) not in _INPLACE_ACTS)

    def first_and_output(self, x: "OneHotFeatures") -> tuple[Tensor, Tensor]:
        """``(first layer's output, MLP output)`` of one-hot features (call without a graph;
        see :meth:`from_first`)."""
        first = linear_features(self[0], x)
        return first, run_layers(list(self)[1:], first)

    def from_first(self, first: Tensor, x: "OneHotFeatures") -> Tensor:
        """``self(x)`` with the gradient to every parameter, given the first layer's output
        ``first`` that :meth:`first_and_output` computed from ``x`` without a graph: the first
        layer is not computed again (its weight gradient comes from ``x``)."""
        lead = x.index.shape[:-1]
        index = x.index.reshape(-1, x.index.shape[-1])
        rest = x.rest.reshape(index.shape[0], x.rest.shape[-1]).detach()
        linear = self[0]
        first = _ReplayedFirstLayer.apply(first.reshape(index.shape[0], -1), index, rest,
                                          linear.weight, linear.bias, x.width)
        return run_layers(list(self)[1:], first).reshape(*lead, -1)

    def forward(self, x):
        if isinstance(x, OneHotFeatures):
            if not len(self) or not isinstance(self[0], nn.Linear):
                return run_layers(self, x.dense())
            return run_layers(list(self)[1:], linear_features(self[0], x))
        if not len(self):
            return x
        if isinstance(self[0], nn.Linear) or torch.is_grad_enabled():
            return run_layers(self, x)
        return super().forward(x)  # the first layer is not a linear: x itself may be an input


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``(N, C, H, W)`` feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelRMSNorm(RMSNorm):
    """:class:`RMSNorm` over the channel axis of ``(N, C, H, W)`` feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def use_rms_norm_(stack: nn.Sequential) -> nn.Sequential:
    """Turn the ``conv -> ChannelNorm`` stages of a conv stack (``vision.conv``) into
    ``conv (with a zero bias) -> ChannelRMSNorm`` in place; returns ``stack``."""
    for i, layer in enumerate(list(stack)):
        if not isinstance(layer, ChannelNorm):
            continue
        stack[i] = ChannelRMSNorm(layer.normalized_shape[0], eps=1e-4)
        conv = stack[i - 1] if i > 0 else None
        if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device))
    return stack
