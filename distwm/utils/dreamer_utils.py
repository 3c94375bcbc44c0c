"""Dreamer building blocks: symlog, two-hot value heads, lambda returns, parameter freezing,
and the experiment :class:`Logger` (JSONL, TensorBoard, wandb, videos).

Imports torch at module level; ``distwm.utils`` exposes these names lazily.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from distwm.utils.utils import VIDEO_FORMATS, flatten_dict, get_combined_params, write_video

__all__ = [
    "symlog",
    "symexp",
    "TwoHotEncoder",
    "compute_return",
    "compute_lambda_return",
    "get_parameters",
    "FreezeParameters",
    "Logger",
]

_log = logging.getLogger(__name__)


# -- symlog ----------------------------------------------------------------------------------
def symlog(x: Tensor) -> Tensor:
    """Symmetric log: ``sign(x) * log(1 + |x|)`` (DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """Inverse of :func:`symlog`: ``sign(x) * (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


# -- two-hot ---------------------------------------------------------------------------------
class TwoHotEncoder:
    """Two-hot encoding for symlog targets (DreamerV2/V3 reward and value heads).

    A target is split between the two nearest of ``num_buckets`` equally spaced bucket centres
    on ``[-symlog_range, symlog_range]`` so that the expected bucket centre equals the target
    (targets outside the range are clipped to it). :meth:`encode` takes targets already in
    symlog space; :meth:`decode` returns real values (it applies :func:`symexp`);
    :meth:`loss` takes real-valued targets. All methods are vectorised over any leading shape
    and follow the input's device and dtype.
    """

    def __init__(self, num_buckets: int = 255, symlog_range: float = 10.0):
        if not isinstance(num_buckets, (int, np.integer)) or num_buckets < 2:
            raise ValueError(f"num_buckets must be an integer >= 2, got {num_buckets!r}")
        if not (isinstance(symlog_range, (int, float)) and math.isfinite(symlog_range)
                and symlog_range > 0):
            raise ValueError(f"symlog_range must be a finite number > 0, got {symlog_range!r}")
        self.num_buckets = int(num_buckets)
        self.symlog_range = float(symlog_range)
        self.buckets: Tensor
        self.register_buffers()

    @property
    def bucket_width(self) -> float:
        return 2.0 * self.symlog_range / (self.num_buckets - 1)

    def register_buffers(self) -> None:
        """Allocate the bucket-centre buffer (float32, CPU). Use :meth:`to` to move it."""
        self.buckets = torch.linspace(-self.symlog_range, self.symlog_range, self.num_buckets)

    def to(self, device) -> "TwoHotEncoder":
        """Move the bucket centres to ``device`` (in place); returns ``self``."""
        self.buckets = self.buckets.to(device)
        return self

    def _buckets_like(self, x: Tensor) -> Tensor:
        return self.buckets.to(device=x.device, dtype=x.dtype)

    def encode(self, target: Tensor) -> Tensor:
        """Two-hot distribution ``target.shape + (num_buckets,)`` for symlog-space targets."""
        target = torch.as_tensor(target)
        out_dtype = target.dtype if target.is_floating_point() else torch.float32
        x = target.to(torch.float64 if out_dtype == torch.float64 else torch.float32)
        x = x.clamp(-self.symlog_range, self.symlog_range)
        position = (x + self.symlog_range) / self.bucket_width
        below = position.floor().clamp(0, self.num_buckets - 2)
        weight_above = (position - below).clamp(0.0, 1.0)
        below_idx = below.long().unsqueeze(-1)
        encoded = torch.zeros(*x.shape, self.num_buckets, dtype=x.dtype, device=x.device)
        encoded.scatter_(-1, below_idx, (1.0 - weight_above).unsqueeze(-1))
        encoded.scatter_add_(-1, below_idx + 1, weight_above.unsqueeze(-1))
        return encoded.to(out_dtype)

    def _check_logits(self, logits: Tensor) -> None:
        if logits.shape[-1] != self.num_buckets:
            raise ValueError(
                f"logits must have a last dimension of num_buckets={self.num_buckets}, "
                f"got shape {tuple(logits.shape)}"
            )

    def decode(self, logits: Tensor) -> Tensor:
        """Expected bucket centre under ``softmax(logits)``, mapped back with :func:`symexp`."""
        self._check_logits(logits)
        compute = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        probs = torch.softmax(compute, dim=-1)
        expected = (probs * self._buckets_like(compute)).sum(dim=-1)
        return symexp(expected).to(logits.dtype)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy of ``logits`` against the two-hot code of ``symlog(target)``.

        ``target`` holds real values (the same space :meth:`decode` returns), shaped like
        ``logits.shape[:-1]``. Returns the per-element loss (no reduction).
        """
        self._check_logits(logits)
        if tuple(target.shape) != tuple(logits.shape[:-1]):
            raise ValueError(
                f"target shape {tuple(target.shape)} must equal logits shape without its last "
                f"dimension, {tuple(logits.shape[:-1])}"
            )
        compute = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        code = self.encode(symlog(target.to(compute.dtype)).detach())
        return -(code * torch.log_softmax(compute, dim=-1)).sum(dim=-1)


# -- lambda returns ------------------------------------------------------------------------
def _broadcast_discounts(discounts, rewards: Tensor) -> Tensor:
    """A scalar or broadcastable discount as a tensor shaped like ``rewards``."""
    discounts = torch.as_tensor(discounts, dtype=rewards.dtype, device=rewards.device)
    try:
        return discounts.expand_as(rewards)
    except RuntimeError:
        raise ValueError(
            f"discounts of shape {tuple(discounts.shape)} do not broadcast to rewards "
            f"{tuple(rewards.shape)}"
        ) from None


def _lambda_returns(rewards: Tensor, next_values: Tensor, discounts: Tensor, lam: float,
                    bootstrap: Tensor) -> Tensor:
    """The TD(lambda) recursion, time along axis 0 (the one implementation).

    ``R_t = r_t + d_t * ((1 - lam) * v_{t+1} + lam * R_{t+1})`` with ``R_T = bootstrap``,
    where ``next_values[t] = v_{t+1}`` (so ``next_values[-1]`` is ``bootstrap``).
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam!r}")
    if rewards.shape != discounts.shape or rewards.shape != next_values.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)}, discounts {tuple(discounts.shape)} and values "
            f"must share one shape (values may have one extra time step)"
        )
    if tuple(bootstrap.shape) != tuple(rewards.shape[1:]):
        raise ValueError(
            f"bootstrap value shape {tuple(bootstrap.shape)} must be {tuple(rewards.shape[1:])}"
        )
    inputs = rewards + discounts * next_values * (1.0 - lam)
    returns = []
    last = bootstrap
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = inputs[t] + discounts[t] * lam * last
        returns.append(last)
    returns.reverse()
    return torch.stack(returns, dim=0) if returns else torch.zeros_like(rewards)


def compute_return(rewards: Tensor, values: Tensor, discounts: Tensor, td_lam: float,
                   last_value: Tensor) -> Tensor:
    """TD(lambda) returns over imagined trajectories, time-major (DreamerV1 actor/value targets).

    Args:
        rewards: ``(T, ...)`` reward after step ``t``.
        values: ``(T, ...)`` value of the state at step ``t`` (``values[0]`` is not used: the
            target at ``t`` bootstraps from ``values[t + 1]``).
        discounts: ``(T, ...)`` discount (``gamma * (1 - terminal)``) applied after step ``t``
            (a scalar or any shape that broadcasts to ``rewards`` works too).
        td_lam: lambda in ``[0, 1]``.
        last_value: ``(...)`` value of the state after the last step.

    Returns:
        ``(T, ...)`` returns with ``R_t = r_t + d_t((1 - lam) v_{t+1} + lam R_{t+1})`` and
        ``R_T = last_value``.
    """
    if values.shape != rewards.shape:
        raise ValueError(
            f"values shape {tuple(values.shape)} must equal rewards shape {tuple(rewards.shape)}"
        )
    next_values = torch.cat([values[1:], last_value.unsqueeze(0)], dim=0)
    discounts = _broadcast_discounts(discounts, rewards)
    return _lambda_returns(rewards, next_values, discounts, td_lam, last_value)


def compute_lambda_return(rewards: Tensor, values: Tensor, discounts: Tensor,
                          lambda_coef: float = 0.95) -> Tensor:
    """lambda-return targets for value training, batch-major.

    Args:
        rewards: ``(B, T)`` (or ``(B, T, ...)``).
        values: ``(B, T + 1)`` value estimates of states ``0..T``; ``values[:, T]`` bootstraps.
        discounts: ``(B, T)`` discount after each step (``gamma * (1 - terminal)``), or a
            scalar / shape that broadcasts to ``rewards``.
        lambda_coef: lambda in ``[0, 1]``.

    Returns:
        ``(B, T)`` with ``R_t = r_t + d_t((1 - lam) V_{t+1} + lam R_{t+1})``, ``R_T = V_T``.
    """
    if rewards.dim() < 2:
        raise ValueError(f"rewards must be (B, T), got shape {tuple(rewards.shape)}")
    horizon = rewards.shape[1]
    expected = (rewards.shape[0], horizon + 1, *rewards.shape[2:])
    if tuple(values.shape) != expected:
        raise ValueError(
            f"values must be (B, T + 1) = {expected} for rewards {tuple(rewards.shape)}, "
            f"got {tuple(values.shape)}"
        )
    discounts = _broadcast_discounts(discounts, rewards)
    returns = _lambda_returns(
        rewards.transpose(0, 1), values[:, 1:].transpose(0, 1), discounts.transpose(0, 1),
        lambda_coef, values[:, -1],
    )
    return returns.transpose(0, 1)


# -- parameters ------------------------------------------------------------------------------
def get_parameters(modules: Iterable[torch.nn.Module]) -> list:
    """The parameters of every module in ``modules``, as one list."""
    return get_combined_params(*modules)


class FreezeParameters:
    """Context manager that disables gradients of the given modules' parameters.

    On exit every parameter gets back the ``requires_grad`` it had on entry.
    """

    def __init__(self, modules: Iterable[torch.nn.Module]):
        self.modules = list(modules)
        self._saved: list[tuple[torch.nn.Parameter, bool]] = []

    def __enter__(self) -> "FreezeParameters":
        self._saved = [(p, p.requires_grad) for p in get_parameters(self.modules)]
        for param, _ in self._saved:
            param.requires_grad_(False)
        return self

    def __exit__(self, *exc) -> None:
        for param, flag in self._saved:
            param.requires_grad_(flag)
        self._saved = []


# -- logger ----------------------------------------------------------------------------------
def _to_float(value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"a scalar metric must have one element, got shape {tuple(value.shape)}")
        return float(value.detach().cpu().item())
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"a scalar metric must have one element, got shape {arr.shape}")
    return float(arr.reshape(()))


class Logger:
    """Experiment logger: JSONL, TensorBoard, wandb and videos.

    * scalars go to ``{log_dir}/metrics.jsonl`` (one JSON object per call: ``{"step": s, ...}``)
      and to TensorBoard event files in ``log_dir`` (when ``tensorboard`` is installed; set
      ``enable_tensorboard=True`` to make it required, ``False`` to turn it off);
    * with ``enable_wandb`` scalars and videos also go to wandb: online when an API key is
      given (argument or ``WANDB_API_KEY``) or ``WANDB_MODE`` says so, offline otherwise;
    * videos go to ``{log_dir}/videos/{title}_{step}_{i}.{video_format}`` (gif, mp4 or avi);
    * :meth:`dump_scalars_to_pickle` writes ``{log_dir}/{title}_{step}.pkl``.

    The constructor creates nothing: the directory, files and writers are opened on the first
    write. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, log_dir, enable_wandb: bool = False, wandb_api_key: str = "",
                 wandb_project: str = "torchwm", wandb_entity: str = "",
                 video_format: str = "gif", video_fps: int = 20, *,
                 enable_tensorboard: bool | None = None, config: Mapping | None = None):
        if video_format not in VIDEO_FORMATS:
            raise ValueError(
                f"video_format {video_format!r} is not supported; choose one of {VIDEO_FORMATS}"
            )
        if video_fps <= 0:
            raise ValueError(f"video_fps must be positive, got {video_fps!r}")
        self.log_dir = os.fspath(log_dir)
        self.enable_wandb = bool(enable_wandb)
        self.wandb_api_key = wandb_api_key
        self.wandb_project = wandb_project
        self.wandb_entity = wandb_entity
        self.video_format = video_format
        self.video_fps = video_fps
        self.enable_tensorboard = enable_tensorboard
        self.config = dict(config) if config is not None else None
        self._jsonl = None
        self._tb = None
        self._tb_checked = False
        self._wandb_run = None

    # -- lazy sinks --------------------------------------------------------------------------
    @property
    def jsonl_path(self) -> str:
        return os.path.join(self.log_dir, "metrics.jsonl")

    def _ensure_dir(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)

    def _jsonl_file(self):
        if self._jsonl is None:
            self._ensure_dir()
            self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        return self._jsonl

    def _tensorboard(self):
        if not self._tb_checked:
            self._tb_checked = True
            if self.enable_tensorboard is not False:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as exc:
                    if self.enable_tensorboard:
                        raise ImportError(
                            "Logger(enable_tensorboard=True) needs the tensorboard package "
                            "(`pip install distwm[logging]`)"
                        ) from exc
                    _log.warning("tensorboard is not installed; Logger writes JSONL only")
                else:
                    self._ensure_dir()
                    self._tb = SummaryWriter(log_dir=self.log_dir)
        return self._tb

    def wandb_mode(self) -> str:
        """``'online'`` with an API key or ``WANDB_MODE=online``, else ``WANDB_MODE`` or offline."""
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode:
            return env_mode
        if self.wandb_api_key or os.environ.get("WANDB_API_KEY"):
            return "online"
        return "offline"

    def _wandb(self):
        if self.enable_wandb and self._wandb_run is None:
            import wandb

            self._ensure_dir()
            settings = wandb.Settings(api_key=self.wandb_api_key) if self.wandb_api_key else None
            self._wandb_run = wandb.init(
                project=self.wandb_project, entity=self.wandb_entity or None,
                dir=self.log_dir, mode=self.wandb_mode(), config=self.config,
                settings=settings, reinit="create_new",
            )
        return self._wandb_run

    # -- scalars -----------------------------------------------------------------------------
    def log_scalar(self, scalar, name: str, step_: int) -> None:
        """Log one scalar ``name`` at step ``step_``."""
        self.log_scalars({name: scalar}, step_)

    def log_scalars(self, scalar_dict: Mapping[str, Any], step: int) -> None:
        """Log a (possibly nested, flattened with '/') dict of scalars at ``step``."""
        flat = {k: _to_float(v) for k, v in flatten_dict(scalar_dict, sep="/").items()}
        step = int(step)
        f = self._jsonl_file()
        f.write(json.dumps({"step": step, **flat}) + "\n")
        tb = self._tensorboard()
        if tb is not None:
            for key, value in flat.items():
                tb.add_scalar(key, value, step)
        run = self._wandb()
        if run is not None:
            run.log(flat, step=step)

    # -- videos ------------------------------------------------------------------------------
    def log_videos(self, videos, step: int, max_videos_to_save: int = 1, fps=None,
                   video_title: str = "video") -> list[str]:
        """Save up to ``max_videos_to_save`` videos; returns the files written.

        ``videos``: ``(N, T, C, H, W)`` or ``(N, T, H, W, C)`` (or a single ``(T, ...)``
        video), uint8 or float in ``[0, 1]`` (``[-0.5, 0.5]`` is recognised too).
        """
        if isinstance(videos, Tensor):
            videos = videos.detach().cpu().float().numpy()
        arr = np.asarray(videos)
        if arr.ndim == 4:
            arr = arr[None]
        if arr.ndim != 5:
            raise ValueError(f"videos must be (N, T, C, H, W) or (N, T, H, W, C), got {arr.shape}")
        fps = fps or self.video_fps
        paths = []
        for i in range(min(max_videos_to_save, arr.shape[0])):
            path = os.path.join(self.log_dir, "videos",
                                f"{video_title}_{int(step)}_{i}.{self.video_format}")
            paths.append(write_video(arr[i], path, fps=fps, fmt=self.video_format))
        run = self._wandb()
        if run is not None:
            import wandb

            run.log({video_title: [wandb.Video(p, format=self.video_format) for p in paths]},
                    step=int(step))
        return paths

    # -- snapshots ---------------------------------------------------------------------------
    def dump_scalars_to_pickle(self, metrics, step: int, log_title: str | None = None) -> str:
        """Pickle ``metrics`` to ``{log_dir}/{log_title or 'scalar_data'}_{step}.pkl``."""
        self._ensure_dir()
        path = os.path.join(self.log_dir, f"{log_title or 'scalar_data'}_{int(step)}.pkl")
        with open(path, "wb") as f:
            pickle.dump(metrics, f)
        return path

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close every sink (idempotent); a later write reopens them."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._tb_checked = False
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
