"""Generic helpers: attribute dicts, YAML configs, tensor reshaping, images and videos.

The module imports neither torch nor any heavy library at import time: torch, cv2, imageio
and matplotlib are imported inside the functions that need them. The rest of the seed's
``utils.utils`` names load lazily from the modules they live in (``_SEED_NAMES``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np

from distwm._lazy import lazy_exports

#: the seed's other ``utils.utils`` names -> the modules they live in (loaded on first access)
_SEED_NAMES = {name: module for module, names in {
    "distwm.utils.video_io": ("VIDEO_FORMATS", "write_video", "save_video", "StreamingVideoWriter"),
    "distwm.utils.results_media": ("combine_videos", "ensure_results_dir_exists", "save_frames"),
    "distwm.utils.metrics_logging": ("TensorBoardMetrics", "plot_metrics"),
    "distwm.utils.batched_apply": ("apply_model",),
    "distwm.utils.latent_plots": ("visualize_latent_tsne", "visualize_latent_umap"),
    "distwm.utils.jepa_utils": ("apply_masks",),
    "distwm.memory.snapshots": ("load_memory",),
    "distwm.envs.torch_image_env": ("TorchImageEnvWrapper",),
}.items() for name in names}

__all__ = [
    "AttrDict",
    "load_yml_config",
    "to_tensor_obs",
    "postprocess_img",
    "preprocess_img",
    "bottle",
    "get_combined_params",
    "get_mask",
    "flatten_dict",
    "normalize_frames_for_saving",
    "lineplot",
    *_SEED_NAMES,
]


# -- dicts and configs -------------------------------------------------------------------------
class AttrDict(dict):
    """A ``dict`` whose keys are also attributes (``d.lr`` is ``d["lr"]``).

    A missing attribute raises ``AttributeError`` (so ``hasattr``, ``getattr(d, k, default)``
    and pickling behave as for any object).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"AttrDict has no attribute {name!r}; keys: {sorted(map(str, self))}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getstate__(self) -> dict:
        return dict(self)

    def __setstate__(self, state: dict) -> None:
        self.update(state)

    @classmethod
    def from_nested(cls, data: Any) -> Any:
        """Convert nested dicts (also inside lists) to :class:`AttrDict` recursively."""
        if isinstance(data, Mapping):
            return cls({k: cls.from_nested(v) for k, v in data.items()})
        if isinstance(data, list):
            return [cls.from_nested(v) for v in data]
        return data


def load_yml_config(path: str | os.PathLike) -> AttrDict:
    """Read a YAML file into a nested :class:`AttrDict` (an empty file gives an empty one)."""
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"YAML config not found: {path!r}")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if data is None:
        return AttrDict()
    if not isinstance(data, Mapping):
        raise ValueError(
            f"YAML config {path!r} must hold a mapping at top level, got {type(data).__name__}"
        )
    return AttrDict.from_nested(data)


def flatten_dict(data: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Flatten a nested dict: ``{'a': 2, 'b': {'c': 20}} -> {'a': 2, 'b.c': 20}``.

    ``prefix`` is prepended (with ``sep``) to every key. Empty nested dicts disappear.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_dict(value, sep=sep, prefix=full))
        else:
            out[full] = value
    return out


# -- tensors ---------------------------------------------------------------------------------
def bottle(func: Callable, *tensors):
    """Apply ``func`` (which works on ``(N, ...)``) to inputs shaped ``(N, T, ...)``.

    The two leading axes of every input are merged, ``func`` runs once, and the leading axis
    of its output (a tensor, or a tuple/list of tensors) is split back into ``(N, T)``.
    """
    if not tensors:
        raise ValueError("bottle needs at least one tensor")
    n, t = tensors[0].shape[:2]
    for x in tensors[1:]:
        if tuple(x.shape[:2]) != (n, t):
            raise ValueError(
                f"bottle inputs must share their two leading axes; got {tuple(tensors[0].shape)} "
                f"and {tuple(x.shape)}"
            )
    out = func(*(x.reshape(n * t, *x.shape[2:]) for x in tensors))
    if isinstance(out, (tuple, list)):
        return type(out)(y.reshape(n, t, *y.shape[1:]) for y in out)
    return out.reshape(n, t, *out.shape[1:])


def get_combined_params(*models) -> list:
    """All parameters of the given ``torch.nn.Module`` objects, in order, as one list."""
    params: list = []
    for model in models:
        params.extend(model.parameters())
    return params


def get_mask(tensor, lengths):
    """Batch-first validity mask from sequence lengths.

    ``tensor`` is shaped ``(N, T, ...)`` (then the mask is ``(N, T)``) or ``(N,)`` (then
    ``T = max(lengths)``). Entry ``[i, t]`` is 1 when ``t < lengths[i]``. A torch input gives a
    torch mask on its device with its dtype (float32 for non-float inputs); a numpy input gives
    a numpy mask likewise.
    """
    is_torch = type(tensor).__module__.startswith("torch")
    n = tensor.shape[0]
    if is_torch:
        import torch

        lengths_t = torch.as_tensor(lengths, device=tensor.device).reshape(-1)
        if lengths_t.shape[0] != n:
            raise ValueError(f"get_mask: {lengths_t.shape[0]} lengths for a batch of {n}")
        t = tensor.shape[1] if tensor.dim() >= 2 else int(lengths_t.max().item()) if n else 0
        dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
        steps = torch.arange(t, device=tensor.device)
        return (steps[None, :] < lengths_t[:, None]).to(dtype)
    arr = np.asarray(tensor)
    lengths_a = np.asarray(lengths).reshape(-1)
    if lengths_a.shape[0] != n:
        raise ValueError(f"get_mask: {lengths_a.shape[0]} lengths for a batch of {n}")
    t = arr.shape[1] if arr.ndim >= 2 else (int(lengths_a.max()) if n else 0)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32
    return (np.arange(t)[None, :] < lengths_a[:, None]).astype(dtype)


# -- images ----------------------------------------------------------------------------------
def _check_bit_depth(depth: int) -> int:
    if not isinstance(depth, (int, np.integer)) or not 1 <= depth <= 8:
        raise ValueError(f"bit depth must be an integer in 1..8, got {depth!r}")
    return int(depth)


def preprocess_img(image, depth: int):
    """In place: float tensor in ``[0, 255]`` -> quantised to ``depth`` bits in ``[-0.5, 0.5]``
    plus uniform dequantisation noise of one quantisation step (PlaNet). Returns ``image``."""
    import torch

    depth = _check_bit_depth(depth)
    image.div_(2 ** (8 - depth)).floor_().div_(2**depth).sub_(0.5)
    image.add_(torch.rand_like(image).div_(2**depth))
    return image


def postprocess_img(image, depth: int) -> np.ndarray:
    """float array in ``[-0.5, 0.5]`` -> uint8 in ``[0, 255]`` quantised to ``depth`` bits."""
    depth = _check_bit_depth(depth)
    image = np.asarray(image, dtype=np.float64)
    quantised = np.floor((image + 0.5) * 2**depth) * 2 ** (8 - depth)
    return np.clip(quantised, 0, 255).astype(np.uint8)


def to_tensor_obs(image, size: int = 64):
    """HWC numpy image (uint8 or float in [0, 255]) -> float32 CHW torch tensor ``size x size``."""
    import cv2
    import torch

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"to_tensor_obs expects an (H, W, C) image, got shape {image.shape}")
    resized = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def normalize_frames_for_saving(frames) -> np.ndarray:
    """Frames -> float32 ``(T, H, W, 3)`` in ``[0, 1]``.

    Accepts ``(T, C, H, W)`` or ``(T, H, W, C)`` (numpy or torch), with C in {1, 3, 4}: one
    channel is repeated to RGB, alpha is dropped. uint8 frames are divided by 255; float frames
    with negative values are taken as ``[-0.5, 0.5]`` and shifted; float frames above 1 are
    taken as ``[0, 255]``.
    """
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().float().numpy()
    arr = np.asarray(frames)
    if arr.ndim == 3:  # (T, H, W) grey
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"frames must be (T, C, H, W) or (T, H, W, C), got shape {arr.shape}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3, 4):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"frames need 1, 3 or 4 channels, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    else:
        out = arr.astype(np.float32)
        if out.size and out.min() < 0.0:
            out = out + 0.5
        elif out.size and out.max() > 1.0:
            out = out / 255.0
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    elif out.shape[-1] == 4:
        out = out[..., :3]
    return np.clip(out, 0.0, 1.0)


def _to_uint8_frames(frames) -> np.ndarray:
    return np.round(normalize_frames_for_saving(frames) * 255.0).astype(np.uint8)


# -- plots -----------------------------------------------------------------------------------
def lineplot(xs, ys, title: str, path: str = "", xaxis: str = "episode") -> str:
    """Line plot saved as ``{path}/{title}.png`` (matplotlib, Agg backend). Returns the file.

    ``ys`` is a 1-D series, a dict ``{label: series}``, or a 2-D array ``(len(xs), runs)``
    drawn as its mean with a band of one standard deviation.
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    xs = np.asarray(xs)
    if isinstance(ys, Mapping):
        for label, series in ys.items():
            ax.plot(xs, np.asarray(series), label=str(label))
        ax.legend()
    else:
        arr = np.asarray(ys, dtype=np.float64)
        if arr.ndim == 1:
            ax.plot(xs, arr)
        elif arr.ndim == 2:
            if arr.shape[0] != len(xs) and arr.shape[1] == len(xs):
                arr = arr.T
            mean, std = arr.mean(axis=1), arr.std(axis=1)
            ax.plot(xs, mean)
            ax.fill_between(xs, mean - std, mean + std, alpha=0.3)
        else:
            raise ValueError(f"lineplot ys must be 1-D, 2-D or a dict, got shape {arr.shape}")
    ax.set_title(title)
    ax.set_xlabel(xaxis)
    out = os.path.join(path, f"{title}.png")
    if path:
        os.makedirs(path, exist_ok=True)
    fig.savefig(out)
    return out


__getattr__, __dir__ = lazy_exports(__name__, _SEED_NAMES)
