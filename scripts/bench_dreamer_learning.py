#!/usr/bin/env python
"""DreamerV3 learning curves on CPU, single process: prints (env steps, eval return) and saves
a PNG and a JSON of the curve.

Tasks:

* ``cartpole`` (default): Gymnasium CartPole-v1 with state observations, 50k env steps.
  Target: a mean evaluation return of at least 400 within the budget.
* ``dmc-cartpole-balance`` / ``dmc-cartpole-swingup``: DeepMind Control proprio (state)
  observations, action repeat 2, at whatever budget ``--steps`` gives.

    python scripts/bench_dreamer_learning.py                       # CartPole-v1, 50k steps
    python scripts/bench_dreamer_learning.py --task dmc-cartpole-swingup --steps 30000
    python scripts/bench_dreamer_learning.py --set train_ratio=128 --set model_size=XS

The printed summary states the full config, the wall time, the final evaluation return and
the first evaluation at or above ``--target``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

#: The small DreamerV3 used for CartPole: V3 losses and heads as published, narrower
#: networks than the XS preset, a replay ratio that fits the CPU budget (8x fewer updates per
#: env step than DreamerV3's 512, so the learning rates are higher). Imagination discounts by
#: the continue probability: CartPole's reward is 1 on every step, so whether the pole falls
#: is the only signal, and a thresholded continue flag hides it until the head is sure.
CARTPOLE = dict(
    env="CartPole-v1", env_backend="gym", obs_type="state", action_repeat=1, time_limit=500,
    version="v3", model_size="XS", deter_size=128, num_units=128, num_layers=1,
    stoch_size=16, stoch_classes=16, batch_size=16, train_seq_len=32, train_ratio=64.0,
    seed_steps=1000, model_learning_rate=3e-4, actor_learning_rate=1e-4,
    value_learning_rate=3e-4, imagine_cont="prob", eval_interval=2500, eval_episodes=5,
    checkpoint_interval=0, log_interval=2500, buffer_size=100_000,
)

DMC = dict(
    env_backend="dmc", obs_type="state", action_repeat=2, time_limit=1000, version="v3",
    model_size="XS", deter_size=128, num_units=128, num_layers=1, stoch_size=16,
    stoch_classes=16, batch_size=16, train_seq_len=32, train_ratio=64.0, seed_steps=2000,
    model_learning_rate=3e-4, actor_learning_rate=1e-4, value_learning_rate=3e-4,
    eval_interval=5000, eval_episodes=3, checkpoint_interval=0, log_interval=5000,
    buffer_size=200_000,
)

TASKS = {
    "cartpole": (CARTPOLE, 50_000, 400.0),
    "dmc-cartpole-balance": ({**DMC, "env": "cartpole-balance"}, 30_000, 800.0),
    "dmc-cartpole-swingup": ({**DMC, "env": "cartpole-swingup"}, 30_000, 600.0),
}


def parse_overrides(assignments: list[str]) -> dict:
    import yaml

    out = {}
    for item in assignments:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        key, _, raw = item.partition("=")
        value = yaml.safe_load(raw)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        out[key.strip()] = value
    return out


def save_plot(history, path: str, title: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if history:
        steps, returns = zip(*history)
        ax.plot(steps, returns, marker="o")
    ax.axhline(target, color="grey", linestyle="--", label=f"target {target:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean evaluation return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="cartpole")
    parser.add_argument("--steps", type=int, default=None, help="env step budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=None, help="return to report reaching")
    parser.add_argument("--stop-at-target", action="store_true",
                        help="stop as soon as an evaluation reaches the target")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", default="bench_results/dreamer_learning", help="output directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a DreamerConfig field (repeatable)")
    args = parser.parse_args(argv)

    import torch

    from distwm.configs.dreamer_config import DreamerConfig
    from distwm.models.dreamer import DreamerAgent

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    base, default_steps, default_target = TASKS[args.task]
    steps = args.steps or default_steps
    target = default_target if args.target is None else args.target
    os.makedirs(args.out, exist_ok=True)
    name = f"{args.task}_seed{args.seed}"
    fields = {**base, "seed": args.seed, "total_steps": steps, "exp_name": name,
              "log_dir": args.out, **parse_overrides(args.set)}
    config = DreamerConfig(**fields)
    agent = DreamerAgent(config)
    print(f"task {args.task}: {steps} env steps, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs", flush=True)
    print("config:", json.dumps({k: v for k, v in config.resolved().to_dict().items()
                                 if k in fields or k in ("train_ratio", "discount")}), flush=True)

    if args.stop_at_target:
        original = agent._evaluate_now

        def evaluate_and_stop(dreamer):
            mean = original(dreamer)
            if mean >= target:
                dreamer.env_steps = max(dreamer.env_steps, steps)  # ends the loop
            return mean

        agent._evaluate_now = evaluate_and_stop
    start = time.time()
    summary = agent.train(steps)
    wall = time.time() - start

    history = summary["eval_history"]
    print("\nenv_steps  eval_return")
    for step, ret in history:
        print(f"{step:9d}  {ret:11.1f}")
    reached = next((step for step, ret in history if ret >= target), None)
    png = os.path.join(args.out, f"{name}.png")
    save_plot(history, png, f"DreamerV3 {args.task} (seed {args.seed})", target)
    result = {"task": args.task, "config": config.to_dict(), "wall_time_s": wall,
              "env_steps": summary["env_steps"], "updates": summary["updates"],
              "eval_history": history, "first_step_at_target": reached, "target": target,
              "final_eval_return": history[-1][1] if history else None,
              "last_evals_mean": float(sum(r for _, r in history[-4:]) / len(history[-4:]))
              if history else None,
              "nonfinite_updates": summary["nonfinite_updates"]}
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwall time {wall / 60:.1f} min, {summary['updates']} updates, "
          f"{summary['env_steps']} env steps")
    print(f"final eval return {result['final_eval_return']}, mean of the last "
          f"{len(history[-4:])} evaluations {result['last_evals_mean']}, best "
          f"{max((r for _, r in history), default=float('nan')):.1f}; target {target:g} "
          + (f"first reached at {reached} env steps" if reached is not None else "NOT reached"))
    print(f"curve: {png}")
    return 0 if reached is not None else 1


if __name__ == "__main__":
    sys.exit(main())
