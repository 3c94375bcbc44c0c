"""I-JEPA's training utilities (facebookresearch/ijepa ``src/utils/*``): initialisation, mask
gathering, the learning-rate / weight-decay schedules, timers and meters, CSV logging and the
``torch.distributed`` helpers.

* :func:`trunc_normal_` is ``torch.nn.init.trunc_normal_`` (the same inverse-CDF sampler ijepa
  copied from torch); :func:`apply_masks` gathers the patches that index masks keep (ijepa's
  ``src/masks/utils.py``; the seed also lists it as ``world_models.utils.utils.apply_masks``);
  :func:`repeat_interleave_batch` repeats each batch chunk.
* :class:`WarmupCosineSchedule` / :class:`CosineWDSchedule`: ijepa's per-iteration schedules
  (linear warmup ``start_lr -> ref_lr`` over ``warmup_steps``, then cosine to ``final_lr`` at
  ``T_max``; cosine weight decay ``ref_wd -> final_wd`` skipping groups flagged
  ``WD_exclude``). Past ``T_max`` both hold their final value (ijepa's cosines turn back; its
  training stops at ``T_max / ipe_scale``, before that matters). Both also have
  ``state_dict()`` / ``load_state_dict()`` (their step counter) for resuming.
* :func:`gpu_timer` times a closure in milliseconds: CUDA events when CUDA is available, wall
  time otherwise (ijepa returns -1 without CUDA).
* :class:`CSVLogger` (the seed's signature, with wandb): the header is written on the first
  :meth:`~CSVLogger.log` into a new or empty file (not in the constructor, and not again when a
  run resumes into the same file); wandb goes through :class:`distwm.utils.run_logger.Logger`
  (offline unless an API key or ``WANDB_MODE`` says otherwise, wandb imported on first use).
* :func:`init_distributed` returns ``(world_size, rank)``: those of an existing process group
  (Ray Train's), else it joins the group that ``rank_and_world_size`` or the torchrun
  (``RANK`` / ``WORLD_SIZE``) or SLURM (``SLURM_PROCID`` / ``SLURM_NTASKS``) variables describe
  through :func:`distwm.utils.distributed.init_group` (gloo on CPU, NCCL on GPU), else ``(1, 0)``.
* :class:`AllGather`, :class:`AllReduceSum`, :class:`AllReduce`: autograd functions over the
  group, the identity without one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from distwm.utils import distributed

__all__ = ["AllGather", "AllReduce", "AllReduceSum", "AverageMeter", "CSVLogger", "CosineWDSchedule",
           "WarmupCosineSchedule", "apply_masks", "gpu_timer", "grad_logger", "init_distributed",
           "repeat_interleave_batch", "trunc_normal_"]

logger = logging.getLogger(__name__)


# -- tensors ----------------------------------------------------------------------------------

def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2,
                  b: float = 2.0) -> torch.Tensor:
    """Fill ``tensor`` in place from ``N(mean, std)`` truncated to ``[a, b]``; returns it."""
    return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


def apply_masks(x: torch.Tensor, masks) -> torch.Tensor:
    """Gather the tokens each mask keeps: ``x`` ``(B, N, D)``, ``masks`` a tensor ``(B, K)`` of
    patch indices in ``[0, N)`` or a list of them; returns ``(len(masks) * B, K, D)``, the
    masks' selections concatenated along the batch (mask-major)."""
    if isinstance(masks, torch.Tensor):
        masks = [masks]
    gathered = []
    for m in masks:
        if m.dim() != 2 or m.shape[0] != x.shape[0]:
            raise ValueError(f"apply_masks: each mask must be (B={x.shape[0]}, K) patch indices, "
                             f"got shape {tuple(m.shape)}")
        index = m.to(device=x.device, dtype=torch.long).unsqueeze(-1).expand(-1, -1, x.size(-1))
        gathered.append(torch.gather(x, dim=1, index=index))
    return torch.cat(gathered, dim=0)


def repeat_interleave_batch(x: torch.Tensor, B: int, repeat: int) -> torch.Tensor:
    """``x`` holds ``len(x) // B`` chunks of ``B`` rows; repeat each chunk ``repeat`` times in
    place: ``[c0, c1] -> [c0, c0, c1, c1]`` for ``repeat=2``."""
    n = len(x) // B
    return torch.cat([torch.cat([x[i * B:(i + 1) * B]] * repeat, dim=0) for i in range(n)], dim=0)


# -- schedules ------------------------------------------------------------------------------

class _StepCounter:
    _step: float

    def state_dict(self) -> dict[str, float]:
        return {"step": float(self._step)}

    def load_state_dict(self, state: dict) -> None:
        self._step = float(state["step"])


class WarmupCosineSchedule(_StepCounter):
    """Per-iteration learning rate: ``start_lr -> ref_lr`` linearly over ``warmup_steps``,
    then a cosine from ``ref_lr`` to ``final_lr`` reached at step ``T_max`` and held after.
    :meth:`step`
    advances one iteration, sets every param group's ``lr`` and returns it. ``last_epoch`` is
    accepted for the seed's signature and unused (as in ijepa)."""

    def __init__(self, optimizer, warmup_steps: int, start_lr: float, ref_lr: float, T_max: int,
                 last_epoch: int = -1, final_lr: float = 0.0):
        if warmup_steps < 0 or T_max < 0:
            raise ValueError(f"WarmupCosineSchedule: warmup_steps ({warmup_steps}) and T_max ({T_max}) "
                             "must be >= 0")
        self.optimizer = optimizer
        self.start_lr = start_lr
        self.ref_lr = ref_lr
        self.final_lr = final_lr
        self.warmup_steps = warmup_steps
        self.T_max = T_max - warmup_steps  # the cosine's length (ijepa's naming)
        self._step = 0.0

    def step(self) -> float:
        self._step += 1
        if self._step < self.warmup_steps:
            progress = self._step / max(1, self.warmup_steps)
            new_lr = self.start_lr + progress * (self.ref_lr - self.start_lr)
        else:
            progress = min(1.0, (self._step - self.warmup_steps) / max(1, self.T_max))
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            new_lr = max(self.final_lr, self.final_lr + (self.ref_lr - self.final_lr) * cosine)
        for group in self.optimizer.param_groups:
            group["lr"] = new_lr
        return new_lr


class CosineWDSchedule(_StepCounter):
    """Per-iteration weight decay: a cosine from ``ref_wd`` to ``final_wd`` at step ``T_max``
    (held there after), set on every param group that is not flagged ``WD_exclude``;
    :meth:`step` returns it."""

    def __init__(self, optimizer, ref_wd: float, T_max: int, final_wd: float = 0.0):
        if T_max <= 0:
            raise ValueError(f"CosineWDSchedule: T_max must be > 0, got {T_max}")
        self.optimizer = optimizer
        self.ref_wd = ref_wd
        self.final_wd = final_wd
        self.T_max = T_max
        self._step = 0.0

    def step(self) -> float:
        self._step += 1
        progress = min(1.0, self._step / self.T_max)
        new_wd = self.final_wd + (self.ref_wd - self.final_wd) * 0.5 * (1.0 + math.cos(math.pi * progress))
        new_wd = max(self.final_wd, new_wd) if self.final_wd <= self.ref_wd else min(self.final_wd, new_wd)
        for group in self.optimizer.param_groups:
            if not group.get("WD_exclude", False):
                group["weight_decay"] = new_wd
        return new_wd


# -- timing, meters, logging ----------------------------------------------------------------

def gpu_timer(closure: Callable[[], Any], log_timings: bool = True) -> tuple[Any, float]:
    """``(closure(), elapsed milliseconds)``: CUDA events (synchronised) when CUDA is
    available, wall time otherwise; ``-1.0`` with ``log_timings=False``."""
    if not log_timings:
        return closure(), -1.0
    if torch.cuda.is_available():
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        result = closure()
        end.record()
        torch.cuda.synchronize()
        return result, float(start.elapsed_time(end))
    began = time.perf_counter()
    result = closure()
    return result, (time.perf_counter() - began) * 1000.0


class AverageMeter:
    """Running ``val`` (last), ``avg``, ``min``, ``max``, ``sum`` and ``count`` of a metric."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.max = float("-inf")
        self.min = float("inf")
        self.sum = 0.0
        self.count = 0

    def update(self, val, n: int = 1) -> None:
        self.val = val
        self.max = max(val, self.max)
        self.min = min(val, self.min)
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def grad_logger(named_params: Iterable[tuple[str, torch.Tensor]]) -> AverageMeter:
    """Gradient-norm statistics over the weight matrices (biases and 1-D parameters left out);
    ``first_layer`` / ``last_layer``: the norms of the first and last ``qkv`` weights (0 when
    there is none)."""
    stats = AverageMeter()
    stats.first_layer = None
    stats.last_layer = None
    for name, p in named_params:
        if p.grad is None or name.endswith(".bias") or p.dim() == 1:
            continue
        norm = float(torch.linalg.vector_norm(p.grad.detach()))
        stats.update(norm)
        if "qkv" in name:
            stats.last_layer = norm
            if stats.first_layer is None:
                stats.first_layer = norm
    if stats.first_layer is None or stats.last_layer is None:
        stats.first_layer = stats.last_layer = 0.0
    return stats


class CSVLogger:
    """Append rows to the CSV file ``fname``; the columns are ``(printf format, name)`` pairs.

    ``CSVLogger(fname, ("%d", "epoch"), ("%.5f", "loss"))`` (ijepa's form: the pairs may follow
    ``fname`` directly) or ``CSVLogger(fname, enable_wandb, wandb_api_key, wandb_project,
    wandb_entity, ("%d", "epoch"), ...)`` (the seed's). :meth:`log` ``(step, *values)`` writes
    one row (the header first when the file is new or empty) and, with ``enable_wandb``, logs
    ``{name: value}`` at ``step`` to wandb (its run files beside ``fname``).
    """

    def __init__(self, fname, enable_wandb: bool = False, wandb_api_key: str = "",
                 wandb_project: str = "torchwm", wandb_entity: str = "", *argv):
        settings = [enable_wandb, wandb_api_key, wandb_project, wandb_entity]
        defaults = [False, "", "torchwm", ""]
        first = next((i for i, v in enumerate(settings) if isinstance(v, (tuple, list))), None)
        if first is not None:  # ijepa's form: the columns start right after fname
            end = next((i for i in range(first, 4) if not isinstance(settings[i], (tuple, list))), 4)
            if (argv and end < 4) or settings[end:] != defaults[end:]:
                raise ValueError("CSVLogger: pass the wandb settings before the (format, name) columns")
            argv = tuple(settings[first:end]) + tuple(argv)
            settings = settings[:first] + defaults[first:]
        self.fname = os.fspath(fname)
        self.enable_wandb, self.wandb_api_key, self.wandb_project, self.wandb_entity = settings
        self.enable_wandb = bool(self.enable_wandb)
        for column in argv:
            if not (isinstance(column, (tuple, list)) and len(column) == 2):
                raise ValueError(f"CSVLogger: each column is a (format, name) pair, got {column!r}")
        self.types = [str(c[0]) for c in argv]
        self.names = [str(c[1]) for c in argv]
        self._run_logger = None

    def log(self, step: int, *argv) -> None:
        if len(argv) != len(self.names):
            raise ValueError(f"CSVLogger.log: {len(argv)} values for {len(self.names)} columns {self.names}")
        new = not os.path.exists(self.fname) or os.path.getsize(self.fname) == 0
        with open(self.fname, "a") as f:
            if new:
                f.write(",".join(self.names) + "\n")
            f.write(",".join(fmt % value for fmt, value in zip(self.types, argv)) + "\n")
        if self.enable_wandb:
            self._wandb_logger().log_scalars(dict(zip(self.names, argv)), step)

    def _wandb_logger(self):
        if self._run_logger is None:
            from distwm.utils.run_logger import Logger

            self._run_logger = Logger(os.path.dirname(os.path.abspath(self.fname)), enable_wandb=True,
                                      wandb_api_key=self.wandb_api_key, wandb_project=self.wandb_project,
                                      wandb_entity=self.wandb_entity, enable_tensorboard=False)
        return self._run_logger


# -- torch.distributed ----------------------------------------------------------------------

def _env_rank_and_world_size() -> tuple[int | None, int | None]:
    for rank_var, size_var in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank_var in os.environ and size_var in os.environ:
            return int(os.environ[rank_var]), int(os.environ[size_var])
    return None, None


def init_distributed(port: int = 40112,
                     rank_and_world_size: Sequence[int | None] = (None, None)) -> tuple[int, int]:
    """``(world_size, rank)`` of this process, joining a process group when there is to be one.

    An initialised group (Ray Train's, torchrun's) is used as it is. Else ``rank_and_world_size``
    (both or neither) or the environment (``RANK`` / ``WORLD_SIZE``, then ``SLURM_PROCID`` /
    ``SLURM_NTASKS``) give the rank and size; with more than one rank this joins the group at
    ``MASTER_ADDR`` (default localhost) : ``MASTER_PORT`` (default ``port``). A failed join
    logs a warning and falls back to ``(1, 0)`` (the seed's contract)."""
    if distributed.is_active():
        return distributed.world_size(), distributed.rank()
    rank, world_size = rank_and_world_size
    if (rank is None) != (world_size is None):
        raise ValueError("init_distributed: rank_and_world_size needs both or neither, got "
                         f"{tuple(rank_and_world_size)}")
    if rank is None:
        rank, world_size = _env_rank_and_world_size()
    if world_size is None or world_size <= 1:
        return 1, 0
    address = os.environ.get("MASTER_ADDR", "localhost")
    master_port = os.environ.get("MASTER_PORT", str(port))
    try:
        distributed.init_group(int(rank), int(world_size), f"tcp://{address}:{master_port}")
    except (RuntimeError, ValueError, OSError) as exc:
        logger.warning("init_distributed: could not join the group of %s ranks at %s:%s (%s); "
                       "running as a single process", world_size, address, master_port, exc)
        return 1, 0
    return distributed.world_size(), distributed.rank()


def _group():
    """``torch.distributed`` when a group of more than one rank exists, else None."""
    if distributed.world_size() > 1:
        import torch.distributed as dist

        return dist
    return None


class AllGather(torch.autograd.Function):
    """Concatenate every rank's ``x`` along dim 0 (backward: the summed gradient of this rank's
    slice); the identity without a group."""

    @staticmethod
    def forward(ctx, x):
        dist = _group()
        if dist is None:
            return x
        x = x.contiguous()
        outputs = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(outputs, x)
        return torch.cat(outputs, 0)

    @staticmethod
    def backward(ctx, grads):
        dist = _group()
        if dist is None:
            return grads
        size = grads.shape[0] // dist.get_world_size()
        start = size * dist.get_rank()
        grads = grads.contiguous()
        dist.all_reduce(grads)
        return grads[start:start + size]


class AllReduceSum(torch.autograd.Function):
    """Sum ``x`` over the ranks (gradient passed through); the identity without a group."""

    @staticmethod
    def forward(ctx, x):
        dist = _group()
        if dist is not None:
            x = x.contiguous().clone()
            dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grads):
        return grads


class AllReduce(torch.autograd.Function):
    """Average ``x`` over the ranks (gradient passed through); the identity without a group."""

    @staticmethod
    def forward(ctx, x):
        dist = _group()
        if dist is not None:
            x = x.contiguous() / dist.get_world_size()
            dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grads):
        return grads
