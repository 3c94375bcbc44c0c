"""The space-time (ST) transformer of Genie (Bruce et al. 2024, section 2.1 and figure 4).

Video tokens ``(B, T, N, C)`` (``T`` frames of ``N`` patches) pass through blocks that each
apply, with pre-norm residuals, **spatial attention** over the ``N`` tokens of one frame,
**causal temporal attention** over the ``T`` tokens of one patch position (frame ``t`` sees
frames ``<= t``), and **one** feed-forward layer after both (the paper drops the FFN after
the spatial layer). Cost grows linearly in ``T``, not quadratically in ``T * N``.

Because temporal attention is causal, a frame's activations never depend on later frames:
:class:`TemporalKVCache` keeps every layer's temporal keys and values of the frames seen so
far, so a generator runs only the *new* frame through the network (Genie's tokenizer,
dynamics model and ``play``), and the result equals that frame's slice of a full forward.
``commit=False`` evaluates a candidate frame without keeping it (MaskGIT's refinement steps
re-run the same frame), ``commit=True`` appends it, ``commit=k`` only the first ``k`` frames
(a finished frame and the next frame's first candidate in one pass).
:meth:`STTransformer.fill_cache` appends frames whose outputs are not needed (a finished frame,
a prompt), skipping the work after the last block's temporal keys and values.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distwm.utils.precision import scaled_dot_product_attention

__all__ = ["DropPath", "STMLP", "STSpatialAttention", "STTemporalAttention", "STTransformer",
           "STTransformerBlock", "TemporalKVCache", "create_st_transformer"]


def _check_heads(dim: int, num_heads: int) -> None:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")


def _check_4d(x: Tensor, what: str) -> tuple[int, int, int, int]:
    if x.dim() != 4:
        raise ValueError(f"{what} expects (B, T, N, C) tokens, got shape {tuple(x.shape)}; "
                         f"STTransformer reshapes (B, T*N, C) with its num_patches_per_frame")
    return tuple(x.shape)  # type: ignore[return-value]


class TemporalKVCache:
    """Temporal keys and values of every layer for the frames seen so far.

    ``keys[l]`` / ``values[l]``: ``(B * N, heads, capacity, head_dim)``, allocated once and
    written in place; ``length`` frames are valid. Build with :meth:`STTransformer.init_cache`.
    They are held in the dtype the layer's keys come in (bf16 under bf16 autocast: the
    attention reads them without a cast; a layer whose keys arrive in another dtype converts
    its storage once).
    """

    def __init__(self, num_layers: int, batch_size: int, num_patches: int, num_heads: int,
                 head_dim: int, capacity: int, device=None, dtype=None):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 frame, got {capacity}")
        shape = (batch_size * num_patches, num_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.capacity = capacity
        self.length = 0

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k``/``v`` (``(B*N, heads, T, d)``) after the valid frames; return all keys
        and values including them (not yet counted: :meth:`advance` does that)."""
        start, stop = self.length, self.length + k.shape[2]
        if stop > self.capacity:
            raise ValueError(f"TemporalKVCache holds {self.capacity} frames; "
                             f"{self.length} cached + {k.shape[2]} new do not fit")
        if k.dtype != self.keys[layer].dtype:  # kept in the dtype the layer computes them in
            self.keys[layer] = self.keys[layer].to(k.dtype)
            self.values[layer] = self.values[layer].to(v.dtype)
        self.keys[layer][:, :, start:stop] = k
        self.values[layer][:, :, start:stop] = v
        return self.keys[layer][:, :, :stop], self.values[layer][:, :, :stop]

    def advance(self, frames: int) -> None:
        self.length += frames

    def reset(self) -> None:
        self.length = 0


class _TokenAttention(nn.Module):
    """The projections both attentions share: ``qkv`` in, ``proj`` (+ dropout) out."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.scale = qk_scale
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)


class STSpatialAttention(_TokenAttention):
    """Multi-head attention over the ``N`` tokens of each frame: ``(B, T, N, C) -> same``."""

    def forward(self, x: Tensor) -> Tensor:
        B, T, N, C = _check_4d(x, "STSpatialAttention")
        h = self.num_heads
        q, k, v = self.qkv(x).reshape(B * T, N, 3, h, C // h).permute(2, 0, 3, 1, 4)
        out = scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale)
        out = out.transpose(1, 2).reshape(B, T, N, C)
        return self.proj_drop(self.proj(out))


class STTemporalAttention(_TokenAttention):
    """Multi-head attention over the ``T`` tokens of each patch position, causal by default
    (frame ``t`` attends to frames ``0..t``): ``(B, T, N, C) -> same``.

    With a :class:`TemporalKVCache` (``cache``, ``layer``), ``x`` holds only frames after the
    cached ones; they attend to the cached frames and causally among themselves.
    """

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``q, k, v`` ``(B*N, heads, T, head_dim)`` of ``x`` ``(B, T, N, C)``: one sequence
        per patch position."""
        B, T, N, C = _check_4d(x, "STTemporalAttention")
        h = self.num_heads
        qkv = self.qkv(x).reshape(B, T, N, 3, h, C // h).permute(3, 0, 2, 4, 1, 5)
        q, k, v = (t.reshape(B * N, h, T, C // h) for t in qkv)
        return q, k, v

    def write_cache(self, x: Tensor, cache: TemporalKVCache, layer: int = 0) -> None:
        """Only store the keys and values of frames ``x`` ``(B, T, N, C)`` in ``cache`` (the
        same ones :meth:`forward` stores), without attending: for a pass whose outputs are not
        used."""
        _, k, v = self._heads(x)
        cache.write(layer, k, v)

    def forward(self, x: Tensor, causal: bool = True, cache: TemporalKVCache | None = None,
                layer: int = 0) -> Tensor:
        B, T, N, C = _check_4d(x, "STTemporalAttention")
        h = self.num_heads
        q, k, v = self._heads(x)
        mask, is_causal = None, causal and T > 1
        if cache is not None:
            if not causal:
                raise ValueError("a TemporalKVCache needs causal temporal attention")
            past = cache.length
            k, v = cache.write(layer, k, v)
            if past and T > 1:  # new frame i sits at position past + i
                rows = torch.arange(T, device=x.device)[:, None] + past
                mask = torch.arange(past + T, device=x.device)[None, :] <= rows
                is_causal = False
            elif past:
                is_causal = False  # one new frame sees every cached one
        dropout = self.attn_drop if self.training else 0.0
        out = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                           is_causal=is_causal, scale=self.scale)
        out = out.reshape(B, N, h, T, C // h).permute(0, 3, 1, 2, 4).reshape(B, T, N, C)
        return self.proj_drop(self.proj(out))


class STMLP(nn.Module):
    """Linear -> activation -> dropout -> linear -> dropout."""

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer: type[nn.Module] = nn.GELU,
                 drop: float = 0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with ``drop_prob``
    (training only), scaling the kept ones by ``1 / (1 - drop_prob)``."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob!r}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class STTransformerBlock(nn.Module):
    """``x + SpatialAttn(norm(x))``, then ``+ TemporalAttn(norm(x))`` (causal), then
    ``+ MLP(norm(x))``: one FFN per block. ``(B, T, N, C) -> same``."""

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, qk_scale: float | None = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0,
                 act_layer: type[nn.Module] = nn.GELU, norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        self.norm_spatial = norm_layer(dim)
        self.attn_spatial = STSpatialAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.norm_temporal = norm_layer(dim)
        self.attn_temporal = STTemporalAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.norm_mlp = norm_layer(dim)
        self.mlp = STMLP(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, causal: bool = True, cache: TemporalKVCache | None = None,
                layer: int = 0) -> Tensor:
        _check_4d(x, "STTransformerBlock")
        x = x + self.drop_path(self.attn_spatial(self.norm_spatial(x)))
        x = x + self.drop_path(self.attn_temporal(self.norm_temporal(x), causal, cache, layer))
        return x + self.drop_path(self.mlp(self.norm_mlp(x)))

    def write_cache(self, x: Tensor, cache: TemporalKVCache, layer: int) -> None:
        """The part of :meth:`forward` that ``cache`` needs: spatial attention, then the
        temporal keys and values of ``x`` written to ``cache`` (no temporal attention, no
        FFN)."""
        _check_4d(x, "STTransformerBlock")
        x = x + self.drop_path(self.attn_spatial(self.norm_spatial(x)))
        self.attn_temporal.write_cache(self.norm_temporal(x), cache, layer)


class STTransformer(nn.Module):
    """``depth`` :class:`STTransformerBlock` s and a final norm over ``(B, T*N, C)`` (or
    ``(B, T, N, C)``) tokens, ``N = num_patches_per_frame``; the output has the input's
    shape. Stochastic depth grows linearly from 0 to ``drop_path_rate`` over the blocks.
    """

    def __init__(self, num_frames: int = 16, num_patches_per_frame: int = 256, dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: float | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        for name, value in (("num_frames", num_frames), ("depth", depth),
                            ("num_patches_per_frame", num_patches_per_frame)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        _check_heads(dim, num_heads)
        self.num_frames = num_frames
        self.num_patches_per_frame = num_patches_per_frame
        self.dim = dim
        self.num_heads = num_heads
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            STTransformerBlock(dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate,
                               attn_drop_rate, rate, norm_layer=norm_layer) for rate in rates)
        self.norm = norm_layer(dim)

    def init_cache(self, batch_size: int, capacity: int | None = None) -> TemporalKVCache:
        """An empty :class:`TemporalKVCache` for ``capacity`` frames (default num_frames), in
        the autocast dtype when autocast is on here, else in the weights' dtype."""
        weight = self.norm.weight if getattr(self.norm, "weight", None) is not None else \
            next(self.parameters())
        dtype = torch.get_autocast_dtype(weight.device.type) \
            if torch.is_autocast_enabled(weight.device.type) else weight.dtype
        return TemporalKVCache(len(self.blocks), batch_size, self.num_patches_per_frame,
                               self.num_heads, self.dim // self.num_heads,
                               capacity or self.num_frames, weight.device, dtype)

    def _frames(self, x: Tensor) -> Tensor:
        """``x`` as ``(B, T, N, C)`` frames (a view of ``(B, T*N, C)``), checked."""
        if x.dim() == 3:
            B, TN, C = x.shape
            if TN % self.num_patches_per_frame:
                raise ValueError(f"STTransformer: {TN} tokens are not whole frames of "
                                 f"{self.num_patches_per_frame} patches")
            x = x.reshape(B, TN // self.num_patches_per_frame, self.num_patches_per_frame, C)
        _, _, N, C = _check_4d(x, "STTransformer")
        if N != self.num_patches_per_frame or C != self.dim:
            raise ValueError(f"STTransformer expects {self.num_patches_per_frame} patches of dim "
                             f"{self.dim} per frame, got (B, T, N, C) = {tuple(x.shape)}")
        return x

    def fill_cache(self, x: Tensor, cache: TemporalKVCache) -> None:
        """Commit frames ``x`` (as :meth:`forward` takes them) to ``cache`` without computing
        the outputs: the cache ends up exactly as after ``forward(x, cache=cache)``, but the
        last block stops once its temporal keys and values are written (no temporal
        attention, FFN or final norm there). For passes whose outputs are thrown away: a
        generator committing a finished frame, a prompt or a refilled window."""
        x = self._frames(x)
        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks[:last]):
            x = block(x, True, cache, layer)
        self.blocks[last].write_cache(x, cache, last)
        cache.advance(x.shape[1])

    def forward(self, x: Tensor, causal: bool = True, cache: TemporalKVCache | None = None,
                commit: bool | int = True) -> Tensor:
        """With ``cache``: ``commit=True`` keeps all frames of ``x`` in it, ``False`` none (a
        candidate frame), an int the first ``commit`` of them (a finished frame committed in
        the same pass that evaluates the next one's candidate)."""
        flat = x.dim() == 3
        x = self._frames(x)
        B, T, N, C = x.shape
        for layer, block in enumerate(self.blocks):
            x = block(x, causal, cache, layer)
        if cache is not None and commit is not False:
            cache.advance(T if commit is True else min(int(commit), T))
        x = self.norm(x)
        return x.reshape(B, T * N, C) if flat else x


def create_st_transformer(num_frames: int = 16, patch_size: int = 4, img_size: int = 64,
                          dim: int = 768, depth: int = 12, num_heads: int = 12,
                          mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                          attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> STTransformer:
    """An :class:`STTransformer` for ``img_size`` frames cut into ``patch_size`` patches."""
    if patch_size < 1 or img_size % patch_size:
        raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
    return STTransformer(num_frames, (img_size // patch_size) ** 2, dim, depth, num_heads,
                         mlp_ratio, qkv_bias, None, drop_rate, attn_drop_rate, drop_path_rate)
