#!/usr/bin/env python
"""DiT training and sampling throughput in the peer library simulusion 1.1.0 (CPU), for
comparison with distwm (``scripts/bench_dit.py`` runs it and prints the ratios).

Standalone: run it with the PEER's interpreter; it imports nothing from distwm (standard
library, torch and simulusion only)::

    OMP_WAIT_POLICY=PASSIVE .peer-venv/bin/python scripts/bench_dit_peer.py --arch '{...}'

``--arch`` is a JSON object of ``simulusion.models.diffusion.DiT.DiT`` keyword arguments
(``img_size``, ``patch_size``, ``in_channels``, ``d_model``, ``depth``, ``heads``, ``drop``,
``t_dim``, ``num_classes``, ``class_dropout_prob``, ``learn_sigma``, ``mlp_ratio``) plus the
schedule (``timesteps``, ``beta_start``, ``beta_end``) and the optimiser (``lr``,
``weight_decay``, ``ema_decay``); the benchmark passes distwm's, so both sides build the same
network. On random images in [-1, 1] and random labels it times:

* ``train``: one update as the peer's training entry runs it (``DiT.fit`` ->
  ``simulusion.training.tasks.dit.DiTTask.train_step``): ``dit_l_simple`` (L_simple, the MSE of
  the predicted noise; with ``learn_sigma`` the variance channels are carried but not trained),
  the peer's ``GradientUpdate`` (zero grad, backward, clip the norm at 1, AdamW step), then
  ``dit_ema_update``;
* ``sample_ddpmN``: ``DDPM(timesteps=N, ...).sample(model, n, ...)``, the peer's only sampler:
  full-length ancestral sampling over its ``timesteps``, so N = ``--sample-steps`` sets the
  number of network evaluations (N calls of the network on a batch of ``--sample-batch``, no
  guidance: the peer's sampler has none). Setting N changes the peer's noise schedule, not the
  cost of a step.

One warm-up call of each, then ``--repeats`` (``--sample-repeats``) timed calls; medians of the
wall and of the process CPU time. Prints one JSON object.

Environment work-around (stated in the output's notes): simulusion's ``DiT`` module imports
torchvision at the top (its data loaders, transforms and ``save_image``), and torchvision in
this venv fails to import (its C ops do not match torch 2.13: ``operator torchvision::nms does
not exist``). When the real import fails a stand-in ``torchvision`` (placeholder classes for
those names) is put into ``sys.modules``; nothing timed uses it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
import types

import torch


def torchvision_status() -> str:
    """Import torchvision; when that fails put a stand-in into ``sys.modules`` (see above)."""
    try:
        import torchvision

        return f"importable ({torchvision.__version__})"
    except Exception as exc:  # noqa: BLE001 - a broken install raises RuntimeError, not ImportError
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]

    def placeholder(module_name):
        def __getattr__(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def unavailable(*_, **__):
                raise RuntimeError(f"{module_name}.{attr}: a stand-in (torchvision is broken here)")

            return type(attr, (), {"__init__": unavailable, "__call__": unavailable})

        return __getattr__

    root = types.ModuleType("torchvision")
    root.__stand_in__ = True
    root.__path__ = []
    root.__getattr__ = placeholder("torchvision")
    sys.modules["torchvision"] = root
    for sub in ("datasets", "transforms", "utils"):
        module = types.ModuleType(f"torchvision.{sub}")
        module.__getattr__ = placeholder(f"torchvision.{sub}")
        setattr(root, sub, module)
        sys.modules[f"torchvision.{sub}"] = module
    return f"not importable ({why}); a stand-in was used, nothing timed touches it"


def median_times(fn, repeats: int) -> tuple[float, float]:
    """One warm-up call, then ``repeats`` timed ones: (median wall s, median CPU s)."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sample-batch", type=int, default=16, dest="sample_batch")
    p.add_argument("--sample-steps", type=int, default=50, dest="sample_steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sample-repeats", type=int, default=2, dest="sample_repeats")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import copy

    tv_status = torchvision_status()
    from simulusion.models.diffusion.DDPM import DDPM
    from simulusion.models.diffusion.DiT import DiT, dit_ema_update, dit_l_simple
    from simulusion.training.precision import GradientUpdate, MixedPrecision

    arch = json.loads(args.arch)
    accepted = set(inspect.signature(DiT.__init__).parameters) - {"self"}
    schedule = ("timesteps", "beta_start", "beta_end", "lr", "weight_decay", "ema_decay")
    dropped = sorted(set(arch) - accepted - set(schedule))
    model = DiT(**{k: v for k, v in arch.items() if k in accepted})
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    timesteps = int(arch.get("timesteps", 1000))
    beta_start, beta_end = float(arch.get("beta_start", 1e-4)), float(arch.get("beta_end", 0.02))
    ddpm = DDPM(timesteps, beta_start, beta_end)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(arch.get("lr", 1e-4)),
                                  weight_decay=float(arch.get("weight_decay", 0.0)))
    update = GradientUpdate(optimizer, model.parameters(), MixedPrecision("fp32", "cpu"),
                            max_grad_norm=1.0)
    S, C, K = arch["img_size"], arch["in_channels"], int(arch.get("num_classes", 0))
    images = torch.rand(args.batch, C, S, S) * 2 - 1
    labels = torch.randint(0, max(K, 1), (args.batch,)) if K else None

    def train():
        model.train()
        loss = dit_l_simple(model, ddpm, images, labels, timesteps)
        if update(loss) is not None:
            dit_ema_update(model, ema, float(arch.get("ema_decay", 0.9999)))

    figures = {}
    wall, cpu = median_times(train, args.repeats)
    figures.update(train_update_s=wall, train_images_per_s=args.batch / wall,
                   train_update_cpu_s=cpu, train_images_per_cpu_s=args.batch / cpu)
    print(f"peer train: {wall:.3f}s wall, {cpu:.3f}s cpu", file=sys.stderr)

    n, steps = args.sample_batch, args.sample_steps
    sampler = DDPM(steps, beta_start, beta_end)
    sample_labels = torch.randint(0, max(K, 1), (n,)) if K else None
    model.eval()

    def sample():
        sampler.sample(model, n, S, C, sample_labels)

    with torch.no_grad():
        wall, cpu = median_times(sample, args.sample_repeats)
    key = f"sample_ddpm{steps}"
    figures.update({f"{key}_s": wall, f"{key}_images_per_s": n / wall,
                    f"{key}_cpu_s": cpu, f"{key}_images_per_cpu_s": n / cpu,
                    f"{key}_s_per_network_call": wall / steps})
    print(f"peer {key}: {wall:.3f}s wall, {cpu:.3f}s cpu", file=sys.stderr)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "figures": figures, "torch": torch.__version__,
        "notes": {"dropped_arch_keys": dropped, "parameters": params, "torchvision": tv_status,
                  "train_loss": "L_simple only (dit_l_simple: MSE of the noise; with learn_sigma "
                                "the variance channels are output but untrained), clip 1.0, "
                                "AdamW, EMA: DiTTask.train_step",
                  "sampler": f"DDPM(timesteps={steps}).sample: full-length ancestral, {steps} "
                             f"network calls of batch {n}, no guidance"}}))


if __name__ == "__main__":
    main()
