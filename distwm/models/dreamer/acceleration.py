"""Speed switches of the Dreamer update (``DreamerConfig`` fields under "speed").

Each switch computes the same update as the plain path (to float tolerance; bf16 autocast to
bf16 tolerance) and is applied lazily, at the first update (:func:`prepare_world_model`,
:func:`prepare_behavior`), never in a constructor:

* ``compile``: ``torch.compile`` of the sequential steps, where the update spends its Python
  overhead: the RSSM's observe step (64 per batch), its imagination step and the actor's step
  (15 each). ``"default"`` (inductor, CPU or GPU), ``"max-autotune"``,
  ``"reduce-overhead"`` (CUDA graphs; on a CPU device it falls back to ``"default"`` with a
  warning). Random draws keep PyTorch's own generator (``fallback_random``), so a compiled
  update samples what the plain one samples.
* ``channels_last``: the conv encoder / decoder in channels-last memory format (image models).
* ``keep_freed_memory`` (on by default): the learner process keeps the memory it frees
  (:func:`distwm.utils.allocator.keep_freed_memory`), so the update's large tensors reuse
  pages instead of faulting in fresh ones at every step. Process-wide, applied once.
* ``observe_threads`` (1 by default): torch's intra-op threads for the RSSM's observe loop on
  CPU, forward and backward (:func:`observe_on_threads`). It advances ``B`` rows (16) per step,
  64 steps, where waking a second OpenMP thread for each small op costs more than it computes
  (XS on 2 cores: the loop's forward 370 ms with 2 threads, 125 ms with 1); the heads, the
  imagination (``B * T`` rows per step) and the actor-critic keep every thread.
* ``autocast``: ``"bf16"`` runs the world-model loss and imagination under
  ``torch.autocast(device, torch.bfloat16)`` (matmuls in bf16, distributions and losses in
  float32; the same update to bf16 tolerance, as the dreamerv3 code computes): on CUDA, or on
  a CPU with native bf16 matmuls (AMX / AVX512-BF16); elsewhere a ``ValueError``.

The compiled functions are kept beside the modules (``module.__dict__``, not as submodules),
so parameter names and checkpoints are those of the plain model; copies and pickles of a
module drop them (they are compiled again at the next update).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable

import torch
from torch import Tensor, nn

from distwm.blocks.dreamer_blocks import OneHotFeatures
from distwm.utils import precision
from distwm.utils.allocator import keep_freed_memory
from distwm.utils.precision import AUTOCAST_DTYPES, cpu_has_bf16

__all__ = ["COMPILE_MODES", "AUTOCAST_DTYPES", "prepare_world_model", "prepare_behavior",
           "autocast_context", "observe_on_threads", "restore_threads", "mark_step", "compile_mode_for", "compiled", "cpu_has_bf16"]

_log = logging.getLogger(__name__)

#: values of ``DreamerConfig.compile`` (``"off"``: eager PyTorch)
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
_KEY = "_distwm_compiled"


class _Compiled(dict):
    """Compiled step functions of one module; copies and pickles are empty (and not
    ``ready``: the next update prepares the copy again)."""

    ready = False

    def __deepcopy__(self, memo) -> "_Compiled":
        return _Compiled()

    def __reduce__(self):
        return (_Compiled, ())


def compiled(module: nn.Module) -> dict:
    """The compiled functions kept beside ``module`` (empty when none)."""
    return module.__dict__.get(_KEY) or {}


def _device_type(module: nn.Module) -> str:
    param = next(module.parameters(), None)
    return param.device.type if param is not None else "cpu"


def compile_mode_for(mode: str, device_type: str) -> str | None:
    """The ``torch.compile`` mode to use for ``mode`` on ``device_type`` (``None``: off);
    a CUDA-graph mode on a non-CUDA device falls back to ``"default"`` with a warning."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"DreamerConfig.compile {mode!r} is not one of {COMPILE_MODES}")
    if mode == "off":
        return None
    if mode in _CUDA_GRAPH_MODES and device_type != "cuda":
        _log.warning("DreamerConfig.compile=%r uses CUDA graphs, which need a CUDA device; on "
                     "%s it falls back to compile='default'", mode, device_type)
        return "default"
    return mode


def _check_autocast(cfg, device_type: str) -> None:
    precision.check_autocast(getattr(cfg, "autocast", "off"), device_type, "DreamerConfig.autocast")


def autocast_context(cfg, module: nn.Module):
    """``torch.autocast(device, bfloat16)`` when ``cfg.autocast == "bf16"``, else a no-op."""
    if getattr(cfg, "autocast", "off") == "off":
        return contextlib.nullcontext()
    return precision.autocast(cfg.autocast, _device_type(module), "DreamerConfig.autocast")


class _ThreadsInBackward(torch.autograd.Function):
    """The identity on ``tensors``; its backward first sets torch's intra-op threads to
    ``threads`` (the gradient of what follows reaches it before the region it marks)."""

    @staticmethod
    def forward(ctx, threads: int, *tensors: Tensor):
        ctx.threads = threads
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        torch.set_num_threads(ctx.threads)
        return (None, *grads)


def _threads_in_backward(threads: int, tensors: list[Tensor]) -> list[Tensor]:
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors):
        return tensors
    return list(_ThreadsInBackward.apply(threads, *tensors))


def observe_threads(cfg, module: nn.Module) -> int | None:
    """The intra-op threads for the RSSM's observe loop (``cfg.observe_threads``), or ``None``
    when nothing changes: 0, not fewer than torch has now, or not on the CPU."""
    wanted = int(getattr(cfg, "observe_threads", 0) or 0)
    if wanted <= 0 or wanted >= torch.get_num_threads() or _device_type(module) != "cpu":
        return None
    return wanted


def observe_on_threads(cfg, module: nn.Module, observe: Callable, embed: Tensor, *args):
    """``observe(embed, *args) -> (posterior, prior)`` with torch on :func:`observe_threads`
    threads, forward and backward: the forward sets them around the call; in the backward,
    marks on the outputs set them when the gradient enters the loop and a mark on ``embed``
    restores the caller's threads when it leaves (everything else keeps every thread)."""
    threads = observe_threads(cfg, module)
    if threads is None:
        return observe(embed, *args)
    outer = torch.get_num_threads()
    (embed,) = _threads_in_backward(outer, [embed])
    torch.set_num_threads(threads)
    try:
        post, prior = observe(embed, *args)
    finally:
        torch.set_num_threads(outer)
    keys = [("post", k) for k in post] + [("prior", k) for k in prior]
    marked = _threads_in_backward(threads, [post[k] if s == "post" else prior[k] for s, k in keys])
    out = {"post": {}, "prior": {}}
    for (side, key), tensor in zip(keys, marked):
        out[side][key] = tensor
    return out["post"], out["prior"]


@contextlib.contextmanager
def restore_threads():
    """torch's intra-op threads as they were on entry, whatever a backward set on the way."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def mark_step(cfg, module: nn.Module) -> None:
    """Start a new CUDA-graph step (``reduce-overhead``): the graphs of the previous update
    may overwrite their outputs from here on."""
    mode = getattr(cfg, "compile", "off")
    if mode in _CUDA_GRAPH_MODES and _device_type(module) == "cuda":
        torch.compiler.cudagraph_mark_step_begin()


#: the ``torch.compile`` backend (tests swap in ``"aot_eager"``: the same tracing, no codegen)
BACKEND = "inductor"


def _compile(fn: Callable, mode: str) -> Callable:
    if BACKEND != "inductor":
        return torch.compile(fn, backend=BACKEND, dynamic=False)
    import torch._inductor.config as inductor_config

    # the compiled update draws the random numbers the plain one draws, from the same generator
    inductor_config.fallback_random = True
    options = None if mode == "default" else mode
    return torch.compile(fn, mode=options, dynamic=False)


def _prepared(module: nn.Module) -> bool:
    holder = module.__dict__.get(_KEY)
    return isinstance(holder, _Compiled) and holder.ready


def _install(module: nn.Module, holder: "_Compiled") -> None:
    holder.ready = True
    module.__dict__[_KEY] = holder


def prepare_world_model(world_model: nn.Module) -> None:
    """Apply the speed switches of ``world_model.cfg`` to the world model (idempotent; the
    first update calls it)."""
    if _prepared(world_model):
        return
    cfg = world_model.cfg
    device_type = _device_type(world_model)
    _check_autocast(cfg, device_type)
    if getattr(cfg, "keep_freed_memory", False):
        keep_freed_memory()
    if getattr(cfg, "channels_last", False):
        for name in ("encoder", "decoder"):
            getattr(world_model, name).to(memory_format=torch.channels_last)
    mode = compile_mode_for(getattr(cfg, "compile", "off"), device_type)
    rssm = world_model.rssm
    holder = _Compiled()
    if mode is not None:
        holder["observe"] = _compile(rssm._observe_body, mode)
        holder["imagine_step"] = _compile(rssm.imagine_step, mode)
        if rssm.discrete:
            holder["imagine_onehot"] = _compile(rssm._imagine_onehot_body, mode)
    _install(rssm, holder)
    _install(world_model, _Compiled())


def prepare_behavior(behavior: nn.Module) -> None:
    """Apply the speed switches of ``behavior.cfg`` to the actor-critic (idempotent)."""
    if _prepared(behavior):
        return
    cfg = behavior.cfg
    holder = _Compiled()
    mode = compile_mode_for(getattr(cfg, "compile", "off"), _device_type(behavior))
    if mode is not None:
        mlp = behavior.actor.mlp

        def actor_onehot(index, deter, width: int):
            return mlp(OneHotFeatures(index, deter, width))

        holder["actor_onehot"] = _compile(actor_onehot, mode)
        holder["actor"] = _compile(mlp.forward, mode)
    _install(behavior, holder)
