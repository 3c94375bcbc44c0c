"""2-D maps of latent vectors: t-SNE (scikit-learn) and UMAP (``umap-learn``, optional).

Both take ``(N, D)`` latents (torch tensor or array), return the ``(N, 2)`` embedding and, with
``save_path``, save a scatter plot of it (matplotlib; the format comes from the extension:
png, pdf, svg, ...), coloured by ``labels`` when given. The embedding is deterministic
(``random_state=0``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["visualize_latent_tsne", "visualize_latent_umap", "scatter_2d"]

#: labels with at most this many distinct values get a legend, more a colour bar
_MAX_LEGEND = 20


def _latents(latents: Any, what: str) -> np.ndarray:
    if hasattr(latents, "detach"):
        latents = latents.detach().cpu().float().numpy()
    arr = np.asarray(latents, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{what}: latents must be (N, D) with N >= 2, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: latents contain NaN or infinite values")
    return arr


def _labels(labels: Any, n: int, what: str) -> np.ndarray | None:
    if labels is None:
        return None
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{what}: {arr.shape[0]} labels for {n} latents")
    return arr


def _check_plot_path(save_path) -> str:
    """``save_path`` as a string; ``ValueError`` unless matplotlib writes its extension."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    save_path = os.fspath(save_path)
    ext = os.path.splitext(save_path)[1].lstrip(".").lower()
    formats = FigureCanvasAgg.get_supported_filetypes()
    if ext not in formats:
        raise ValueError(f"save_path {save_path!r}: format {ext!r} is not supported; "
                         f"choose one of {sorted(formats)}")
    return save_path


def scatter_2d(points: np.ndarray, labels: np.ndarray | None, title: str, save_path) -> str:
    """Save a scatter plot of ``(N, 2)`` points (coloured by ``labels``); returns the path."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state

    save_path = _check_plot_path(save_path)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot(1, 1, 1)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=8)
    else:
        values = np.unique(labels)
        if len(values) <= _MAX_LEGEND:
            for value in values:
                keep = labels == value
                ax.scatter(points[keep, 0], points[keep, 1], s=8, label=str(value))
            ax.legend(markerscale=2, fontsize="small")
        else:
            numeric = np.issubdtype(labels.dtype, np.number)
            colours = labels if numeric else np.searchsorted(values, labels)
            mappable = ax.scatter(points[:, 0], points[:, 1], s=8, c=colours, cmap="viridis")
            fig.colorbar(mappable, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(f"{title} 1")
    ax.set_ylabel(f"{title} 2")
    os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    fig.savefig(save_path)
    return save_path


def visualize_latent_tsne(latents, labels=None, save_path=None, perplexity=30) -> np.ndarray:
    """t-SNE embedding ``(N, 2)`` of ``latents`` ``(N, D)``; ``perplexity`` (the effective number
    of neighbours) must be below ``N``. With ``save_path`` the scatter plot is saved there."""
    from sklearn.manifold import TSNE

    arr = _latents(latents, "visualize_latent_tsne")
    names = _labels(labels, arr.shape[0], "visualize_latent_tsne")
    if save_path is not None:
        _check_plot_path(save_path)
    if isinstance(perplexity, bool) or not isinstance(perplexity, (int, float)) or not (
            0 < perplexity < arr.shape[0]):
        raise ValueError(f"visualize_latent_tsne: perplexity must be in (0, N={arr.shape[0]}), "
                         f"got {perplexity!r}")
    points = TSNE(n_components=2, perplexity=float(perplexity), init="pca",
                  random_state=0).fit_transform(arr)
    if save_path is not None:
        scatter_2d(points, names, "t-SNE", save_path)
    return points


def visualize_latent_umap(latents, labels=None, save_path=None, n_neighbors=15) -> np.ndarray:
    """UMAP embedding ``(N, 2)`` of ``latents`` ``(N, D)``; ``n_neighbors`` must be in
    ``[2, N)``. Needs ``umap-learn`` (``pip install 'distwm[umap]'``). With ``save_path`` the
    scatter plot is saved there."""
    try:
        import umap
    except ImportError as exc:
        raise ImportError("visualize_latent_umap needs the umap-learn package: "
                          "pip install 'distwm[umap]'") from exc
    arr = _latents(latents, "visualize_latent_umap")
    names = _labels(labels, arr.shape[0], "visualize_latent_umap")
    if save_path is not None:
        _check_plot_path(save_path)
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or not (
            2 <= n_neighbors < arr.shape[0]):
        raise ValueError(f"visualize_latent_umap: n_neighbors must be an int in [2, N={arr.shape[0]}), "
                         f"got {n_neighbors!r}")
    points = umap.UMAP(n_neighbors=n_neighbors, n_components=2, random_state=0).fit_transform(arr)
    points = np.asarray(points)
    if save_path is not None:
        scatter_2d(points, names, "UMAP", save_path)
    return points
