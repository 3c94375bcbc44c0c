#!/usr/bin/env python
"""Genie training and play throughput in the peer library simulusion 1.1.0 (CPU), for comparison
with distwm (``scripts/bench_genie.py`` runs it and prints the ratios).

Standalone: run it with the PEER's interpreter; it imports nothing from distwm::

    OMP_WAIT_POLICY=PASSIVE .peer-venv/bin/python scripts/bench_genie_peer.py --arch '{...}'

``--arch`` is a JSON object of ``simulusion.models.genie.Genie`` keyword arguments (the
benchmark passes distwm's sizes, so both sides build the same networks). On random clips
``(B, C, T, H, W)`` in [0, 1] it times, with AdamW on the trained parts:

* ``tokenizer``: ``genie(video, training_phase="tokenizer")["total_loss"]``, backward, step;
* ``lam``: the latent action model alone, as the peer's co-training phase calls it
  (``latent_action_model(video[:, :, :-1], video[:, :, -1])``, recon + VQ loss), backward, step;
* ``dynamics``: the dynamics model alone on the tokenizer's tokens (no grad) with random latent
  actions, the peer's masking (``mask_prob=None``: drawn from U(0.5, 1)) and its next-frame
  cross-entropy, backward, step;
* ``lam_dynamics``: ``genie(video, training_phase="lam_dynamics")["total_loss"]`` (the paper's
  second phase), backward, step;
* ``play``: a session of ``--play-steps`` calls of ``genie.play(frame, action, history)``, the
  history growing to ``num_frames - 1`` frames (its documented use; it re-tokenizes the history
  every call) -> generated frames/s.

One warm-up call of each, then ``--repeats`` timed calls; medians. Prints one JSON object.
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


def median_seconds(fn, repeats: int) -> float:
    fn()
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--play-steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
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
        step(genie(video, training_phase="tokenizer")["total_loss"], "video_tokenizer")

    def lam():
        out = genie.latent_action_model(video[:, :, :-1], video[:, :, -1])
        step(out["recon_loss"] + out["vq_loss"], "latent_action_model")

    def dynamics():
        with torch.no_grad():
            tokens = genie.video_tokenizer(video)[1].reshape(args.batch, T, -1)
        actions = torch.randint(0, arch["action_vocab_size"], (args.batch, T - 1))
        logits = genie.dynamics_model(tokens[:, :-1], actions, mask_prob=None)
        step(F.cross_entropy(logits.flatten(0, 2), tokens[:, 1:].flatten()), "dynamics_model")

    def lam_dynamics():
        step(genie(video, training_phase="lam_dynamics")["total_loss"], "latent_action_model",
             "dynamics_model")

    genie.train()
    figures = {}
    frames = args.batch * T
    for name, fn in (("tokenizer", tokenizer), ("lam", lam), ("dynamics", dynamics),
                     ("lam_dynamics", lam_dynamics)):
        seconds = median_seconds(fn, args.repeats)
        figures[f"{name}_update_s"] = seconds
        figures[f"{name}_frames_per_s"] = frames / seconds
        print(f"peer {name}: {seconds:.3f}s", file=sys.stderr)

    genie.eval()
    prompt = video[:1, :, 0]

    @torch.no_grad()
    def play():
        history, frame = prompt[:, :, None], prompt
        for i in range(args.play_steps):
            frame = genie.play(frame, torch.tensor([i % arch["action_vocab_size"]]), history)
            history = torch.cat([history, frame[:, :, None]], 2)[:, :, -(T - 1):]

    seconds = median_seconds(play, args.repeats)
    figures["play_s"] = seconds
    figures["play_frames_per_s"] = args.play_steps / seconds
    print(json.dumps({"figures": figures, "torch": torch.__version__,
                      "notes": {"dropped_arch_keys": dropped,
                                "play_passes_per_frame": "1 dynamics pass over the whole history "
                                                         "+ a full tokenizer pass (encoder and "
                                                         "decoder) over the history"}}))


if __name__ == "__main__":
    main()
