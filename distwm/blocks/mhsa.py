"""Multi-head self-attention and the pre-norm transformer block, shared by every family.

:class:`MultiHeadSelfAttention` keeps ``nn.MultiheadAttention``'s parameter names
(``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and initialisation, so state dicts of
either load into the other, and runs on ``F.scaled_dot_product_attention`` (flash / memory-
efficient kernels where the device has them). Inputs are batch-first ``(B, L, E)``.

:class:`TransformerBlock` is ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``
(the modular RSSM's ViT encoder and transformer backbone).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.blocks.layers import activation_module

__all__ = ["MultiHeadAttention", "MultiHeadSelfAttention", "TransformerBlock"]


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over ``(B, L, d)`` with ``n_heads`` heads (the seed's
    ``MultiHeadSelfAttention(d, n_heads=2)``; ``embed_size`` / ``num_heads`` are attributes).

    ``forward(x, key_padding_mask=None, attn_mask=None, causal=False)``:
    ``key_padding_mask`` ``(B, L)`` is True where a key is padding (as in
    ``nn.MultiheadAttention``); ``attn_mask`` ``(L, L)`` or ``(B, heads, L, L)`` is a boolean
    mask (True = may attend) or an additive float mask; ``causal`` lets position ``i`` attend
    to ``j <= i`` only. A query whose keys are all masked out attends to nothing (output 0
    before the output projection) rather than producing NaN.
    """

    def __init__(self, d: int, n_heads: int = 2, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        embed_size, num_heads = d, n_heads
        if embed_size % num_heads:
            raise ValueError(
                f"MultiHeadSelfAttention: embed_size ({embed_size}) must be divisible by "
                f"num_heads ({num_heads})"
            )
        self.embed_size = embed_size
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_size, embed_size))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_size)) if bias else None
        self.out_proj = nn.Linear(embed_size, embed_size, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    def _mask(self, x: Tensor, key_padding_mask, attn_mask, causal) -> Optional[Tensor]:
        """One boolean ``(B, 1 or heads, L, L)`` mask (True = attend), or None."""
        length = x.shape[1]
        masks = []
        if key_padding_mask is not None:
            masks.append(~key_padding_mask.bool()[:, None, None, :])
        if attn_mask is not None:
            masks.append(attn_mask)
        if causal:
            masks.append(torch.ones(length, length, dtype=torch.bool, device=x.device).tril())
        if not masks:
            return None
        mask = masks[0]
        for other in masks[1:]:
            mask = mask & other
        return mask

    def forward(self, x: Tensor, key_padding_mask: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None, causal: bool = False) -> Tensor:
        batch, length, _ = x.shape
        heads = self.num_heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.dropout if self.training else 0.0
        float_mask = attn_mask is not None and attn_mask.dtype != torch.bool
        if float_mask and (causal or key_padding_mask is not None):
            raise ValueError("a float attn_mask cannot be combined with causal or key_padding_mask; "
                             "pass a boolean attn_mask (True = may attend) instead")
        if key_padding_mask is None and (attn_mask is None or float_mask):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout,
                                                 is_causal=causal)
        else:
            mask = self._mask(x, key_padding_mask, attn_mask, causal)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
            # a query with no key to attend to: zero instead of NaN
            out = out.masked_fill(~mask.any(-1, keepdim=True), 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, self.embed_size))


#: the seed's alias
MultiHeadAttention = MultiHeadSelfAttention


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (self-attention and MLP, both residual) for the ViT encoder.

    ``forward(x, key_padding_mask=None, attn_mask=None, causal=False)`` passes the masks to
    :class:`MultiHeadSelfAttention`.
    """

    def __init__(self, embed_size: int, num_heads: int, mlp_ratio: float, activation: str):
        super().__init__()
        if embed_size % num_heads:
            raise ValueError(
                f"TransformerBlock: embed_size ({embed_size}) must be divisible by num_heads ({num_heads})"
            )
        hidden = max(1, int(embed_size * mlp_ratio))
        self.norm1 = nn.LayerNorm(embed_size)
        self.attn = MultiHeadSelfAttention(embed_size, num_heads)
        self.norm2 = nn.LayerNorm(embed_size)
        self.mlp = nn.Sequential(
            nn.Linear(embed_size, hidden), activation_module(activation), nn.Linear(hidden, embed_size)
        )

    def forward(self, x: Tensor, key_padding_mask: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None, causal: bool = False) -> Tensor:
        x = x + self.attn(self.norm1(x), key_padding_mask, attn_mask, causal)
        return x + self.mlp(self.norm2(x))
