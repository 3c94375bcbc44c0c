#!/usr/bin/env python
"""Genie training and play throughput: distwm vs the peer ``simulusion`` 1.1.0, side by side in one
run, as ratios (> 1 means distwm is faster); then DDP scaling on Ray Train (1 vs 2 workers).

Both sides build the same networks: the seed's ``GenieConfig`` (32x32 RGB frames, 8 a clip,
tokenizer 256/512 wide, 4/8 deep, 1024 codes of dim 32; LAM 256 wide, 4 deep, 8 codes;
dynamics 512 wide, 8 deep, 8 heads), the same batch of random clips, torch thread count and
``OMP_WAIT_POLICY`` (set it in the environment; it is passed on). Every figure is one warm-up
call of each side, then ``--repeats`` timed calls of each, alternating between distwm and the
peer (which answers from a server process, ``bench_genie_peer.py --serve``), so a change in
the machine's load reaches both sides alike; medians of both wall time and process CPU time.
The ratios are given for both (``ratios`` on CPU time, ``ratios_wall`` on wall time). With one
thread the CPU-time ratio is the one to read on a shared machine: another process on the
cores stretches wall time far more than CPU time (the load averages are in the JSON).
Figures (frames = clips x frames per clip):

* ``tokenizer``: one VQ-VAE update; ``lam``: one latent action model update; ``dynamics``: one
  dynamics update on the tokenizer's tokens (no grad through the tokenizer; distwm also infers
  the actions with the frozen LAM, the peer's bench draws random ones); ``lam_dynamics``: the
  paper's co-training update (LAM + dynamics). The peer's dynamics model runs on the first
  ``T - 1`` frames of a clip (next-frame shift), distwm's on all ``T`` (in-place MaskGIT); the
  peer's co-training step also runs its tokenizer's decoder (its ``Genie.forward`` does);
  distwm's update also clips gradients and steps its LR schedules;
* ``play``: generated frames/s of a ``--play-steps`` session from one prompt frame (within the
  ``num_frames`` window): distwm's :class:`~distwm.models.genie.genie.GeniePlayer` (temporal KV
  caches; one sampling pass over the new frame, one pass that commits it to the cache, one
  decoder pass) with 1 MaskGIT step per frame (the peer's number of sampling passes: its
  ``play`` samples each frame in one pass) and with the paper's 25 steps; the peer calls
  ``Genie.play(frame, action, history)`` each step, which re-tokenizes the history (up to
  ``num_frames - 1`` frames);
* ``play_long``: the same with 1 step for ``--long-play-steps`` frames (default
  ``2 * num_frames``): past the window distwm's learned temporal positions shift every step,
  so it refills its caches from the last ``num_frames - 1`` frames each step (one pass over
  them) and the peer re-tokenizes a full ``num_frames - 1``-frame history.

Mixed precision (``--autocast bf16``): every distwm figure is also timed with
``GenieConfig.autocast="bf16"`` (bf16 autocast of the updates and of play, float32 weights and
optimizer state), as extra figures named ``<figure>[bf16]``, each timed right after its float32
sibling; its ratio is against the peer's float32 figure of the same name (the peer has no
mixed precision). The figures without a suffix are float32 on both sides.

Collection scaling (``--collect``): ``distwm collect`` of ALE Breakout (random policy, 32x32)
with 1 and 2 env-worker actors: env steps/s.

DDP scaling (``--ddp``): ``distwm train genie --data`` on a small random shard dataset with 1
and then 2 Ray Train workers (gloo), the same per-worker batch: frames/s per worker and in all.
On a 2-core machine the two workers share the cores, so per-worker throughput falls; the figure
to read is the total.

The peer runs in its own virtualenv (``--peer-python``, default ``.peer-venv/bin/python``;
``python3.11 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 simulusion==1.1.0``)
through ``scripts/bench_genie_peer.py``; distwm never imports it (this script imports that
script's two timing helpers, which need only torch). Prints one JSON object.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_genie.py --threads 1 --repeats 3 --ddp
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_genie_peer import figures_of, time_call
from bench_timing import print_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("tokenizer", "lam", "dynamics", "lam_dynamics")
#: the figures both sides time (distwm's 25-step play has no peer counterpart)
PEER_FIGURES = tuple(f"{phase}_update" for phase in PHASES) + ("play", "play_long")
NOTES = {
    "ratios": "peer / distwm seconds of the same figure, on process CPU time (ratios) and wall "
              "time (ratios_wall); > 1: distwm faster",
    "frames": "training figures count the clips' frames (batch x num_frames) on both sides",
    "dynamics": "the peer's dynamics network runs on num_frames - 1 frames of each clip (it "
                "predicts the next frame), distwm's on all num_frames (in-place MaskGIT); the "
                "peer's bench draws random actions, distwm's phase infers them with the LAM",
    "lam_dynamics": "each side's own co-training step: the peer's also runs its tokenizer's "
                    "decoder (no grad) and its LAM trains on the last transition only",
    "play": "distwm: 1 sampling pass + 1 cache-filling pass over the new frame + 1 decoder pass "
            "a frame (25 MaskGIT steps: 25 sampling passes); the peer: its tokenizer (encoder "
            "and decoder) and dynamics model over the whole history each frame",
    "play_long": "past num_frames distwm refills its caches from the last num_frames - 1 frames "
                 "every step (learned temporal positions shift)",
    "precision": "figures without a suffix: float32 on both sides; <figure>[bf16]: distwm with "
                 "GenieConfig.autocast='bf16' (float32 weights), its ratio against the peer's "
                 "float32 <figure>",
}


def base_figure(key: str) -> str:
    """``key`` without its precision suffix (``tokenizer_update[bf16]_s`` ->
    ``tokenizer_update_s``): the peer's figure a variant is compared with."""
    return re.sub(r"\[[a-z0-9]+\]", "", key)


def _config(args, autocast: str = "off"):
    from distwm.configs.genie_config import GenieConfig

    return GenieConfig(batch_size=args.batch, maskgit_steps=25, autocast=autocast)


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


def distwm_calls(args) -> dict:
    """``{figure: (fn, frames per call)}`` on distwm's Genie (the peer's figure names), with
    each figure's ``[bf16]`` variant right after it under ``--autocast bf16``."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = _config(args)
    T, S = config.num_frames, config.image_size
    video = torch.rand(args.batch, 3, T, S, S)
    variants = [("", "off")] + ([(f"[{args.autocast}]", args.autocast)]
                                if args.autocast != "off" else [])
    by_variant = [_precision_calls(args, _config(args, autocast), video, suffix)
                  for suffix, autocast in variants]
    return {name + suffix: by_variant[i][name + suffix] for name in by_variant[0]
            for i, (suffix, _) in enumerate(variants)}


def _precision_calls(args, config, video, suffix: str) -> dict:
    import torch

    from distwm.models.genie.genie import GeniePlayer
    from distwm.models.genie.maskgit import MaskGITSampler
    from distwm.models.genie.trainable import GenieTrainable

    T = config.num_frames
    calls = {}
    torch.manual_seed(args.seed + 1)  # the same weights for every precision
    for phase in PHASES:
        trainable = GenieTrainable(config.replace(stage=phase))
        calls[f"{phase}_update{suffix}"] = (lambda t=trainable: t.update_video(video),
                                            args.batch * T)
    model = trainable.model
    prompt = video[:1, :, 0]
    for steps, key, frames in ((1, "play", args.play_steps),
                               (25, "play_maskgit25", args.play_steps),
                               (1, "play_long", _long_play_steps(args, config))):
        sampler = MaskGITSampler(steps, config.sample_temperature)

        def play(sampler=sampler, frames=frames):
            model.eval()
            with torch.no_grad():
                player = GeniePlayer(model, prompt, sampler)
                for i in range(frames):
                    player.step(torch.tensor([i % config.action_vocab_size]))

        calls[key + suffix] = (play, frames)
    return calls


def _long_play_steps(args, config) -> int:
    return args.long_play_steps or 2 * config.num_frames


class PeerServer:
    """``scripts/bench_genie_peer.py --serve`` in the peer's virtualenv: one timed call of a
    named figure per :meth:`time`, so the two sides' calls can alternate."""

    def __init__(self, args):
        cmd = [args.peer_python, os.path.join(ROOT, "scripts", "bench_genie_peer.py"), "--serve",
               "--arch", json.dumps(peer_arch(_config(args))), "--batch", str(args.batch),
               "--threads", str(args.threads), "--play-steps", str(args.play_steps),
               "--long-play-steps", str(_long_play_steps(args, _config(args))),
               "--seed", str(args.seed)]
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=dict(os.environ))
        self.header = self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the peer benchmark stopped (exit {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise SystemExit(f"the peer benchmark: {answer['error']}")
        return answer

    def time(self, name: str) -> tuple[float, float]:
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        return answer["wall"], answer["cpu"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def measure(args, ours: dict, peer: PeerServer | None) -> tuple[dict, dict]:
    """Per figure: a warm-up call of each side, then ``--repeats`` timed calls of each,
    alternating (distwm first on even repeats, the peer first on odd ones)."""
    samples = {side: {} for side in ("distwm", "peer")}
    for name, (fn, _) in ours.items():
        shared = peer is not None and name in PEER_FIGURES
        sides = {"distwm": lambda fn=fn: time_call(fn)}
        if shared:
            sides["peer"] = lambda name=name: peer.time(name)
        for side, call in sides.items():
            call()  # warm-up
        for r in range(args.repeats):
            for side in (sorted(sides) if r % 2 == 0 else sorted(sides, reverse=True)):
                samples[side].setdefault(name, []).append(sides[side]())
        for side in sides:
            wall, cpu = samples[side][name][-1]
            print(f"{side} {name}: {wall:.3f}s wall, {cpu:.3f}s cpu (last)", file=sys.stderr)
    frames = {name: count for name, (_, count) in ours.items()}
    return tuple({k: v for name, times in samples[side].items()
                  for k, v in figures_of(name, [w for w, _ in times], [c for _, c in times],
                                         frames[name]).items()}
                 for side in ("distwm", "peer"))


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
    p.add_argument("--play-steps", type=int, default=7, dest="play_steps",
                   help="frames generated in a play session (7: the 8-frame window)")
    p.add_argument("--long-play-steps", type=int, default=None, dest="long_play_steps",
                   help="frames of the long session (default 2 * num_frames)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--autocast", choices=("off", "bf16"), default="off",
                   help="also time distwm with GenieConfig.autocast=bf16: <figure>[bf16] rows")
    p.add_argument("--ddp", action="store_true", help="also measure 1 vs 2 Ray Train workers")
    p.add_argument("--ddp-updates", type=int, default=40, dest="ddp_updates")
    p.add_argument("--collect", action="store_true", help="also time distwm collect, 1 vs 2 workers")
    p.add_argument("--collect-episodes", type=int, default=20, dest="collect_episodes")
    p.add_argument("--peer-python", default=os.path.join(ROOT, ".peer-venv", "bin", "python"))
    p.add_argument("--skip-peer", action="store_true", help="time distwm only")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    import torch

    result = {"config": {k: v for k, v in vars(args).items() if k != "peer_python"},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "torch": torch.__version__,
              "load_average_start": os.getloadavg(), "notes": NOTES}
    peer = None if args.skip_peer else PeerServer(args)
    try:
        ours, theirs = measure(args, distwm_calls(args), peer)
    finally:
        if peer is not None:
            peer.close()
    result["distwm"] = ours
    if peer is not None:
        result["peer"] = {"figures": theirs, **{k: v for k, v in peer.header.items()
                                                if k != "ready"}}
        # seconds: peer / distwm; a [bf16] variant against the peer's float32 figure
        times = [k for k in ours if base_figure(k) in theirs and "_per_" not in k]
        result["ratios"] = {k[:-len("_cpu_s")]: theirs[base_figure(k)] / ours[k] for k in times
                            if k.endswith("_cpu_s")}
        result["ratios_wall"] = {k[:-len("_s")]: theirs[base_figure(k)] / ours[k] for k in times
                                 if not k.endswith("_cpu_s")}
        for kind, suffix in (("ratios", "_cpu_s"), ("ratios_wall", "_s")):
            # distwm's 25 MaskGIT steps a frame against the peer's one-pass play
            for key in [k for k in ours if base_figure(k) == f"play_maskgit25{suffix}"]:
                variant = key[len("play_maskgit25"):-len(suffix)]
                result[kind][f"play_maskgit25{variant}_vs_peer_play"] = (
                    theirs[f"play{suffix}"] / ours[key])
    result["load_average_end"] = os.getloadavg()
    if args.ddp:
        result["ddp"] = ddp_scaling(args)
    if args.collect:
        result["collect"] = collect_scaling(args)
    print_result(result, args.out)


if __name__ == "__main__":
    main()
