#!/usr/bin/env python
"""I-JEPA training throughput: distwm vs the peer ``simulusion`` 1.1.0, side by side in one run,
as ratios (> 1 means distwm is faster); then DDP scaling on Ray Train (1 vs 2 CPU workers).

Both sides build the same networks (default: a ViT-Tiny encoder, width 192, depth 12, 3 heads,
on 64x64 images in 8x8 patches; a predictor of depth 6 and width 192; each side's own
``init_model``) with the same weights (distwm's initial state dicts, loaded into the peer's
modules), the same AdamW groups and lr / weight-decay / EMA schedules, and train on the same
inputs: one batch of ``--batch`` random normalised views and a sequence of multiblock mask sets
(4 target blocks of scale (0.15, 0.2), aspect (0.75, 1.5); one context block of scale
(0.85, 1.0); ``min_keep`` 4: the paper's 10 does not fit an 8x8 grid) drawn once by distwm's
collator (seeded) and handed to the peer through a file; call ``i`` uses set ``i``. Each side's
losses are recorded, so the output says how closely the two compute the same updates.

Figures (images = ``--batch`` views per update):

* ``train_step``: one I-JEPA update on given views and masks. distwm:
  ``JEPATrainable.train_step(views, masks_enc, masks_pred)`` (target encoder under no_grad +
  layer norm + masks, context encoder, predictor, smooth-L1, backward, gradient norm, AdamW
  step, EMA update). Peer: the body of ``simulusion.training.train_jepa.main``'s inner loop,
  reproduced from its building blocks (``scripts/bench_jepa_peer.py`` says why and how);
* ``masks``: each side's multiblock ``MaskCollator`` called on a batch of ``--batch`` samples
  with the same settings (distwm draws them inside ``update``; the peer in DataLoader workers);
* distwm only: ``update``: ``JEPATrainable.update`` from a uint8 image batch (float
  conversion, random resized crop, normalisation, masks, train step).

Mixed precision (``--autocast bf16``): each distwm round also times ``train_step`` with
``JEPAConfig.use_bfloat16=True`` (ijepa's switch: the forward passes under bf16 autocast, float32
weights, targets' layer norm and loss), as the figure ``train_step[bf16]`` (and ``update[bf16]``),
its ratio against the peer's float32 ``train_step`` (the peer's bench runs float32); its losses
are recorded beside the float32 ones. Figures without a suffix are float32 on both sides.

Wall clock and process CPU time are both reported (``*_cpu_*``: CPU seconds of the process,
which a busy machine disturbs less than the wall clock). The timing runs in ``--rounds`` rounds
that alternate the order (distwm then peer, peer then distwm, ...); each round builds fresh
networks and makes one warm-up call and ``--repeats`` timed ones; medians over all timed calls.

DDP scaling (``--ddp``): :func:`distwm.runtime.data_parallel.run` of the ``digits`` preset
(scikit-learn's digits at 32x32, a 3-layer ViT of width 64 and a 2-layer predictor of width 32,
64 images per worker and update) on ``sklearn:digits:32`` with 1 and then 2 Ray Train workers
(gloo, 1 CPU each), ``--ddp-updates`` updates: images/s in all and per worker from
``result.summary["frames_per_s"]`` (all frames over the run's elapsed time, which includes the
worker group's start-up and the final checkpoint's report) and ``steady_frames_per_s`` (the
median of the progress windows after the first, start-up and report excluded). The report
runs once, at the final checkpoint (``checkpoint_interval`` = the run length): its linear probe
is due at a Trainable's first report whatever ``probe_every`` is, so ``probe_size`` is cut to
``--ddp-probe-size`` rows; ``probe_every`` is set past the run so it runs at most that once.
On a 2-core machine the two workers share the cores, so per-worker throughput falls; the
figure to read is the total.

The peer runs in its own virtualenv (``--peer-python``, default ``.peer-venv/bin/python``;
``python3.11 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 simulusion==1.1.0``)
through ``scripts/bench_jepa_peer.py``; distwm never imports it. Prints one JSON object.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_jepa.py --threads 1 --repeats 3 --ddp \\
        --out docs/benchmarks/jepa_bench.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
import tempfile
import time

from bench_timing import print_result, run_peer, speed_ratios, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg: str) -> None:
    print(f"[bench_jepa {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def base_figure(key: str) -> str:
    """``key`` without its precision suffix (``train_step[bf16]_s`` -> ``train_step_s``)."""
    return re.sub(r"\[[a-z0-9]+\]", "", key)


def variants(args) -> list[tuple[str, bool]]:
    """``(figure suffix, use_bfloat16)`` of the precisions distwm is timed in."""
    return [("", False)] + ([(f"[{args.autocast}]", True)] if args.autocast != "off" else [])


def _config(args):
    from distwm.configs.jepa_config import jepa_preset

    # the paper's masks, optimiser and schedules (the vith14_in1k preset) at these sizes
    return jepa_preset("vith14_in1k", model_name=args.model, crop_size=args.image_size,
                       patch_size=args.patch_size, pred_depth=args.pred_depth,
                       pred_emb_dim=args.pred_emb_dim, batch_size=args.batch,
                       num_pred_masks=args.target_blocks, min_keep=args.min_keep,
                       total_updates=1000, epochs=1, warmup=0.1, dataset="digits",
                       num_workers=0, pin_mem=False, seed=args.seed)


def peer_config(config) -> dict:
    """What the peer script needs to build the same run as distwm's ``config``."""
    from distwm.models.jepa.model import warmup_updates

    c = config
    keep = ("model_name", "crop_size", "patch_size", "pred_depth", "pred_emb_dim", "num_enc_masks",
            "num_pred_masks", "min_keep", "allow_overlap", "enc_mask_scale", "pred_mask_scale",
            "aspect_ratio", "ema", "start_lr", "lr", "final_lr", "weight_decay",
            "final_weight_decay", "total_updates")
    out = {k: list(getattr(c, k)) if isinstance(getattr(c, k), tuple) else getattr(c, k)
           for k in keep}
    out["warmup_fraction"] = warmup_updates(c, c.total_updates) / c.total_updates
    return out


def make_inputs(args, config, path: str) -> dict:
    """Views, mask sets and distwm's initial weights, saved to ``path`` for the peer."""
    import torch

    from distwm.models.jepa.trainable import JEPATrainable, make_mask_collator

    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=gen)
    collator = make_mask_collator(config, seed=args.seed)
    sets = [collator.sample_masks(args.batch) for _ in range(args.repeats + 1)]
    model = JEPATrainable(config, config.total_updates).model
    inputs = {"images": images, "masks_enc": [s[0] for s in sets], "masks_pred": [s[1] for s in sets],
              "encoder": model.encoder.state_dict(), "predictor": model.predictor.state_dict()}
    torch.save(inputs, path)
    return inputs


def distwm_round(args, config, inputs, suffix: str = "") -> dict:
    import torch

    from distwm.models.jepa.trainable import JEPATrainable, make_mask_collator

    trainable = JEPATrainable(config, config.total_updates)
    # every precision starts from the weights the peer loads
    trainable.learner.model.encoder.load_state_dict(inputs["encoder"])
    trainable.learner.model.target_encoder.load_state_dict(inputs["encoder"])
    trainable.learner.model.predictor.load_state_dict(inputs["predictor"])
    sets = list(zip(inputs["masks_enc"], inputs["masks_pred"]))
    losses = []  # every call's loss (warm-up first), to compare with the peer's

    def step():
        masks_enc, masks_pred = sets[len(losses) % len(sets)]
        losses.append(trainable.train_step(inputs["images"], masks_enc, masks_pred)["loss"])

    walls, cpus, _ = timed(step, args.repeats, f"distwm train_step{suffix}", log)
    if suffix:
        return {f"train_step{suffix}_walls": walls, f"train_step{suffix}_cpus": cpus,
                f"losses{suffix}": losses}
    samples = [torch.zeros(1) for _ in range(args.batch)]
    collator = make_mask_collator(config)
    mask_walls, mask_cpus, _ = timed(lambda: collator(samples), max(5, 3 * args.repeats),
                                     "distwm masks", lambda _: None)
    return {"train_step_walls": walls, "train_step_cpus": cpus, "losses": losses,
            "masks_walls": mask_walls, "masks_cpus": mask_cpus}


def distwm_update(args, config, suffix: str = "") -> dict:
    import numpy as np

    from distwm.models.jepa.trainable import JEPATrainable

    trainable = JEPATrainable(config, config.total_updates)
    rng = np.random.default_rng(args.seed)
    batch = {"images": {"image": rng.integers(0, 256, (args.batch, 3, args.image_size,
                                                       args.image_size), dtype=np.uint8),
                        "label": np.zeros(args.batch, np.int64)}}
    walls, cpus, _ = timed(lambda: trainable.update(batch), args.repeats,
                           f"distwm update{suffix}", log)
    return {f"update{suffix}_walls": walls, f"update{suffix}_cpus": cpus}


def peer_round(args, config, inputs_path: str) -> dict:
    cmd = [args.peer_python, os.path.join(ROOT, "scripts", "bench_jepa_peer.py"),
           "--config", json.dumps(peer_config(config)), "--inputs", inputs_path,
           "--repeats", str(args.repeats), "--threads", str(args.threads), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    out = run_peer(cmd)
    log(f"peer round: {time.perf_counter() - t0:.1f}s (train_step walls "
        f"{', '.join(f'{w:.3f}' for w in out['train_step_walls'])})")
    return out


def figures(rounds: list[dict], batch: int) -> dict:
    """Medians over the rounds' timed calls -> seconds and images/s."""
    out = {}
    names = sorted({k[:-len("_walls")] for k in rounds[0] if k.endswith("_walls")})
    for name in names:
        wall = statistics.median([w for r in rounds for w in r[f"{name}_walls"]])
        cpu = statistics.median([c for r in rounds for c in r[f"{name}_cpus"]])
        out[f"{name}_s"] = wall
        out[f"{name}_images_per_s"] = batch / wall
        out[f"{name}_cpu_s"] = cpu
        out[f"{name}_cpu_images_per_s"] = batch / cpu
    return out


def ddp_scaling(args) -> dict:
    """images/s of ``distwm.runtime.data_parallel.run`` (jepa, digits) with 1 and 2 workers."""
    from distwm.configs.jepa_config import jepa_preset
    from distwm.configs.runtime_config import DataParallelConfig, DataParallelRunConfig
    from distwm.runtime.data_parallel import run

    model_config = jepa_preset("digits", probe_every=10 * args.ddp_updates,
                               probe_size=args.ddp_probe_size, seed=args.seed)
    out = {"model_config": {k: getattr(model_config, k) for k in (
        "model_name", "embed_dim", "depth", "num_heads", "pred_depth", "pred_emb_dim", "crop_size",
        "patch_size", "batch_size", "num_pred_masks", "probe_every", "probe_size")}}
    # flat field -> value (what the run config's model_config reads; to_dict() is ijepa's nesting)
    flat = {f.name: list(v) if isinstance(v := getattr(model_config, f.name), tuple) else v
            for f in dataclasses.fields(model_config)}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            cfg = DataParallelRunConfig.from_dict({
                "model": "jepa", "model_config": flat,
                "data_parallel": DataParallelConfig(
                    data="sklearn:digits:32", workers=workers, gpus_per_worker=0,
                    cpus_per_worker=1.0, total_updates=args.ddp_updates,
                    report_interval=max(1, args.ddp_updates // 4),
                    checkpoint_interval=args.ddp_updates, seed=args.seed, verbose=False,
                    run_dir=os.path.join(tmp, f"run{workers}")).to_dict()})
            start = time.perf_counter()
            result = run(cfg)
            seconds = time.perf_counter() - start
            summary = result.summary
            windows = [float(r["frames_per_s"]) for r in result.history[1:]] or \
                [float(r["frames_per_s"]) for r in result.history]
            steady = statistics.median(windows) if windows else float("nan")
            out[f"workers_{workers}"] = {
                "frames_per_s": summary["frames_per_s"],
                "frames_per_s_per_worker": summary["frames_per_s"] / workers,
                "steady_frames_per_s": steady,
                "steady_frames_per_s_per_worker": steady / workers,
                "updates_per_s": summary["updates_per_s"], "updates": summary["updates"],
                "run_seconds": summary["seconds"], "seconds_with_ray_start": seconds,
                "replicas_identical": summary.get("replicas_identical"),
                "final_loss": (summary.get("final_metrics") or {}).get("train/loss")}
            log(f"ddp {workers} worker(s): {summary['frames_per_s']:.1f} images/s "
                f"(steady {steady:.1f}), {seconds:.1f}s")
    for key in ("frames_per_s", "steady_frames_per_s"):
        out[f"total_speedup_2_vs_1_{key}"] = out["workers_2"][key] / out["workers_1"][key]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per round (after 1 warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, alternating distwm/peer order")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--model", default="vit_tiny")
    p.add_argument("--image-size", type=int, default=64, dest="image_size")
    p.add_argument("--patch-size", type=int, default=8, dest="patch_size")
    p.add_argument("--pred-depth", type=int, default=6, dest="pred_depth")
    p.add_argument("--pred-emb-dim", type=int, default=192, dest="pred_emb_dim")
    p.add_argument("--target-blocks", type=int, default=4, dest="target_blocks")
    p.add_argument("--min-keep", type=int, default=4, dest="min_keep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--autocast", choices=("off", "bf16"), default="off",
                   help="also time distwm with JEPAConfig.use_bfloat16=True: <figure>[bf16] rows")
    p.add_argument("--ddp", action="store_true", help="also measure 1 vs 2 Ray Train workers")
    p.add_argument("--ddp-updates", type=int, default=40, dest="ddp_updates")
    p.add_argument("--ddp-probe-size", type=int, default=200, dest="ddp_probe_size")
    p.add_argument("--peer-python", default=os.path.join(ROOT, ".peer-venv", "bin", "python"))
    p.add_argument("--skip-peer", action="store_true", help="time distwm only")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # the peer and Ray workers too
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = _config(args)
    result = {"config": {k: v for k, v in vars(args).items() if k != "peer_python"},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "torch": torch.__version__, "cpus": os.cpu_count(),
              "load_average_at_start": list(os.getloadavg()),
              "architecture": peer_config(config)}
    ours_rounds, peer_rounds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        inputs_path = os.path.join(tmp, "inputs.pt")
        inputs = make_inputs(args, config, inputs_path)
        result["mask_patches"] = [{"context": int(e[0].shape[1]), "targets": int(m[0].shape[1])}
                                  for e, m in zip(inputs["masks_enc"], inputs["masks_pred"])]
        for r in range(args.rounds):
            order = ("distwm", "peer") if r % 2 == 0 else ("peer", "distwm")
            for side in order:
                if side == "distwm":
                    ours_rounds.append({k: v for suffix, bf16 in variants(args) for k, v in
                                        distwm_round(args, config.replace(use_bfloat16=bf16),
                                                     inputs, suffix).items()})
                elif not args.skip_peer:
                    peer_rounds.append(peer_round(args, config, inputs_path))
    ours = figures(ours_rounds, args.batch)
    ours.update(figures([{k: v for suffix, bf16 in variants(args) for k, v in distwm_update(
        args, config.replace(use_bfloat16=bf16), suffix).items()}], args.batch))
    result["distwm"] = {"figures": ours, **{k: v for k, v in ours_rounds[0].items()
                                            if k.startswith("losses")}}
    if peer_rounds:
        peer = figures(peer_rounds, args.batch)
        result["peer"] = {"figures": peer, "losses": peer_rounds[0]["losses"],
                          "torch": peer_rounds[0]["torch"], "simulusion": peer_rounds[0]["simulusion"],
                          "notes": peer_rounds[0]["notes"]}
        # a [bf16] figure against the peer's float32 one
        shared = {k: v for k, v in ours.items() if base_figure(k) in peer}
        result["ratios"] = speed_ratios(shared, {k: peer[base_figure(k)] for k in shared})
        diffs = [abs(a - b) for a, b in zip(ours_rounds[0]["losses"], peer_rounds[0]["losses"])]
        result["loss_check"] = {"max_abs_diff": max(diffs), "calls": len(diffs),
                                "first_loss": [ours_rounds[0]["losses"][0], peer_rounds[0]["losses"][0]]}
        for suffix, _ in variants(args)[1:]:
            mine = ours_rounds[0][f"losses{suffix}"]
            result["loss_check"][f"max_abs_diff{suffix}"] = max(
                abs(a - b) for a, b in zip(mine, peer_rounds[0]["losses"]))
    if args.ddp:
        result["ddp"] = ddp_scaling(args)
    result["load_average_at_end"] = list(os.getloadavg())
    print_result(result, args.out)


if __name__ == "__main__":
    main()
