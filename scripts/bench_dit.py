#!/usr/bin/env python
"""DiT training and sampling throughput: distwm vs the peer ``simulusion`` 1.1.0, side by side
in one run, as ratios (> 1 means distwm is faster); then DDP scaling on Ray Train (1 vs 2
workers).

Both sides build the same network: the seed's ``DiTConfig`` sizes (32x32 RGB, patch 4: 64
tokens; width 384, 6 blocks, 6 heads, MLP ratio 4, t_dim 256, dropout 0.1), class-conditional
on 10 classes with label dropout 0.1 (the null class of classifier-free guidance), learned sigma
(2C output channels), the same random images in [-1, 1] and labels, torch thread count and
``OMP_WAIT_POLICY`` (set it in the environment; it is passed on). Figures (images = batch
images per update or generated images per sampling run; each figure is the median of
``--repeats`` calls after one warm-up, wall and process CPU time: on a busy machine the CPU
figures are the steadier ones):

* ``train``: one distwm update (``DiTTrainable.update_images``: forward, the paper's hybrid
  loss ``L_simple + 0.001 * L_vlb`` with learned sigma, backward, AdamW step, EMA update) on a
  batch of ``--batch``; ``train_eps``: the same with ``learn_sigma=False`` (C output channels,
  L_simple only). The peer's update (``DiTTask.train_step``: L_simple only, the variance
  channels output but untrained, clip at 1, AdamW, EMA) has the peer's default
  ``learn_sigma=True``; ``train_eps`` vs the peer's ``train`` is the like-for-like loss
  comparison (the same loss; distwm's network is C channels narrower at the last linear layer,
  a negligible cost). distwm's evaluation classifier (``eval_classifier``, a distwm extra the
  peer lacks) is off; distwm clips nothing (the paper; ``clip_grad_norm_`` runs either way).
* ``sample_ddpm50``: ``--sample-batch`` images with ``--sample-steps`` (50) ancestral steps,
  no guidance: 50 network calls on a batch of 16 on both sides (distwm: ``DiTTrainable.sample``
  respacing the 1000-step schedule to 50 steps, learned-sigma variance; the peer has only
  full-length ancestral sampling, ``DDPM.sample``, so it runs a ``DDPM(timesteps=50)``: the same
  number of network calls and batch, its own noise schedule).
* ``sample_cfg25``: distwm's few-step figure, ``--cfg-steps`` (25) respaced steps with
  classifier-free guidance 1.5: 25 network calls on a doubled batch of 32 (conditional and null
  labels in one pass), i.e. 50 image-evaluations a generated image as in ``sample_ddpm50``;
  compared with the peer's ``sample_ddpm50`` (the same network work per image, half the calls).

Mixed precision (``--autocast bf16``): distwm's figures are also timed with
``DiTConfig.autocast="bf16"`` (the network's forward passes under bf16 autocast; float32
weights, optimizer state and loss terms), as extra figures ``train[bf16]``,
``sample_ddpm50[bf16]``, ...; their ratios are against the peer's float32 figures (the peer has
no mixed precision). The figures without a suffix are float32 on both sides.

DDP scaling (``--ddp``): :func:`distwm.runtime.data_parallel.run` of the ``digits`` preset
(16x16 grey, width 128, 4 blocks, batch 64 a worker) on ``sklearn:digits:16`` with 1 and then 2
Ray Train workers (gloo), ``--ddp-updates`` updates each: images/s in all and per worker from
``result.summary["frames_per_s"]`` (the whole run's wall time, worker start-up and the final
report included) and the steady state (the median of the progress windows after the first).
On a 2-core machine the two workers share the cores, so per-worker throughput falls; the
figure to read is the total.

The peer runs in its own virtualenv (``--peer-python``, default ``.peer-venv/bin/python``;
``python3.11 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 simulusion==1.1.0``)
through ``scripts/bench_dit_peer.py``; distwm never imports it. Prints one JSON object.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_dit.py --threads 1 --repeats 3 --ddp \
        --out docs/benchmarks/dit_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

from bench_timing import print_result, run_peer, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10


def base_figure(key: str) -> str:
    """``key`` without its precision suffix (``train[bf16]_images_per_s`` ->
    ``train_images_per_s``): the peer's figure a variant is compared with."""
    return re.sub(r"\[[a-z0-9]+\]", "", key)


def _config(args, **overrides):
    from distwm.configs.dit_config import DiTConfig

    return DiTConfig(BATCH=args.batch, num_classes=NUM_CLASSES, eval_classifier=False,
                     seed=args.seed).replace(**overrides)


def peer_arch(config) -> dict:
    """The peer ``DiT``'s keyword arguments (plus schedule and optimiser) for ``config``."""
    from distwm.models.dit.factory import dit_kwargs

    arch = dit_kwargs(config)
    arch.update(timesteps=config.TIMESTEPS, beta_start=config.BETA_START,
                beta_end=config.BETA_END, lr=config.LR, weight_decay=config.weight_decay,
                ema_decay=config.EMA_DECAY)
    return arch


def _median_times(fn, repeats: int, label: str) -> tuple[float, float]:
    walls, cpus, _ = timed(fn, repeats, label, lambda line: print(line, file=sys.stderr))
    return statistics.median(walls), statistics.median(cpus)


def distwm_side(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    S, C = 32, 3
    images = torch.rand(args.batch, C, S, S) * 2 - 1
    labels = torch.randint(0, NUM_CLASSES, (args.batch,))
    sample_labels = torch.randint(0, NUM_CLASSES, (args.sample_batch,))
    figures = {}
    variants = [("", "off")] + ([(f"[{args.autocast}]", args.autocast)]
                                if args.autocast != "off" else [])
    for suffix, autocast in variants:
        figures.update(_precision_figures(args, images, labels, sample_labels, suffix, autocast))
    return figures


def _precision_figures(args, images, labels, sample_labels, suffix: str, autocast: str) -> dict:
    import torch

    from distwm.models.dit.trainable import DiTTrainable

    figures = {}
    for key, sigma in ((f"train{suffix}", True), (f"train_eps{suffix}", False)):
        torch.manual_seed(args.seed)
        trainable = DiTTrainable(_config(args, learn_sigma=sigma, autocast=autocast))
        wall, cpu = _median_times(lambda t=trainable: t.update_images(images, labels), args.repeats,
                                  f"distwm {key}")
        figures.update({f"{key}_update_s": wall, f"{key}_images_per_s": args.batch / wall,
                        f"{key}_update_cpu_s": cpu, f"{key}_images_per_cpu_s": args.batch / cpu})
        if sigma:
            paper = trainable
    n = args.sample_batch
    for key, steps, guidance, calls, batch in (
            (f"sample_ddpm{args.sample_steps}{suffix}", args.sample_steps, 1.0, args.sample_steps, n),
            (f"sample_cfg{args.cfg_steps}{suffix}", args.cfg_steps, args.guidance, args.cfg_steps,
             2 * n)):
        wall, cpu = _median_times(
            lambda s=steps, g=guidance: paper.sample(sample_labels, seed=args.seed, sample_steps=s,
                                                     guidance_scale=g),
            args.sample_repeats, f"distwm {key}")
        figures.update({f"{key}_s": wall, f"{key}_images_per_s": n / wall, f"{key}_cpu_s": cpu,
                        f"{key}_images_per_cpu_s": n / cpu,
                        f"{key}_s_per_network_call": wall / calls,
                        f"{key}_network_calls": calls, f"{key}_network_batch": batch})
    if not suffix:
        figures["parameters"] = sum(p.numel() for p in paper.model.parameters())
    return figures


def peer_side(args) -> dict:
    cmd = [args.peer_python, os.path.join(ROOT, "scripts", "bench_dit_peer.py"),
           "--arch", json.dumps(peer_arch(_config(args))), "--batch", str(args.batch),
           "--sample-batch", str(args.sample_batch), "--sample-steps", str(args.sample_steps),
           "--repeats", str(args.repeats), "--sample-repeats", str(args.sample_repeats),
           "--threads", str(args.threads), "--seed", str(args.seed)]
    return run_peer(cmd)


def ratios(ours: dict, peer: dict, args) -> dict:
    """> 1: distwm faster. The shared figures, then distwm's variants against the peer's; a
    ``[bf16]`` figure against the peer's float32 one."""
    # rates: distwm / peer, on wall time (*_per_s) and on process CPU time (*_per_cpu_s)
    out = {k: ours[k] / peer[base_figure(k)] for k in ours
           if base_figure(k) in peer and k.endswith(("_per_s", "_per_cpu_s"))}
    ddpm = f"sample_ddpm{args.sample_steps}"
    variants = [""] + ([f"[{args.autocast}]"] if args.autocast != "off" else [])
    for v in variants:
        for mine, theirs in (("train_eps", "train"), (f"sample_cfg{args.cfg_steps}", ddpm)):
            for unit in ("images_per_s", "images_per_cpu_s"):
                out[f"{mine}{v}_{unit}_vs_peer_{theirs}"] = (ours[f"{mine}{v}_{unit}"]
                                                             / peer[f"{theirs}_{unit}"])
        out[f"{ddpm}{v}_s_per_network_call"] = peer[f"{ddpm}_s_per_network_call"] / ours[
            f"{ddpm}{v}_s_per_network_call"]
    return out


def ddp_scaling(args) -> dict:
    """images/s of a ``digits`` DiT run on ``sklearn:digits:16`` with 1 and 2 Ray Train workers."""
    from distwm.configs.dit_config import dit_preset
    from distwm.configs.runtime_config import DataParallelConfig, DataParallelRunConfig
    from distwm.runtime.data_parallel import run

    # a small final report (one sample per class, no sample evaluation): the run's wall time is
    # mostly the updates
    model_config = dit_preset("digits", report_samples_per_class=1, eval_samples=0,
                              seed=args.seed).to_dict()
    out = {"model_config": "dit_preset('digits', report_samples_per_class=1, eval_samples=0)",
           "data": "sklearn:digits:16", "updates": args.ddp_updates}
    interval = max(1, args.ddp_updates // 4)
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            cfg = DataParallelRunConfig.from_dict({
                "model": "dit", "model_config": model_config,
                "data_parallel": DataParallelConfig(
                    data="sklearn:digits:16", workers=workers, gpus_per_worker=0,
                    total_updates=args.ddp_updates, report_interval=interval,
                    checkpoint_interval=args.ddp_updates, seed=args.seed, verbose=False,
                    run_dir=os.path.join(tmp, f"run{workers}")).to_dict()})
            start = time.perf_counter()
            result = run(cfg)
            summary = result.summary
            windows = [float(r["frames_per_s"]) for r in result.history[1:]] or \
                [float(r["frames_per_s"]) for r in result.history]
            steady = statistics.median(windows)
            out[f"workers_{workers}"] = {
                "frames_per_s": summary["frames_per_s"],
                "frames_per_s_per_worker": summary["frames_per_s"] / workers,
                "steady_frames_per_s": steady, "steady_frames_per_s_per_worker": steady / workers,
                "updates_per_s": summary["updates_per_s"], "updates": summary["updates"],
                "run_seconds": summary["seconds"], "seconds": time.perf_counter() - start,
                "replicas_identical": summary["replicas_identical"]}
            print(f"ddp {workers} workers: {summary['frames_per_s']:.1f} images/s "
                  f"(steady {steady:.1f})", file=sys.stderr)
    one, two = out["workers_1"], out["workers_2"]
    out["total_speedup_2_vs_1"] = two["frames_per_s"] / one["frames_per_s"]
    out["steady_total_speedup_2_vs_1"] = two["steady_frames_per_s"] / one["steady_frames_per_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed training updates")
    p.add_argument("--sample-repeats", type=int, default=2, dest="sample_repeats",
                   help="timed sampling runs")
    p.add_argument("--batch", type=int, default=32, help="training images per update")
    p.add_argument("--sample-batch", type=int, default=16, dest="sample_batch")
    p.add_argument("--sample-steps", type=int, default=50, dest="sample_steps",
                   help="ancestral steps (= network calls) of the like-for-like sampling figure")
    p.add_argument("--cfg-steps", type=int, default=25, dest="cfg_steps",
                   help="respaced steps of distwm's guided few-step figure")
    p.add_argument("--guidance", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--autocast", choices=("off", "bf16"), default="off",
                   help="also time distwm with DiTConfig.autocast=bf16: <figure>[bf16] rows")
    p.add_argument("--ddp", action="store_true", help="also measure 1 vs 2 Ray Train workers")
    p.add_argument("--ddp-updates", type=int, default=40, dest="ddp_updates")
    p.add_argument("--peer-python", default=os.path.join(ROOT, ".peer-venv", "bin", "python"))
    p.add_argument("--skip-peer", action="store_true", help="time distwm only")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    if args.guidance == 1.0:
        raise SystemExit("--guidance 1.0 is no guidance: the cfg figure needs another scale")
    result = {"config": {k: v for k, v in vars(args).items() if k != "peer_python"},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "network": {"IMG_SIZE": 32, "CHANNELS": 3, "PATCH": 4, "WIDTH": 384, "DEPTH": 6,
                          "HEADS": 6, "DROP": 0.1, "t_dim": 256, "num_classes": NUM_CLASSES,
                          "class_dropout_prob": 0.1}}
    started = time.perf_counter()
    ours = distwm_side(args)
    result["distwm"] = ours
    if not args.skip_peer:
        peer = peer_side(args)
        result["peer"] = peer
        result["ratios"] = ratios(ours, peer["figures"], args)
    if args.ddp:
        result["ddp"] = ddp_scaling(args)
    result["notes"] = {
        "train": "distwm train: learned sigma, hybrid loss (L_simple + 0.001 L_vlb), AdamW, EMA; "
                 "train_eps: learn_sigma=False, L_simple. peer train: its DiTTask.train_step, "
                 "learn_sigma=True output, L_simple only, clip 1.0, AdamW, EMA",
        "sample_ddpm": f"{args.sample_steps} ancestral steps = {args.sample_steps} network calls "
                       f"on a batch of {args.sample_batch}, no guidance, both sides",
        "sample_cfg": f"distwm only: {args.cfg_steps} respaced steps, guidance {args.guidance}: "
                      f"{args.cfg_steps} network calls on a doubled batch of "
                      f"{2 * args.sample_batch} (= {2 * args.cfg_steps} image-evaluations per "
                      f"image, as sample_ddpm{args.sample_steps}); its ratio is vs the peer's "
                      f"sample_ddpm{args.sample_steps}",
        "ratios": "> 1: distwm faster; *_per_s from wall time, *_per_cpu_s from process CPU time",
        "precision": "figures without a suffix: float32 on both sides; <figure>[bf16]: distwm "
                     "with DiTConfig.autocast='bf16' (float32 weights), its ratio against the "
                     "peer's float32 <figure>",
    }
    result["seconds"] = time.perf_counter() - started
    print_result(result, args.out)


if __name__ == "__main__":
    main()
