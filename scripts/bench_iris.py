#!/usr/bin/env python
"""IRIS update times and imagination throughput: distwm vs the peer ``simulusion`` 1.1.0, side by
side in one run, as ratios (peer time / distwm time; > 1 means distwm is faster).

Both sides get random data of the same shapes at the paper's sizes (tokenizer 512 x 512 codes,
16 tokens per 64x64 frame; GPT 10 x 4 heads x 256; actor-critic on reconstructions), the same
torch thread count and ``OMP_WAIT_POLICY`` (set it in the environment; it is passed on):

* tokenizer: one update on ``--tokenizer-batch`` frames;
* world model: one update on ``--wm-batch`` sequences of ``--seq-len`` steps (tokenizing them
  included);
* actor-critic: one update as each trainer does it: reconstruct ``--ac-batch`` x 20 burn-in
  frames, imagine ``--horizon`` steps, the REINFORCE / value step;
* imagination: imagined env steps per second of one rollout of ``--horizon`` transitions from
  ``--imagine-batch`` frames.

The peer runs in its own virtualenv (``--peer-python``, default ``.peer-venv/bin/python``;
``python3.11 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 simulusion==1.1.0``)
through ``scripts/bench_iris_peer.py``; distwm never imports it. Neither side has the LPIPS
term (no pretrained weights here). Prints one JSON object.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_iris.py --threads 1 --repeats 1
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_iris.py --autocast bf16 --channels-last  # distwm's fast path

``--autocast`` / ``--channels-last`` set distwm's speed switches (the peer has none; it runs float32).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from bench_timing import median_seconds, run_peer, speed_ratios

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def distwm_side(args) -> dict:
    import torch

    import distwm
    from distwm.models.iris_agent import IRISAgent

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    speed = {"autocast": args.autocast, "channels_last": args.channels_last}
    cfg = distwm.create_config("iris").replace(seq_len=args.seq_len, imagine_horizon=args.horizon,
                                               burn_in=args.burn_in, **speed)
    if args.size == "tiny":
        from distwm.models.iris.core import IRISCore

        cfg = IRISCore.tiny_test_config(cfg).replace(seq_len=args.seq_len, imagine_horizon=args.horizon,
                                                     burn_in=args.burn_in, **speed)
    agent = IRISAgent(cfg, args.action_size, "cpu")
    rng = np.random.default_rng(0)
    frames = lambda *shape: torch.from_numpy(rng.integers(0, 256, (*shape, 3, 64, 64), dtype=np.uint8))  # noqa: E731
    tok = frames(args.tokenizer_batch)
    wm = frames(args.wm_batch, args.seq_len)
    actions = torch.from_numpy(rng.integers(0, args.action_size, (args.wm_batch, args.seq_len)))
    rewards = torch.from_numpy(rng.choice([-1.0, 0.0, 1.0], (args.wm_batch, args.seq_len), p=[0.05, 0.9, 0.05]))
    ends = torch.from_numpy((rng.random((args.wm_batch, args.seq_len)) < 0.01).astype(np.int64))
    burn_in, start = frames(args.ac_batch, args.burn_in), frames(args.ac_batch)
    imagine_start = frames(args.imagine_batch)

    def actor_critic():
        rollout = agent.imagine_rollout(start, args.horizon, burn_in_frames=burn_in)
        agent.update_actor_critic(rollout)

    out = {"tokenizer_update_s": median_seconds(lambda: agent.update_autoencoder(tok), args.repeats),
           "world_model_update_s": median_seconds(lambda: agent.update_transformer(wm, actions, rewards, ends),
                                                   args.repeats),
           "actor_critic_update_s": median_seconds(actor_critic, args.repeats),
           # horizon + 1 policy steps = horizon imagined transitions, as the peer counts them
           "imagine_s": median_seconds(lambda: agent.imagine_rollout(imagine_start, args.horizon + 1), args.repeats)}
    out["imagined_steps_per_s"] = args.imagine_batch * args.horizon / out["imagine_s"]
    return out


def peer_side(args) -> dict:
    cmd = [args.peer_python, os.path.join(ROOT, "scripts", "bench_iris_peer.py"), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--action-size", str(args.action_size), "--size", args.size,
           "--tokenizer-batch", str(args.tokenizer_batch), "--wm-batch", str(args.wm_batch),
           "--ac-batch", str(args.ac_batch), "--imagine-batch", str(args.imagine_batch),
           "--horizon", str(args.horizon), "--seq-len", str(args.seq_len), "--perceptual", "off"]
    return run_peer(cmd)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--action-size", type=int, default=6)
    p.add_argument("--tokenizer-batch", type=int, default=64)
    p.add_argument("--wm-batch", type=int, default=64)
    p.add_argument("--ac-batch", type=int, default=64)
    p.add_argument("--imagine-batch", type=int, default=8)
    p.add_argument("--horizon", type=int, default=20)
    p.add_argument("--burn-in", type=int, default=20)
    p.add_argument("--seq-len", type=int, default=20)
    p.add_argument("--size", choices=("default", "tiny"), default="default")
    p.add_argument("--autocast", choices=("off", "bf16"), default="off",
                   help="distwm's IRISConfig.autocast (bf16 needs a GPU or a CPU with native bf16)")
    p.add_argument("--channels-last", action="store_true", help="distwm's IRISConfig.channels_last")
    p.add_argument("--peer-python", default=os.path.join(ROOT, ".peer-venv", "bin", "python"))
    p.add_argument("--skip-peer", action="store_true", help="time distwm only")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    print(f"distwm side ({args.size}, {args.threads} threads) ...", file=sys.stderr)
    ours = distwm_side(args)
    result = {"threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "shapes": {k: getattr(args, k) for k in ("tokenizer_batch", "wm_batch", "ac_batch", "imagine_batch",
                                                       "horizon", "burn_in", "seq_len", "size")},
              "distwm_speed": {"autocast": args.autocast, "channels_last": args.channels_last},
              "distwm": ours}
    if not args.skip_peer:
        print("peer side (simulusion) ...", file=sys.stderr)
        peer = peer_side(args)
        result["peer"] = {k: peer[k] for k in ours}
        result["ratios"] = speed_ratios(ours, {k: peer[k] for k in ours})
        result["peer_notes"] = peer.get("notes")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
