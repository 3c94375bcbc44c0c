#!/usr/bin/env python
"""Genie training and play throughput in the peer library simulusion 1.1.0 (CPU), for comparison
with distwm (``scripts/bench_genie.py`` runs it and prints the ratios).

Run it with the PEER's interpreter; it imports nothing from distwm (``bench_timing`` is standard
library only)::

    OMP_WAIT_POLICY=PASSIVE .peer-venv/bin/python scripts/bench_genie_peer.py --arch '{...}'

``--arch`` is a JSON object of ``simulusion.models.genie.Genie`` keyword arguments (the
benchmark passes distwm's sizes, so both sides build the same networks). On random clips
``(B, C, T, H, W)`` in [0, 1] it times, with AdamW on the trained parts:

* ``tokenizer_update``: ``genie(video, training_phase="tokenizer")["total_loss"]``, backward,
  step;
* ``lam_update``: the latent action model alone, as the peer's co-training phase calls it
  (``latent_action_model(video[:, :, :-1], video[:, :, -1])``, recon + VQ loss), backward, step;
* ``dynamics_update``: the dynamics model alone on the tokenizer's tokens
  (``video_tokenizer.encode``, no grad: the tokens only, as distwm's dynamics phase takes them)
  with random latent actions, the peer's masking (``mask_prob=None``: drawn from U(0.5, 1)) and
  its next-frame cross-entropy (the network runs on the first ``T - 1`` frames), backward, step;
* ``lam_dynamics_update``: ``genie(video, training_phase="lam_dynamics")["total_loss"]`` (the
  paper's second phase; the peer's forward also runs the tokenizer's decoder, under no grad),
  backward, step;
* ``play``: a session of ``--play-steps`` calls of ``genie.play(frame, action, history)``, the
  history growing to ``num_frames - 1`` frames (its documented use; it re-tokenizes the history
  every call) -> generated frames/s; ``play_long``: the same for ``--long-play-steps`` calls.

Alone it makes one warm-up call of each, then ``--repeats`` timed calls, and prints one JSON
object of medians of wall and process CPU time (``<name>_s``, ``<name>_cpu_s``) and the frames
per second over each. With ``--serve`` it prints one JSON line (``{"ready": ...}``) and then
answers each line naming a figure on stdin with one timed call (``{"wall": s, "cpu": s}``):
``bench_genie.py`` alternates those calls with its own, so a change in the machine's load
reaches both sides alike.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

PLAY_NOTE = ("1 dynamics pass over the whole history + a full tokenizer pass (encoder and "
             "decoder) over the history")


def time_call(fn) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of one call of ``fn``."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def figures_of(key: str, walls: list[float], cpus: list[float], frames: int) -> dict[str, float]:
    """``<key>_s`` / ``<key>_cpu_s`` (median wall / CPU seconds) and ``<key>_frames_per_s`` /
    ``<key>_frames_per_cpu_s`` (``frames`` per call over them). ``bench_genie.py`` uses it too."""
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {f"{key}_s": wall, f"{key}_cpu_s": cpu, f"{key}_frames_per_s": frames / wall,
            f"{key}_frames_per_cpu_s": frames / cpu}


def build_calls(args) -> tuple[dict, list[str]]:
    """``{figure: (fn, frames per call)}`` on the peer's Genie, and the arch keys it dropped."""
    from simulusion.models.genie import Genie

    arch = json.loads(args.arch)
    accepted = set(inspect.signature(Genie.__init__).parameters)
    dropped = sorted(set(arch) - accepted)
    genie = Genie(**{k: v for k, v in arch.items() if k in accepted})
    T, S, C = arch["num_frames"], arch["image_size"], arch.get("in_channels", 3)
    video = torch.rand(args.batch, C, T, S, S)
    opts = {name: torch.optim.AdamW(getattr(genie, name).parameters(), lr=1e-4)
            for name in ("video_tokenizer", "latent_action_model", "dynamics_model")}

    def step(loss, *parts):
        for part in parts:
            opts[part].zero_grad(set_to_none=True)
        loss.backward()
        for part in parts:
            opts[part].step()

    def tokenizer():
        genie.train()
        step(genie(video, training_phase="tokenizer")["total_loss"], "video_tokenizer")

    def lam():
        genie.train()
        out = genie.latent_action_model(video[:, :, :-1], video[:, :, -1])
        step(out["recon_loss"] + out["vq_loss"], "latent_action_model")

    def dynamics():
        genie.train()
        with torch.no_grad():
            tokens = genie.video_tokenizer.encode(video)[1].reshape(args.batch, T, -1)
        actions = torch.randint(0, arch["action_vocab_size"], (args.batch, T - 1))
        logits = genie.dynamics_model(tokens[:, :-1], actions, mask_prob=None)
        step(F.cross_entropy(logits.flatten(0, 2), tokens[:, 1:].flatten()), "dynamics_model")

    def lam_dynamics():
        genie.train()
        step(genie(video, training_phase="lam_dynamics")["total_loss"], "latent_action_model",
             "dynamics_model")

    prompt = video[:1, :, 0]

    def session(steps: int):
        @torch.no_grad()
        def play():
            genie.eval()
            history, frame = prompt[:, :, None], prompt
            for i in range(steps):
                frame = genie.play(frame, torch.tensor([i % arch["action_vocab_size"]]), history)
                history = torch.cat([history, frame[:, :, None]], 2)[:, :, -(T - 1):]
        return play

    frames = args.batch * T
    calls = {"tokenizer_update": (tokenizer, frames), "lam_update": (lam, frames),
             "dynamics_update": (dynamics, frames), "lam_dynamics_update": (lam_dynamics, frames),
             "play": (session(args.play_steps), args.play_steps),
             "play_long": (session(args.long_play_steps), args.long_play_steps)}
    return calls, dropped


def serve(calls: dict, header: dict) -> None:
    print(json.dumps({"ready": True, **header}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            break
        if name not in calls:
            print(json.dumps({"error": f"unknown figure {name!r}; choose from {sorted(calls)}"}),
                  flush=True)
            continue
        wall, cpu = time_call(calls[name][0])
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--play-steps", type=int, default=7)
    p.add_argument("--long-play-steps", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve", action="store_true", help="answer timed calls named on stdin")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    calls, dropped = build_calls(args)
    header = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "notes": {"dropped_arch_keys": dropped, "play_passes_per_frame": PLAY_NOTE}}
    if args.serve:
        serve(calls, header)
        return
    figures = {}
    for name, (fn, frames) in calls.items():
        fn()
        times = [time_call(fn) for _ in range(args.repeats)]
        figures.update(figures_of(name, [w for w, _ in times], [c for _, c in times], frames))
        print(f"peer {name}: {figures[f'{name}_cpu_s']:.3f}s cpu", file=sys.stderr)
    print(json.dumps({"figures": figures, **header}))


if __name__ == "__main__":
    main()
