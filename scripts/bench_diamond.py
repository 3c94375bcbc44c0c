#!/usr/bin/env python
"""DIAMOND update times and imagination throughput: distwm vs the peer ``simulusion`` 1.1.0, side
by side in one run, as ratios (peer time / distwm time, distwm throughput / peer throughput;
> 1 means distwm is faster).

Both sides get random data of the same shapes at the paper's sizes (``create_config("diamond")``
and simulusion's ``DiamondConfig()`` defaults: denoiser U-Net 64/64/64/64 x 2 blocks, cond 256;
reward/end CNN 32 x 4 + LSTM 512; actor-critic CNN 32/32/64/64 + LSTM 512; 4 conditioning
frames, 64x64 RGB, 3 Euler denoising steps), the same torch thread count and
``OMP_WAIT_POLICY`` (set it in the environment; it is passed on):

* denoiser: one update on ``--denoiser-batch`` windows of 4 conditioning frames + 1 target;
* reward/end: one update on ``--reward-batch`` sequences of 4 + ``--horizon`` = 19 steps (18
  transitions, as both trainers cut a 19-step sample);
* actor-critic: one update as each trainer does it: burn-in on the 4 real frames, imagine
  ``--horizon`` steps (3 denoising steps each), the REINFORCE / value step, on ``--ac-batch``
  starts;
* imagination: imagined env steps per second of one rollout (burn-in included) of
  ``--horizon`` steps from ``--imagine-batch`` starts.

The peer runs in its own virtualenv (``--peer-python``, default ``.peer-venv/bin/python``;
``python3.11 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 simulusion==1.1.0``)
through ``scripts/bench_diamond_peer.py``; distwm never imports it. Prints one JSON object.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_diamond.py --threads 1 --repeats 1
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_diamond.py --size tiny --repeats 1  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
from bench_timing import median_seconds, run_peer, speed_ratios

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ("denoiser_update_s", "reward_end_update_s", "actor_critic_update_s", "imagine_s", "imagined_steps_per_s")


def _config(args):
    import distwm

    cfg = distwm.create_config("diamond")
    if args.size == "tiny":
        from distwm.models.diamond.core import DiamondCore

        cfg = DiamondCore.tiny_test_config(cfg)
    return cfg.replace(imagination_horizon=args.horizon, autocast=args.autocast)


def distwm_side(args) -> tuple[dict, dict]:
    import torch

    from distwm.models.diamond.model import DiamondModel

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = _config(args)
    model = DiamondModel(cfg, args.action_size, "cpu")
    L, H, A = cfg.num_conditioning_frames, args.horizon, args.action_size
    rng = np.random.default_rng(0)
    frames = lambda *shape: torch.from_numpy(rng.integers(0, 256, (*shape, 3, 64, 64), dtype=np.uint8))
    actions = lambda *shape: torch.from_numpy(rng.integers(0, A, shape))

    # denoiser: L conditioning frames + the target, the actions taken in the first L
    den_frames, den_actions = frames(args.denoiser_batch, L + 1), actions(args.denoiser_batch, L)
    # reward/end: an L + H step sample -> its L + H - 1 transitions (reward_end_steps)
    T = L + H
    seq = frames(args.reward_batch, T)
    rew_actions = actions(args.reward_batch, T - 1)
    rewards = torch.from_numpy(rng.choice([-1.0, 0.0, 1.0], (args.reward_batch, T - 1), p=[0.05, 0.9, 0.05]))
    ends = torch.from_numpy((rng.random((args.reward_batch, T - 1)) < 0.01).astype(np.int64))
    # actor-critic / imagination: L real frames and the L - 1 actions taken in the first L - 1
    ac_frames, ac_actions = frames(args.ac_batch, L), actions(args.ac_batch, L - 1)
    im_frames, im_actions = frames(args.imagine_batch, L), actions(args.imagine_batch, L - 1)

    parts = {"imagine": [], "update_actor_critic": []}

    def actor_critic():
        t0 = time.perf_counter()
        rollout = model.imagine(ac_frames, ac_actions, horizon=H)
        t1 = time.perf_counter()
        model.update_actor_critic(rollout)
        parts["imagine"].append(t1 - t0)
        parts["update_actor_critic"].append(time.perf_counter() - t1)

    out = {"denoiser_update_s": median_seconds(lambda: model.update_denoiser(den_frames, den_actions), args.repeats),
           "reward_end_update_s": median_seconds(
               lambda: model.update_reward_end(seq[:, :-1], rew_actions, seq[:, 1:], rewards, ends), args.repeats),
           "actor_critic_update_s": median_seconds(actor_critic, args.repeats),
           "imagine_s": median_seconds(lambda: model.imagine(im_frames, im_actions, horizon=H), args.repeats)}
    out["imagined_steps_per_s"] = args.imagine_batch * H / out["imagine_s"]
    nparams = {p: int(sum(x.numel() for x in getattr(model, p).parameters()))
               for p in ("denoiser", "reward_end", "actor_critic")}
    info = {"actor_critic_parts_s": {k: statistics.median(v[1:]) for k, v in parts.items()},
            "params": nparams, "conditioning_frames": L, "reward_transitions": T - 1,
            "sampling": {"steps": cfg.num_sampling_steps, "sigma_min": cfg.sigma_min, "sigma_max": cfg.sigma_max,
                         "rho": cfg.rho},
            "training_noise": {"p_mean": cfg.p_mean, "p_std": cfg.p_std, "sigma_offset_noise": cfg.sigma_offset_noise,
                               "train_sigma_min": cfg.train_sigma_min, "train_sigma_max": cfg.train_sigma_max}}
    return out, info


def peer_side(args, conditioning_frames: int) -> dict:
    cmd = [args.peer_python, os.path.join(ROOT, "scripts", "bench_diamond_peer.py"), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--action-size", str(args.action_size), "--size", args.size,
           "--denoiser-batch", str(args.denoiser_batch), "--reward-batch", str(args.reward_batch),
           "--ac-batch", str(args.ac_batch), "--imagine-batch", str(args.imagine_batch),
           "--horizon", str(args.horizon), "--conditioning-frames", str(conditioning_frames)]
    return run_peer(cmd)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--action-size", type=int, default=6)
    p.add_argument("--denoiser-batch", type=int, default=32)
    p.add_argument("--reward-batch", type=int, default=32)
    p.add_argument("--ac-batch", type=int, default=32)
    p.add_argument("--imagine-batch", type=int, default=8)
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--size", choices=("default", "tiny"), default="default")
    p.add_argument("--autocast", choices=("off", "bf16"), default="off",
                   help="distwm's DiamondConfig.autocast (bf16 needs a GPU or a CPU with native bf16; the peer runs float32)")
    p.add_argument("--peer-python", default=os.path.join(ROOT, ".peer-venv", "bin", "python"))
    p.add_argument("--skip-peer", action="store_true", help="time distwm only")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    print(f"distwm side ({args.size}, {args.threads} threads) ...", file=sys.stderr)
    load = {"start": os.getloadavg()[0]}
    ours, info = distwm_side(args)
    load["after_distwm"] = os.getloadavg()[0]
    L = info["conditioning_frames"]
    result = {"threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "shapes": {**{k: getattr(args, k) for k in ("denoiser_batch", "reward_batch", "ac_batch",
                                                           "imagine_batch", "horizon", "size", "action_size")},
                         "conditioning_frames": L, "reward_sequence_steps": L + args.horizon,
                         "denoising_steps": info["sampling"]["steps"]},
              "load_average_1min": load, "distwm_speed": {"autocast": args.autocast}, "distwm": ours,
              "distwm_info": info}
    if not args.skip_peer:
        print("peer side (simulusion) ...", file=sys.stderr)
        peer = peer_side(args, L)
        load["after_peer"] = os.getloadavg()[0]
        result["peer"] = {k: peer[k] for k in ours}
        result["ratios"] = speed_ratios(ours, {k: peer[k] for k in ours})
        result["peer_info"] = {k: peer.get(k) for k in ("peer", "torch", "config", "cpu_s", "actor_critic_parts_s")}
        result["peer_notes"] = peer.get("notes")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
