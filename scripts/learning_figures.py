#!/usr/bin/env python
"""Figures of a run directory (``distwm train --config iris-cpu`` / ``diamond-minatar``): the
evaluation curve beside the random agent's score (Atari 100k's published one for ``--game``, or
measured here on ``--random-env`` over ``--random-episodes`` whole episodes) and the family's
published Atari 100k score, as ``<out>.json`` and ``<out>.png``, and the run's last
reconstruction / open-loop / imagination media copied beside them.

    python scripts/learning_figures.py RUN_DIR docs/benchmarks/iris_boxing_cpu --game Boxing
    python scripts/learning_figures.py RUN_DIR docs/benchmarks/diamond_minatar_breakout \
        --model DIAMOND --random-env minatar:breakout --title "DIAMOND (diamond-minatar) on MinAtar Breakout"
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference", "atari100k")


def _published(game: str, name: str):
    path = os.path.join(os.environ.get("DISTWM_REFERENCE_DIR", os.path.dirname(REFERENCE)), "atari100k", f"{name}.json")
    if not os.path.isfile(path):
        return None
    runs = json.load(open(path)).get(game)
    return None if not runs else sum(runs) / len(runs)


def _random_return(env_id: str, episodes: int, seed: int = 0) -> float:
    """Mean return of uniformly random actions over ``episodes`` whole episodes of ``env_id``."""
    import distwm

    env = distwm.make_env(env_id, seed=seed, size=(16, 16))
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        env.action_space.seed(seed + episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + float(reward), terminated or truncated
    return total / episodes


def _copy_scaled(source: str, target: str, scale: int) -> None:
    """Copy an image or GIF, enlarged ``scale`` times by nearest neighbour (an MP4 as it is)."""
    if scale <= 1 or source.endswith(".mp4"):
        shutil.copy(source, target)
        return
    from PIL import Image, ImageSequence

    with Image.open(source) as image:
        frames = [f.convert("RGB").resize((f.width * scale, f.height * scale), Image.NEAREST)
                  for f in ImageSequence.Iterator(image)]
        duration = image.info.get("duration", 100)
    if target.endswith(".gif"):
        frames[0].save(target, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    else:
        frames[0].save(target)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("out")
    p.add_argument("--game", default="Boxing", help="Atari game for the published scores")
    p.add_argument("--model", default="IRIS", help="the family's name in ../shared/reference/atari100k")
    p.add_argument("--random-env", default=None, help="measure the random agent on this env id instead")
    p.add_argument("--random-episodes", type=int, default=100)
    p.add_argument("--title", default=None)
    p.add_argument("--scale", type=int, default=1,
                   help="enlarge the copied images and videos this many times (nearest neighbour)")
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in open(os.path.join(args.run_dir, "metrics.jsonl"))]
    evals = [(r["step"], r["eval/return"]) for r in rows if "eval/return" in r]
    train = [(r["step"], r["episode_return"]) for r in rows if "episode_return" in r]
    # the first step at which the actor-critic trained, and the wall-clock minutes of each evaluation
    actor_start = next((r["step"] for r in rows if r.get("train/actor/training", r.get("train/actor_critic/training"))),
                       None)
    elapsed = [(r["step"], r["elapsed"]) for r in rows if "elapsed" in r]
    eval_minutes = [round(next((e for s, e in elapsed if s >= step), elapsed[-1][1] if elapsed else 0.0) / 60, 1)
                    for step, _ in evals]
    if args.random_env:
        result = {"run_dir": args.run_dir, "env": args.random_env, "eval": evals, "train_returns": train,
                  "random": _random_return(args.random_env, args.random_episodes),
                  "random_episodes": args.random_episodes}
    else:
        result = {"run_dir": args.run_dir, "game": args.game, "eval": evals, "train_returns": train,
                  "random": _published(args.game, "RANDOM"),
                  f"{args.model.lower()}_published_100k": _published(args.game, args.model)}
    result.update(actor_critic_start_step=actor_start, eval_minutes=eval_minutes)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train), ".", alpha=0.3, label="train episodes (per life)")
    if evals:
        ax.plot(*zip(*evals), "o-", label="evaluation (whole games)")
    if result["random"] is not None:
        ax.axhline(result["random"], color="gray", ls="--", label="random")
    if actor_start is not None:
        ax.axvline(actor_start, color="green", ls=":", label="actor-critic starts")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(args.title or f"{args.model} on {args.game}, 2 CPU cores")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=100)
    for kind in ("openloop", "imagination", "reconstruction"):
        files = sorted(glob.glob(os.path.join(args.run_dir, "media", f"{kind}_*")),
                       key=lambda f: int(os.path.splitext(f)[0].rsplit("_", 1)[1]))
        for ext in (".png", ".gif", ".mp4"):
            last = [f for f in files if f.endswith(ext)]
            if last:
                _copy_scaled(last[-1], f"{args.out}_{kind}{ext}", args.scale)
    print(json.dumps({k: v for k, v in result.items() if k != "train_returns"}))
    return result


if __name__ == "__main__":
    main()
