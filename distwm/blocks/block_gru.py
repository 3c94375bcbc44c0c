"""The block-diagonal GRU of the current dreamerv3 RSSM (2024).

:class:`BlockLinear` is a linear layer whose weight is block diagonal: the input and the output
are split into ``blocks`` equal groups and group ``k`` of the output sees only group ``k`` of
the input (``blocks`` times fewer weights and operations than a dense layer of the same size).

:class:`BlockGRUCore` is the whole deterministic step ``h' = f(h, z, a)``:

1. three input branches, each ``Linear -> norm -> act`` to ``hidden`` units: of ``h``, of the
   flattened latent ``z`` and of the action ``a``;
2. every group of ``h`` is concatenated with the three branch outputs (shared by the groups);
3. ``layers`` block-diagonal ``BlockLinear(deter) -> norm -> act`` layers (the norm over the
   whole ``deter`` vector, as dreamerv3 does);
4. one block-diagonal ``BlockLinear(3 * deter)`` gives, per group, that group's reset,
   candidate and update gates: ``h' = u * tanh(r * c) + (1 - u) * h`` with ``r = sigmoid``,
   ``u = sigmoid(. - 1)``; there is no norm on the gates.

So each group of ``h`` is updated from its own previous value and the shared summary of the
whole state, not from the other groups directly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distwm.blocks.dreamer_blocks import MLP, OneHotFeatures, linear_features, norm_layer
from distwm.blocks.layers import activation_module

__all__ = ["BlockLinear", "BlockGRUCore"]


class BlockLinear(nn.Module):
    """``y[..., group k] = x[..., group k] @ W_k + b[group k]`` for ``blocks`` groups.

    ``weight`` is ``(blocks, in / blocks, out / blocks)``. :meth:`fans` reports the fans of the
    whole ``in x out`` matrix (dreamerv3 initialises a block linear like the dense layer of its
    full size), which :func:`~distwm.blocks.dreamer_blocks.init_weights_` uses.
    """

    def __init__(self, in_features: int, out_features: int, blocks: int, bias: bool = True):
        super().__init__()
        if blocks < 1 or in_features % blocks or out_features % blocks:
            raise ValueError(f"BlockLinear needs in ({in_features}) and out ({out_features}) "
                             f"features divisible by blocks ({blocks})")
        self.in_features, self.out_features, self.blocks = in_features, out_features, blocks
        self.weight = nn.Parameter(torch.empty(blocks, in_features // blocks, out_features // blocks))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        bound = (1.0 / (in_features // blocks)) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def fans(self) -> tuple[int, int]:
        return self.in_features, self.out_features

    def forward(self, x: Tensor) -> Tensor:
        groups = x.reshape(*x.shape[:-1], self.blocks, self.in_features // self.blocks)
        out = torch.einsum("...ki,kio->...ko", groups, self.weight).flatten(-2)
        return out if self.bias is None else out + self.bias

    def dense_weight(self) -> Tensor:
        """The equivalent dense ``(in, out)`` matrix (zero outside the diagonal blocks)."""
        return torch.block_diag(*self.weight.unbind(0))


class BlockGRUCore(nn.Module):
    """The RSSM's deterministic step with a block-diagonal GRU (see the module docstring).

    Args:
        deter: width of ``h`` (divisible by ``blocks``).
        stoch: width of the flattened latent ``z``.
        action: width of the action.
        hidden: width of each input branch.
        blocks: number of groups.
        activation, norm: the hidden layers' activation and norm kind (``"rms"``, ``"layer"``).
        layers: block-diagonal hidden layers before the gates (dreamerv3: 1).
    """

    def __init__(self, deter: int, stoch: int, action: int, hidden: int, blocks: int,
                 activation: str = "silu", norm: str = "rms", layers: int = 1):
        super().__init__()
        if deter % blocks:
            raise ValueError(f"deter_size {deter} must be divisible by deter_blocks {blocks}")
        self.deter, self.blocks = deter, blocks
        branch = lambda width: MLP(width, hidden, 1, activation, True, norm=norm)  # noqa: E731
        self.deter_in, self.stoch_in, self.action_in = branch(deter), branch(stoch), branch(action)
        group_in = deter // blocks + 3 * hidden
        hidden_layers: list[nn.Module] = []
        width = blocks * group_in
        for _ in range(layers):
            hidden_layers += [BlockLinear(width, deter, blocks), norm_layer(norm, deter),
                              activation_module(activation)]
            width = deter
        self.hidden = nn.Sequential(*hidden_layers)
        self.gates = BlockLinear(width, 3 * deter, blocks)

    def forward(self, deter: Tensor, stoch, action: Tensor) -> Tensor:
        """``h'`` from ``h`` ``(N, deter)``, ``z`` ``(N, stoch)`` (or index-only
        :class:`OneHotFeatures`) and ``a`` ``(N, action)``."""
        if isinstance(stoch, OneHotFeatures):
            first = linear_features(self.stoch_in[0], stoch)
            z = nn.Sequential(*list(self.stoch_in)[1:])(first)
        else:
            z = self.stoch_in(stoch)
        shared = torch.cat([self.deter_in(deter), z, self.action_in(action)], -1)
        g = self.blocks
        groups = deter.reshape(*deter.shape[:-1], g, self.deter // g)
        shared = shared.unsqueeze(-2).expand(*shared.shape[:-1], g, shared.shape[-1])
        x = self.hidden(torch.cat([groups, shared], -1).flatten(-2))
        parts = self.gates(x).reshape(*deter.shape[:-1], g, 3 * self.deter // g)
        reset, cand, update = (p.flatten(-2) for p in parts.chunk(3, -1))
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * deter
