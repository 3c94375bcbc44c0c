"""Fixed sin-cos position embeddings of the I-JEPA Vision Transformer (numpy, as in MAE / ijepa
``src/models/vision_transformer.py``); :mod:`distwm.models.vit` re-exports them under the
seed's names."""

from __future__ import annotations

import numpy as np

__all__ = ["grid_shape", "get_1d_sincos_pos_embed", "get_1d_sincos_pos_embed_from_grid",
           "get_2d_sincos_pos_embed", "get_2d_sincos_pos_embed_from_grid"]


def grid_shape(grid_size) -> tuple[int, int]:
    """``(H, W)`` of a grid size given as an int (square) or a pair."""
    if isinstance(grid_size, (tuple, list)):
        height, width = (int(v) for v in grid_size)
    else:
        height = width = int(grid_size)
    return height, width


def get_2d_sincos_pos_embed(embed_dim: int, grid_size, cls_token: bool = False) -> np.ndarray:
    """``(H*W, embed_dim)`` fixed embeddings of a ``grid_size`` x ``grid_size`` patch grid
    (or ``(H, W)``), row-major; with ``cls_token`` a zero row is prepended."""
    height, width = grid_shape(grid_size)
    grid_w, grid_h = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    grid = np.stack([grid_w, grid_h], axis=0).reshape(2, 1, height, width)  # w first, as ijepa
    pos_embed = get_2d_sincos_pos_embed_from_grid(embed_dim, grid)
    if cls_token:
        pos_embed = np.concatenate([np.zeros([1, embed_dim]), pos_embed], axis=0)
    return pos_embed


def get_2d_sincos_pos_embed_from_grid(embed_dim: int, grid: np.ndarray) -> np.ndarray:
    """Half of the channels encode ``grid[0]``, the other half ``grid[1]``: ``(M, embed_dim)``."""
    if embed_dim % 4:
        raise ValueError(f"2-D sin-cos position embeddings need embed_dim divisible by 4, got {embed_dim}")
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def get_1d_sincos_pos_embed(embed_dim: int, grid_size: int, cls_token: bool = False) -> np.ndarray:
    """``(grid_size, embed_dim)`` embeddings of positions ``0 .. grid_size - 1`` (a zero row
    first with ``cls_token``)."""
    pos_embed = get_1d_sincos_pos_embed_from_grid(embed_dim, np.arange(grid_size, dtype=float))
    if cls_token:
        pos_embed = np.concatenate([np.zeros([1, embed_dim]), pos_embed], axis=0)
    return pos_embed


def get_1d_sincos_pos_embed_from_grid(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """``[sin(p w_d), cos(p w_d)]`` with ``w_d = 10000^(-2d / embed_dim)``, ``d < embed_dim / 2``,
    for every position ``p`` of ``pos`` (flattened): ``(M, embed_dim)``."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos position embeddings need an even embed_dim, got {embed_dim}")
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=float) / (embed_dim / 2.0))
    out = np.einsum("m,d->md", np.asarray(pos, dtype=float).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)
