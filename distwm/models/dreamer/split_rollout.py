"""The REINFORCE imagination rollout split over Python threads (``DreamerConfig.imagine_split``).

With REINFORCE and categorical latents the rollout records no gradient: ``H`` steps of the
RSSM prior and the actor over ``B * T`` starts (1,024 at B=16, T=64), ~25 small ops a step.
With two torch threads each of those ops wakes the second OpenMP thread, and most are too
small to gain from it (XS on 2 cores: 0.47 s on one thread, 0.30 s on two). Split instead,
the starts run as ``parts`` independent rollouts in Python threads with
``torch_threads // parts`` intra-op threads each; PyTorch releases the GIL inside its ops, so
the parts overlap (0.24 s there). Each part samples from its own ``torch.Generator`` seeded
from PyTorch's default generator (:func:`~distwm.blocks.dreamer_distributions.sampling_generator`),
so an update is reproducible from the seed; the draws differ from those of the unsplit rollout.
The heads and the losses run afterwards on the whole batch, on every thread.

Applies on the CPU, with REINFORCE, categorical latents and discrete actions (continuous
actions sample from PyTorch's default generator), and with at least ``parts`` torch threads;
with ``compile`` too (the compiled steps return probabilities; the draws happen outside them).
"""

from __future__ import annotations

import threading
from typing import Callable

import torch
from torch import Tensor, nn

from distwm.blocks.dreamer_blocks import OneHotFeatures
from distwm.blocks.dreamer_distributions import sampling_generator

__all__ = ["parts", "imagine_onehot", "current_part"]

_THREAD = threading.local()  # .part: the part this thread rolls out


def current_part() -> int:
    """The index of the part the calling thread rolls out (0 outside a split rollout)."""
    return getattr(_THREAD, "part", 0)


def parts(cfg, behavior: nn.Module) -> int:
    """Into how many threads the rollout splits (1: it does not; module docstring)."""
    wanted = int(getattr(cfg, "imagine_split", 1) or 1)
    if wanted <= 1 or not behavior.discrete:
        return 1
    param = next(behavior.parameters(), None)
    if param is None or param.device.type != "cpu":
        return 1
    return max(1, min(wanted, torch.get_num_threads()))


def imagine_onehot(rssm: nn.Module, policy: Callable, start: dict[str, Tensor], horizon: int,
                   num_parts: int, autocast: Callable) -> tuple[OneHotFeatures, Tensor]:
    """``rssm.imagine_onehot(policy, start, horizon)`` in ``num_parts`` threads over slices of
    the starts, concatenated in order; ``autocast()`` gives the caller's autocast context (it
    is thread-local, as grad mode is: each thread enters both again)."""
    rows = start["deter"].shape[0]
    num_parts = min(num_parts, rows)
    if num_parts <= 1:
        return rssm.imagine_onehot(policy, start, horizon)
    bounds = [rows * i // num_parts for i in range(num_parts + 1)]
    seeds = torch.randint(0, 2 ** 62, (num_parts,)).tolist()  # from the default generator
    threads_each = max(1, torch.get_num_threads() // num_parts)
    outer_threads = torch.get_num_threads()
    grad = torch.is_grad_enabled()
    results: list = [None] * num_parts
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            _THREAD.part = i
            torch.set_num_threads(threads_each)
            generator = torch.Generator(start["deter"].device).manual_seed(seeds[i])
            part = {k: v[bounds[i]:bounds[i + 1]] for k, v in start.items()}
            with torch.set_grad_enabled(grad), autocast(), sampling_generator(generator):
                results[i] = rssm.imagine_onehot(policy, part, horizon)
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)
        finally:
            _THREAD.part = 0

    workers = [threading.Thread(target=run, args=(i,), name=f"imagine-part-{i}")
               for i in range(1, num_parts)]
    for worker in workers:
        worker.start()
    try:
        run(0)  # the caller's thread takes the first part
    finally:
        for worker in workers:
            worker.join()
        torch.set_num_threads(outer_threads)
    if errors:
        raise errors[0]
    feats = [r[0] for r in results]
    feat = OneHotFeatures(torch.cat([f.index for f in feats], 1),
                          torch.cat([f.rest for f in feats], 1), feats[0].width)
    return feat, torch.cat([r[1] for r in results], 1)
