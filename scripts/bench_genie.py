#!/usr/bin/env python
"""Genie training and play throughput: distwm vs the peer ``simulusion`` 1.1.0, side by side in one
run, as ratios (> 1 means distwm is faster); then DDP scaling on Ray Train (1 vs 2 workers).

Both sides build the same networks: the seed's ``GenieConfig`` (32x32 RGB frames, 8 a clip,
tokenizer 256/512 wide, 4/8 deep, 1024 codes of dim 32; LAM 256 wide, 4 deep, 8 codes;
dynamics 512 wide, 8 deep, 8 heads), the same batch of random clips, torch thread count and
``OMP_WAIT_POLICY`` (set it in the environment; it is passed on). Figures (frames = clips x
frames per update):

* ``tokenizer``: one VQ-VAE update; ``lam``: one latent action model update; ``dynamics``: one
  dynamics update on the tokenizer's tokens (no grad through the tokenizer); ``lam_dynamics``:
  the paper's co-training update (LAM + dynamics);
* ``play``: generated frames/s of a ``--play-steps`` session from one prompt frame: distwm's
  :class:`~distwm.models.genie.genie.GeniePlayer` (temporal KV caches; one frame per dynamics
  pass and one decoder pass per frame) with 1 MaskGIT step per frame (the peer's number of
  sampling passes: its ``play`` samples each frame in one pass) and with the paper's 25 steps;
  the peer calls ``Genie.play(frame, action, history)`` each step, which re-tokenizes the history.

Collection scaling (``--collect``): ``distwm collect`` of ALE Breakout (random policy, 32x32)
with 1 and 2 env-worker actors: env steps/s.

DDP scaling (``--ddp``): ``distwm train genie --data`` on a small random shard dataset with 1
and then 2 Ray Train workers (gloo), the same per-worker batch: frames/s per worker and in all.
On a 2-core machine the two workers share the cores, so per-worker throughput falls; the figure
to read is the total.

The peer runs in its own virtualenv (``--peer-python``, default ``.peer-venv/bin/python``;
``python3.11 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 simulusion==1.1.0``)
through ``scripts/bench_genie_peer.py``; distwm never imports it. Prints one JSON object.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_genie.py --threads 1 --repeats 3 --ddp
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from bench_timing import median_seconds, print_result, run_peer, speed_ratios

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("tokenizer", "lam", "dynamics", "lam_dynamics")


def _config(args):
    from distwm.configs.genie_config import GenieConfig

    return GenieConfig(batch_size=args.batch, maskgit_steps=25)


def peer_arch(config) -> dict:
    """The peer ``Genie``'s keyword arguments for the networks distwm builds from ``config``."""
    from distwm.models.genie.factory import genie_kwargs

    kwargs = genie_kwargs(config)
    keep = ("num_frames", "image_size", "in_channels", "tokenizer_vocab_size",
            "tokenizer_embedding_dim", "tokenizer_encoder_dim", "tokenizer_decoder_dim",
            "action_vocab_size", "action_embedding_dim", "action_encoder_dim",
            "action_decoder_dim", "dynamics_dim", "dynamics_depth", "dynamics_num_heads",
            "encoder_depth", "decoder_depth", "latent_action_depth", "tokenizer_num_heads",
            "action_num_heads")
    return {k: kwargs[k] for k in keep}


def distwm_side(args) -> dict:
    import torch

    from distwm.models.genie.genie import GeniePlayer
    from distwm.models.genie.maskgit import MaskGITSampler
    from distwm.models.genie.trainable import GenieTrainable

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = _config(args)
    T, S = config.num_frames, config.image_size
    video = torch.rand(args.batch, 3, T, S, S)
    figures = {}
    for phase in PHASES:
        trainable = GenieTrainable(config.replace(stage=phase))
        seconds = median_seconds(lambda: trainable.update_video(video), args.repeats)
        figures[f"{phase}_update_s"] = seconds
        figures[f"{phase}_frames_per_s"] = args.batch * T / seconds
        print(f"distwm {phase}: {seconds:.3f}s", file=sys.stderr)
    model = trainable.model.eval()
    prompt = video[:1, :, 0]
    for steps, key in ((1, "play"), (25, "play_maskgit25")):
        sampler = MaskGITSampler(steps, config.sample_temperature)

        def play():
            player = GeniePlayer(model, prompt, sampler)
            for i in range(args.play_steps):
                player.step(torch.tensor([i % config.action_vocab_size]))

        with torch.no_grad():
            seconds = median_seconds(play, args.repeats)
        figures[f"{key}_s"] = seconds
        figures[f"{key}_frames_per_s"] = args.play_steps / seconds
        print(f"distwm {key}: {seconds:.3f}s", file=sys.stderr)
    return figures


def peer_side(args) -> dict:
    cmd = [args.peer_python, os.path.join(ROOT, "scripts", "bench_genie_peer.py"),
           "--arch", json.dumps(peer_arch(_config(args))), "--batch", str(args.batch),
           "--repeats", str(args.repeats), "--threads", str(args.threads),
           "--play-steps", str(args.play_steps), "--seed", str(args.seed)]
    return run_peer(cmd)


def _random_dataset(directory: str, files: int, steps: int, size: int) -> None:
    from distwm.datasets.video_shards import ShardWriter, write_manifest

    rng = np.random.default_rng(0)
    entries = []
    for i in range(files):
        is_first = np.zeros(steps, bool)
        is_first[::100] = True
        chunk = {"image": rng.integers(0, 256, (steps, 3, size, size), dtype=np.uint8),
                 "action": np.zeros((steps, 4), np.float32), "reward": np.zeros(steps, np.float32),
                 "is_first": is_first, "is_terminal": np.zeros(steps, bool),
                 "is_last": np.roll(is_first, -1)}
        with ShardWriter(directory, f"worker-{i:03d}") as writer:
            writer.add_chunk(chunk)
        entries += writer.close()
    write_manifest(directory, entries, {"env": "random", "frame_shape": [3, size, size],
                                        "action_dim": 4})


def ddp_scaling(args) -> dict:
    """frames/s of ``distwm train genie --data`` with 1 and 2 Ray Train workers."""
    from distwm.configs.runtime_config import DataParallelConfig, DataParallelRunConfig
    from distwm.runtime.data_parallel import run

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        _random_dataset(data, files=2, steps=400, size=32)
        model_config = _config(args).replace(stage="lam_dynamics").to_dict()
        for workers in (1, 2):
            cfg = DataParallelRunConfig.from_dict({
                "model": "genie", "model_config": model_config,
                "data_parallel": DataParallelConfig(
                    data=data, workers=workers, total_updates=args.ddp_updates,
                    report_interval=max(1, args.ddp_updates // 4),
                    checkpoint_interval=args.ddp_updates,
                    run_dir=os.path.join(tmp, f"run{workers}")).to_dict()})
            start = time.perf_counter()
            result = run(cfg)
            summary = result.summary
            out[f"workers_{workers}"] = {
                "frames_per_s": summary["frames_per_s"],
                "frames_per_s_per_worker": summary["frames_per_s"] / workers,
                "updates_per_s": summary["updates_per_s"],
                "seconds": time.perf_counter() - start}
    out["total_speedup_2_vs_1"] = out["workers_2"]["frames_per_s"] / out["workers_1"]["frames_per_s"]
    return out


def collect_scaling(args) -> dict:
    """env steps/s of ``distwm collect`` (ALE Breakout, random policy) with 1 and 2 workers."""
    from distwm.runtime.collect import collect

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            result = collect("ALE/Breakout-v5", os.path.join(tmp, f"w{workers}"),
                             episodes=args.collect_episodes, workers=workers,
                             overrides=("image_size=32",), seed=args.seed, verbose=False)
            out[f"workers_{workers}"] = {"steps": result.steps, "seconds": result.seconds,
                                         "steps_per_s": result.steps / result.seconds}
    out["speedup_2_vs_1"] = out["workers_2"]["steps_per_s"] / out["workers_1"]["steps_per_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--play-steps", type=int, default=7, dest="play_steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ddp", action="store_true", help="also measure 1 vs 2 Ray Train workers")
    p.add_argument("--ddp-updates", type=int, default=40, dest="ddp_updates")
    p.add_argument("--collect", action="store_true", help="also time distwm collect, 1 vs 2 workers")
    p.add_argument("--collect-episodes", type=int, default=20, dest="collect_episodes")
    p.add_argument("--peer-python", default=os.path.join(ROOT, ".peer-venv", "bin", "python"))
    p.add_argument("--skip-peer", action="store_true", help="time distwm only")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    result = {"config": {k: v for k, v in vars(args).items() if k != "peer_python"},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    ours = distwm_side(args)
    result["distwm"] = ours
    if not args.skip_peer:
        peer = peer_side(args)
        result["peer"] = peer
        shared = {k: v for k, v in ours.items() if k in peer["figures"]}
        result["ratios"] = speed_ratios(shared, peer["figures"])
        result["ratios"]["play_maskgit25_frames_per_s_vs_peer_play"] = (
            ours["play_maskgit25_frames_per_s"] / peer["figures"]["play_frames_per_s"])
    if args.ddp:
        result["ddp"] = ddp_scaling(args)
    if args.collect:
        result["collect"] = collect_scaling(args)
    print_result(result, args.out)


if __name__ == "__main__":
    main()
