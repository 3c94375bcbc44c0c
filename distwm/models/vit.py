"""The Vision Transformer of I-JEPA (facebookresearch/ijepa ``src/models/vision_transformer.py``):
fixed 2-D sin-cos position embeddings, pre-norm blocks, an encoder that keeps only the patches
its masks index, and the narrow predictor fed the context tokens plus mask tokens at the target
positions.

Shapes: images ``(B, C, H, W)``; masks ``(B, K)`` patch indices (row-major over the patch grid)
or a list of them. ``VisionTransformer(x)`` -> ``(B, N, D)``; ``VisionTransformer(x, masks)``
-> ``(len(masks) * B, K, D)`` (mask-major, :func:`~distwm.utils.jepa_utils.apply_masks`).

Initialisation as ijepa: truncated normal (std ``init_std``) for linear and conv weights, zero
biases, unit LayerNorms, then :meth:`fix_init_weight` divides block ``l``'s attention output
and second MLP weights by ``sqrt(2 l)``. Sizes (width / depth / heads): tiny 192/12/3, small
384/12/6, base 768/12/12, large 1024/24/16, huge 1280/32/16, giant 1408/40/16 (MLP ratio 48/11).

Where this differs from the ijepa code: :class:`Attention` runs on
``F.scaled_dot_product_attention`` (float32 under CPU autocast when a gradient is wanted:
:func:`distwm.utils.precision.scaled_dot_product_attention`) and returns the output only (ijepa also returns the
attention matrix, which the fused kernel never forms); :meth:`VisionTransformer.interpolate_pos_encoding`
resizes the patch grid's embedding bicubically when an image has another number of patches
(ijepa's copy of DINO's code treats the first position as a class token, which this ViT does
not have); :class:`PatchEmbed` also takes ``(H, W)`` sizes and :class:`ConvEmbed` an int size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distwm.blocks.st_transformer import STMLP
from distwm.blocks.st_transformer import DropPath as _STDropPath
from distwm.models.vit_pos_embed import (get_1d_sincos_pos_embed, get_1d_sincos_pos_embed_from_grid,
                                         get_2d_sincos_pos_embed, get_2d_sincos_pos_embed_from_grid,
                                         grid_shape)
from distwm.utils.jepa_utils import apply_masks, repeat_interleave_batch, trunc_normal_
from distwm.utils.precision import scaled_dot_product_attention

__all__ = ["MLP", "VIT_EMBED_DIMS", "VIT_SIZES", "Attention", "Block", "ConvEmbed", "DropPath",
           "PatchEmbed", "VisionTransformer", "VisionTransformerPredictor", "drop_path",
           "get_1d_sincos_pos_embed", "get_1d_sincos_pos_embed_from_grid",
           "get_2d_sincos_pos_embed", "get_2d_sincos_pos_embed_from_grid", "init_vit_weights", "vit_base", "vit_giant",
           "vit_huge", "vit_large", "vit_predictor", "vit_small", "vit_tiny"]


# -- layers ---------------------------------------------------------------------------------

def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: zero a sample's whole residual branch with ``drop_prob`` (training
    only), scaling the kept ones by ``1 / (1 - drop_prob)``."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(_STDropPath):
    """:func:`drop_path` as a module (``drop_prob=None`` means 0): the blocks package's
    stochastic depth with the seed's signature."""

    def __init__(self, drop_prob: float | None = None):
        super().__init__(0.0 if drop_prob is None else drop_prob)


class MLP(STMLP):
    """``fc1 -> act -> dropout -> fc2 -> dropout`` (hidden and output widths default to the
    input's): the blocks package's transformer MLP under the seed's name, same signature."""


class Attention(nn.Module):
    """Multi-head self-attention over ``(B, N, dim)`` (one ``qkv`` projection, scale
    ``qk_scale`` or ``head_dim ** -0.5``, ``F.scaled_dot_product_attention``)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"Attention: dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0,
                                           scale=self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, length, channels)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + drop_path(attn(norm1(x)))``, then
    ``x + drop_path(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                              attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Image to patch embedding: a ``patch_size`` stride-``patch_size`` convolution,
    ``(B, C, H, W) -> (B, N, embed_dim)``. ``img_size``: an int (square) or ``(H, W)``;
    ``grid_size`` is the patch grid ``(H // p, W // p)``, ``num_patches`` its size."""

    def __init__(self, img_size=224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        height, width = grid_shape(img_size)
        if patch_size < 1 or height < patch_size or width < patch_size:
            raise ValueError(f"PatchEmbed: patch_size {patch_size} must be in [1, {min(height, width)}] "
                             f"for images of {height}x{width}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (height // patch_size, width // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ConvEmbed(nn.Module):
    """3x3 convolution stem (ViTC, Xiao et al. 2021): ``len(channels) - 1`` stride-``strides[i]``
    3x3 convolutions (BatchNorm when ``batch_norm``, ReLU), then a 1x1 convolution to
    ``channels[-1]``; ``(B, C, H, W) -> (B, N, channels[-1])``."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], img_size=224, in_chans: int = 3,
                 batch_norm: bool = True):
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ValueError(f"ConvEmbed: channels {list(channels)} and strides {list(strides)} must be "
                             "non-empty and of the same length")
        widths = [in_chans] + list(channels)
        stem: list[nn.Module] = []
        for i in range(len(widths) - 2):
            stem.append(nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, stride=strides[i], padding=1,
                                  bias=not batch_norm))
            if batch_norm:
                stem.append(nn.BatchNorm2d(widths[i + 1]))
            stem.append(nn.ReLU(inplace=True))
        stem.append(nn.Conv2d(widths[-2], widths[-1], kernel_size=1, stride=strides[-1]))
        self.stem = nn.Sequential(*stem)
        size = img_size[0] if isinstance(img_size, (tuple, list)) else img_size
        self.num_patches = (int(size) // int(np.prod(strides))) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x).flatten(2).transpose(1, 2)


# -- shared by the encoder and the predictor --------------------------------------------------

def sincos_parameter(embed_dim: int, grid_size) -> nn.Parameter:
    """The fixed (``requires_grad=False``) ``(1, N, embed_dim)`` sin-cos embedding of a patch grid."""
    table = torch.from_numpy(get_2d_sincos_pos_embed(embed_dim, grid_size)).float().unsqueeze(0)
    return nn.Parameter(table, requires_grad=False)


def init_vit_weights(module: nn.Module, std: float) -> None:
    """ijepa's ``_init_weights`` on every submodule of ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)


def rescale_blocks(blocks: Sequence[Block]) -> None:
    """Divide block ``l``'s (1-based) attention output and second MLP weights by ``sqrt(2 l)``."""
    with torch.no_grad():
        for layer_id, block in enumerate(blocks, start=1):
            block.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))


def _as_mask_list(masks) -> list:
    return list(masks) if isinstance(masks, (list, tuple)) else [masks]


# -- the encoder ------------------------------------------------------------------------------

class VisionTransformer(nn.Module):
    """The I-JEPA context / target encoder: patch embedding + fixed sin-cos positions, ``depth``
    blocks (stochastic depth rising linearly to ``drop_path_rate``), a final norm.

    ``forward(x, masks=None)``: ``(B, N, embed_dim)``; with masks, only the indexed patches go
    through the blocks: ``(len(masks) * B, K, embed_dim)``. ``predictor_embed_dim`` and
    ``predictor_depth`` are accepted (the seed's signature) and unused, as in ijepa.
    """

    def __init__(self, img_size=(224,), patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 predictor_embed_dim: int = 384, depth: int = 12, predictor_depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_layer=nn.LayerNorm, init_std: float = 0.02, **kwargs):
        super().__init__()
        if kwargs:
            raise ValueError(f"VisionTransformer: unknown arguments {sorted(kwargs)}")
        size = img_size[0] if isinstance(img_size, (tuple, list)) else img_size
        self.num_features = self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.patch_embed = PatchEmbed(img_size=int(size), patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim)
        self.pos_embed = sincos_parameter(embed_dim, self.patch_embed.grid_size)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                  drop=drop_rate, attn_drop=attn_drop_rate, drop_path=rates[i], norm_layer=norm_layer)
            for i in range(depth))
        self.norm = norm_layer(embed_dim)
        self.init_std = init_std
        init_vit_weights(self, init_std)
        self.fix_init_weight()

    def fix_init_weight(self) -> None:
        rescale_blocks(self.blocks)

    def forward(self, x: torch.Tensor, masks=None) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.interpolate_pos_encoding(x, self.pos_embed)
        if masks is not None:
            x = apply_masks(x, _as_mask_list(masks))
        for block in self.blocks:
            x = block(x)
        return self.norm(x) if self.norm is not None else x

    def interpolate_pos_encoding(self, x: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
        """``pos_embed`` resized (bicubic, square grids) to ``x``'s number of patches."""
        npatch, n = x.shape[1], pos_embed.shape[1]
        if npatch == n:
            return pos_embed
        old, new = math.isqrt(n), math.isqrt(npatch)
        if old * old != n or new * new != npatch:
            raise ValueError(f"interpolate_pos_encoding: {npatch} patches and {n} positions are not both square grids")
        dim = pos_embed.shape[-1]
        grid = pos_embed.reshape(1, old, old, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(1, npatch, dim)


# -- the size table ---------------------------------------------------------------------------

#: name -> (embed_dim, depth, num_heads, mlp_ratio)
VIT_SIZES = {
    "vit_tiny": (192, 12, 3, 4.0),
    "vit_small": (384, 12, 6, 4.0),
    "vit_base": (768, 12, 12, 4.0),
    "vit_large": (1024, 24, 16, 4.0),
    "vit_huge": (1280, 32, 16, 4.0),
    "vit_giant": (1408, 40, 16, 48 / 11),
}
VIT_EMBED_DIMS = {name: size[0] for name, size in VIT_SIZES.items()}


def _vit(name: str, patch_size: int, kwargs: dict) -> VisionTransformer:
    embed_dim, depth, num_heads, mlp_ratio = VIT_SIZES[name]
    return VisionTransformer(patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                             mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                             **kwargs)


def vit_tiny(patch_size: int = 16, **kwargs) -> VisionTransformer:
    """ViT-Ti: width 192, depth 12, 3 heads."""
    return _vit("vit_tiny", patch_size, kwargs)


def vit_small(patch_size: int = 16, **kwargs) -> VisionTransformer:
    """ViT-S: width 384, depth 12, 6 heads."""
    return _vit("vit_small", patch_size, kwargs)


def vit_base(patch_size: int = 16, **kwargs) -> VisionTransformer:
    """ViT-B: width 768, depth 12, 12 heads."""
    return _vit("vit_base", patch_size, kwargs)


def vit_large(patch_size: int = 16, **kwargs) -> VisionTransformer:
    """ViT-L: width 1024, depth 24, 16 heads."""
    return _vit("vit_large", patch_size, kwargs)


def vit_huge(patch_size: int = 16, **kwargs) -> VisionTransformer:
    """ViT-H: width 1280, depth 32, 16 heads."""
    return _vit("vit_huge", patch_size, kwargs)


def vit_giant(patch_size: int = 16, **kwargs) -> VisionTransformer:
    """ViT-g: width 1408, depth 40, 16 heads, MLP ratio 48/11."""
    return _vit("vit_giant", patch_size, kwargs)



# -- the predictor ----------------------------------------------------------------------------

class VisionTransformerPredictor(nn.Module):
    """The I-JEPA predictor: a narrow ViT over the context tokens and one mask token per target
    patch.

    ``forward(x, masks_x, masks)``: ``x`` ``(len(masks_x) * B, K_ctx, embed_dim)`` context
    features (the encoder's output under ``masks_x``); ``masks`` the target masks (``(B, K)``
    each). The context is projected to ``predictor_embed_dim`` and given its positions, a mask
    token plus the target positions is appended for every target patch, ``depth`` blocks run
    and the mask tokens' outputs are projected back: ``(len(masks) * len(masks_x) * B, K,
    embed_dim)`` (target-mask-major, as ``apply_masks`` orders the target features).
    """

    def __init__(self, num_patches: int, embed_dim: int = 768, predictor_embed_dim: int = 384, depth: int = 6,
                 num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_layer=nn.LayerNorm, init_std: float = 0.02, **kwargs):
        super().__init__()
        if kwargs:
            raise ValueError(f"VisionTransformerPredictor: unknown arguments {sorted(kwargs)}")
        side = math.isqrt(num_patches)
        if num_patches < 1 or side * side != num_patches:
            raise ValueError(f"VisionTransformerPredictor: num_patches must be a square grid's, got {num_patches}")
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        self.predictor_pos_embed = sincos_parameter(predictor_embed_dim, side)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.predictor_blocks = nn.ModuleList(
            Block(dim=predictor_embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=rates[i],
                  norm_layer=norm_layer)
            for i in range(depth))
        self.predictor_norm = norm_layer(predictor_embed_dim)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim, bias=True)
        self.init_std = init_std
        trunc_normal_(self.mask_token, std=init_std)
        init_vit_weights(self, init_std)
        self.fix_init_weight()

    def fix_init_weight(self) -> None:
        rescale_blocks(self.predictor_blocks)

    def forward(self, x: torch.Tensor, masks_x, masks) -> torch.Tensor:
        if masks is None or masks_x is None:
            raise ValueError("VisionTransformerPredictor needs the context masks (masks_x) and the target masks")
        masks_x, masks = _as_mask_list(masks_x), _as_mask_list(masks)
        batch = len(x) // len(masks_x)
        x = self.predictor_embed(x)
        positions = self.predictor_pos_embed.expand(batch, -1, -1)
        x = x + apply_masks(positions, masks_x)
        n_context = x.shape[1]
        target_pos = repeat_interleave_batch(apply_masks(positions, masks), batch, repeat=len(masks_x))
        pred_tokens = self.mask_token.expand(target_pos.shape[0], target_pos.shape[1], -1) + target_pos
        x = torch.cat([x.repeat(len(masks), 1, 1), pred_tokens], dim=1)
        for block in self.predictor_blocks:
            x = block(x)
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, n_context:])


def vit_predictor(**kwargs) -> VisionTransformerPredictor:
    """The predictor with MLP ratio 4, qkv biases and LayerNorm(eps=1e-6) (ijepa's factory)."""
    return VisionTransformerPredictor(mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                                      **kwargs)
