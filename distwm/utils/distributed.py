"""Data-parallel updates: one ``torch.distributed`` process group of learner replicas.

N learners (Ray actors, or any processes) form one process group (:func:`init_group`; gloo on
CPU, NCCL on GPU). Each samples its own batch and calls ``agent.update({name: batch})``; the
agent averages its gradients over the group with :func:`reduce_gradients` **after backward and
before gradient clipping** (so clipping acts on the averaged gradient, as it would on one big
batch) and every replica applies the same step. Without a group every function here is a
no-op that costs one check (a single learner pays nothing else), and this module imports
torch only inside its functions (``import distwm`` stays torch-free).

Skipped updates. A rank that must skip a step (non-finite input or loss) before a sync point
still *joins* it with :func:`join_skipped`: it contributes NaN gradients, so every rank's
averaged gradient is non-finite and every rank skips that step; no rank ever waits in a
collective that another rank left out, and the number of collectives per update is the same
as in an update that skips nothing. :func:`all_agree` (one MIN all-reduce) is there for
decisions that have no gradient to carry them.

What is exact. The averaged gradient of N batches of B is the gradient of one batch of N*B when
the loss is a mean over the batch with equal weights (Dreamer's world-model loss with
``free_nats_per_step``; TinyAgent's loss when every batch has as many unmasked steps), up to
float rounding and the sampling noise of stochastic latents. Dreamer's actor loss divides
advantages by a return scale from *batch percentiles*: each rank uses the scale of its own
imagined returns in its own loss, and the normaliser's EMA state is then averaged over the
group (an EMA of the ranks' mean percentiles), so the replicas stay identical but the actor's
step is not the step of one N*B batch. Dreamer and PlaNet sample latents from each rank's own
RNG, as any two batches would.

Errors that are not skips (a malformed batch, an exception in the model) leave the other ranks
waiting in the next collective until the group's ``timeout_s``; then they raise too.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Iterable, Mapping

__all__ = ["all_agree", "broadcast_module_state", "broadcast_object", "destroy_group",
           "free_address", "init_group", "is_active", "join_skipped", "rank",
           "reduce_gradients", "replicas_agree", "world_size"]

_BACKENDS = ("auto", "gloo", "nccl")


def _dist():
    """``torch.distributed`` when a process group is initialised, else None (imports nothing:
    without torch loaded there can be no group)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def is_active() -> bool:
    """True when a process group is initialised in this process."""
    return _dist() is not None


def world_size() -> int:
    """Number of ranks of the group (1 without one)."""
    dist = _dist()
    return 1 if dist is None else dist.get_world_size()


def rank() -> int:
    """This process's rank (0 without a group)."""
    dist = _dist()
    return 0 if dist is None else dist.get_rank()


def _parallel():
    """``torch.distributed`` when there is a group of more than one rank, else None."""
    dist = _dist()
    return dist if dist is not None and dist.get_world_size() > 1 else None


def init_group(rank: int, world_size: int, init_method: str, backend: str = "auto",
               timeout_s: float = 60.0, *, device: Any = None) -> str:
    """Join the process group of ``world_size`` learners as ``rank``; returns the backend.

    ``init_method``: ``"tcp://host:port"`` of rank 0 (:func:`free_address` there), or any
    ``torch.distributed`` init method. ``backend="auto"``: ``nccl`` when CUDA is available and
    ``device`` (the learner's device; ``None``: CUDA when available) is a CUDA device, else
    ``gloo``. ``timeout_s`` bounds how long a collective waits for the other ranks (a rank that
    died or raised makes the others raise after it).
    """
    import datetime

    import torch
    import torch.distributed as dist

    for what, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"init_group: {what} must be an int, got {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"init_group: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if backend not in _BACKENDS:
        raise ValueError(f"init_group: backend must be one of {_BACKENDS}, got {backend!r}")
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"init_group: timeout_s must be > 0 seconds, got {timeout_s!r}")
    if not dist.is_available():
        raise RuntimeError("init_group: this torch build has no torch.distributed")
    if dist.is_initialized():
        raise RuntimeError(
            f"init_group: a process group is already initialised here (rank {dist.get_rank()} of "
            f"{dist.get_world_size()}, backend {dist.get_backend()}); call destroy_group() first")
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu") if device in (None, "auto") else torch.device(device)
    if backend == "auto":
        backend = "nccl" if cuda and dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError(f"init_group: backend 'nccl' needs a CUDA device, the learner's is {dev}")
    if backend == "nccl" and dev.index is not None:
        torch.cuda.set_device(dev)  # NCCL works on the current device
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=float(timeout_s)))
    return backend


def destroy_group() -> None:
    """Leave the process group (nothing happens without one)."""
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()


def free_address() -> str:
    """``"tcp://<node ip>:<free port>"`` for rank 0's :func:`init_group` (the node's IP from Ray
    when Ray is initialised in this process, else 127.0.0.1). The port is free now; another
    process could take it before the group binds it (rare; then init_group fails, retry)."""
    host = "127.0.0.1"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from ray.util import get_node_ip_address

        host = get_node_ip_address()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    return f"tcp://{host}:{port}"


# -- buckets -----------------------------------------------------------------------------------

def _buckets(tensors):
    """``{(device, dtype): [tensor, ...]}`` in order (one bucket in the usual case)."""
    out: dict[tuple, list] = {}
    for t in tensors:
        out.setdefault((t.device, t.dtype), []).append(t)
    return out


def _nccl(dist) -> bool:
    return str(dist.get_backend()).lower() == "nccl"


def _comm_device(dist, torch):
    """Where the group's small control tensors live (NCCL: this rank's CUDA device)."""
    return torch.device("cuda", torch.cuda.current_device()) if _nccl(dist) else torch.device("cpu")


def _check_device(dist, device) -> None:
    if _nccl(dist) and device.type != "cuda":
        raise RuntimeError(f"the process group uses nccl, which cannot reduce {device} tensors; "
                           "init_group(..., device='cpu') (gloo) for CPU learners")


def _flat(tensors, torch):
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _scatter(flat, tensors) -> None:
    offset = 0
    for t in tensors:
        n = t.numel()
        t.detach().copy_(flat[offset:offset + n].view_as(t))
        offset += n


def _trainable(params) -> list:
    params = list(params)
    for p in params:
        if getattr(p, "is_sparse", False) or (p.grad is not None and p.grad.is_sparse):
            raise ValueError("reduce_gradients: sparse parameters or gradients are not supported")
    return [p for p in params if p.requires_grad]


def _average(tensors, dist, torch) -> None:
    size = dist.get_world_size()
    for (device, dtype), group in _buckets(tensors).items():
        if not (dtype.is_floating_point or dtype.is_complex):
            raise ValueError(f"reduce_gradients: can only average floating tensors, got {dtype}")
        _check_device(dist, device)
        flat = _flat(group, torch)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(size)
        _scatter(flat, group)


def reduce_gradients(params: Iterable, *, extra: Iterable = ()) -> None:
    """Average the ``.grad`` of ``params`` over the group in one bucketed all-reduce (one per
    dtype and device: flatten, all-reduce SUM, divide by the world size, copy back).

    Call it after ``backward()`` and before clipping and ``optimizer.step()``, with the same
    parameters in the same order on every rank. A parameter whose grad is None counts as
    zeros and gets a zero grad (every rank sends the same layout); parameters with
    ``requires_grad=False`` are left out. ``extra``: floating tensors (e.g. running statistics)
    averaged in place in the same bucket. Without a group of more than one rank: no-op.
    """
    _sync_point(params, extra, skipped=False)


def join_skipped(params: Iterable, *, extra: Iterable = ()) -> None:
    """Join the :func:`reduce_gradients` sync point of a step this rank skips: its gradients
    are set to NaN, so the averaged gradient of every rank is non-finite and every rank skips
    the step (as each does on a non-finite gradient). ``params`` and ``extra`` as the other
    ranks pass them (``extra`` is sent as it is). No-op without a group of more than one rank.
    """
    _sync_point(params, extra, skipped=True)


def _sync_point(params: Iterable, extra: Iterable, skipped: bool) -> None:
    """The one all-reduce of a step: this rank's gradients (a missing one as zeros), or NaN
    for a step it skips."""
    dist = _parallel()
    if dist is None:
        return
    import torch

    params = _trainable(params)
    for p in params:
        if skipped:
            p.grad = torch.full_like(p, float("nan")) if p.grad is None else p.grad.fill_(float("nan"))
        elif p.grad is None:
            p.grad = torch.zeros_like(p)
    _average([p.grad for p in params] + list(extra), dist, torch)


def all_agree(flag: bool) -> bool:
    """True iff every rank's ``flag`` is True (one MIN all-reduce); ``flag`` without a group."""
    dist = _parallel()
    if dist is None:
        return bool(flag)
    import torch

    device = _comm_device(dist, torch)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


# -- identical replicas ------------------------------------------------------------------------

def _state_tensors(obj) -> list:
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        obj = obj.state_dict(keep_vars=True) if _is_module(obj) else obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected an nn.Module or a mapping of tensors, got {type(obj).__name__}")
    import torch

    bad = [k for k, v in obj.items() if not torch.is_tensor(v)]
    if bad:
        raise TypeError(f"state has entries that are not tensors: {bad[:5]} (use broadcast_object)")
    return [v.data if isinstance(v, torch.nn.Parameter) else v for v in obj.values()]


def _is_module(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _same_layout(tensors, dist, torch, what: str) -> None:
    """Raise on every rank (no rank left waiting) when the ranks' tensors differ in count/size."""
    n, numel = len(tensors), sum(t.numel() for t in tensors)
    device = _comm_device(dist, torch)
    stats = torch.tensor([n, -n, numel, -numel], dtype=torch.int64, device=device)
    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
    if stats[0] != -stats[1] or stats[2] != -stats[3]:
        raise ValueError(f"{what}: the ranks' states differ (tensors {int(-stats[1])}..{int(stats[0])}, "
                         f"elements {int(-stats[3])}..{int(stats[2])}); build every replica from "
                         "the same config")


def broadcast_module_state(module_or_state: Any, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's, in place (one broadcast per
    dtype and device), so that the replicas start identical. Takes an ``nn.Module`` or a
    mapping of tensors (a state dict whose tensors are the live ones). For a whole agent
    (optimiser state, counters): ``agent.load_state_dict(broadcast_object(agent.state_dict()))``.
    Raises on every rank when the ranks' states differ in layout. No-op without a group."""
    dist = _parallel()
    if dist is None:
        return
    import torch

    tensors = _state_tensors(module_or_state)
    _same_layout(tensors, dist, torch, "broadcast_module_state")
    for (device, dtype), group in _buckets(tensors).items():
        _check_device(dist, device)
        flat = _flat(group, torch)
        if dtype == torch.bool:
            flat = flat.to(torch.uint8)
        dist.broadcast(flat, src=src)
        _scatter(flat.to(dtype), group)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (any picklable object, e.g. an agent's ``state_dict()``) on every
    rank; ``obj`` itself without a group."""
    dist = _parallel()
    if dist is None:
        return obj
    import torch

    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device(dist, torch))
    return box[0]


def replicas_agree(module_or_tensors: Any) -> bool:
    """True iff every rank holds bitwise the same tensors (an ``nn.Module``'s parameters and
    buffers, a mapping or a list of tensors); a check for tests and debugging (two all-reduces
    of the whole state). True without a group."""
    dist = _parallel()
    if dist is None:
        return True
    import torch

    if isinstance(module_or_tensors, (list, tuple)):
        tensors = list(module_or_tensors)
    else:
        tensors = _state_tensors(module_or_tensors)
    _same_layout(tensors, dist, torch, "replicas_agree")
    same = True
    for (device, dtype), group in _buckets(tensors).items():
        _check_device(dist, device)
        flat = _flat(group, torch)
        if dtype.is_floating_point:  # compare bit patterns: exact, and NaN equals NaN
            flat = flat.float() if flat.element_size() < 4 else flat
            flat = flat.view(torch.int32 if flat.element_size() == 4 else torch.int64)
        elif dtype == torch.bool:
            flat = flat.to(torch.uint8)
        high, low = flat.clone(), flat.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        same = same and bool(torch.equal(high, low))
    return same
