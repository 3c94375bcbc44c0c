#!/usr/bin/env python
"""Learning curves of ``bench_dreamer_learning.py`` runs beside the published DreamerV3 curves.

Plots each run's evaluation returns (a JSON that ``bench_dreamer_learning.py`` wrote) and the
published DreamerV3 seeds of the same DMC task (``../shared/reference/dreamerv3_curves``: their
mean and min-max band) up to the runs' last frame, and prints a table at every published frame
count (10k, 20k, ...): each run's evaluation there (the nearest at or before it) beside the
published seeds' range.

    python scripts/plot_dreamer_curves.py --task cartpole_swingup \\
        before=bench_results/before/dmc-cartpole-swingup_seed0.json \\
        after=bench_results/after/dmc-cartpole-swingup_seed0.json --out docs/benchmarks/swingup.png
"""

from __future__ import annotations

import argparse
import json
import sys


def load_run(spec: str) -> tuple[str, list[tuple[float, float]]]:
    label, sep, path = spec.partition("=")
    if not sep:
        raise SystemExit(f"runs are given as label=path.json, got {spec!r}")
    with open(path) as f:
        history = json.load(f)["eval_history"]
    return label, [(float(x), float(y)) for x, y in history]


def at_or_before(history: list[tuple[float, float]], frame: float) -> float | None:
    before = [y for x, y in history if x <= frame]
    return before[-1] if before else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=JSON")
    parser.add_argument("--task", required=True,
                        help="published DMC proprio task without the suite prefix, e.g. cartpole_swingup")
    parser.add_argument("--suite", default="dmc_proprio")
    parser.add_argument("--out", default="dreamer_curves.png")
    parser.add_argument("--reference-dir", default=None)
    args = parser.parse_args(argv)

    from distwm.benchmarks.reference import load_published_curves

    runs = [load_run(spec) for spec in args.runs]
    name = args.task if args.task.startswith("dmc_") else f"dmc_{args.task}"
    published = [c for c in load_published_curves(args.suite, reference_dir=args.reference_dir)
                 if c["task"] == name]
    if not published:
        tasks = sorted({c["task"] for c in load_published_curves(args.suite, reference_dir=args.reference_dir)})
        raise SystemExit(f"no published curve for {name!r}; tasks: {tasks}")
    last = max(x for _, history in runs for x, _ in history)
    frames = [x for x in published[0]["xs"] if x <= last]

    print(f"{'frames':>8}  " + "  ".join(f"{label:>9}" for label, _ in runs)
          + f"  published DreamerV3 ({len(published)} seeds: min-max, mean)")
    for frame in frames:
        cols = []
        for _, history in runs:
            value = at_or_before(history, frame)
            cols.append(f"{value:9.0f}" if value is not None else f"{'-':>9}")
        ys = [c["ys"][c["xs"].index(frame)] for c in published if frame in c["xs"]]
        print(f"{frame:8.0f}  " + "  ".join(cols)
              + f"  {min(ys):.0f}-{max(ys):.0f}, {sum(ys) / len(ys):.0f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = np.array(frames)
    ys = np.array([[c["ys"][c["xs"].index(x)] for x in frames] for c in published])
    ax.fill_between(xs, ys.min(0), ys.max(0), color="grey", alpha=0.25,
                    label=f"published DreamerV3, {len(published)} seeds (min-max)")
    ax.plot(xs, ys.mean(0), color="grey", linestyle="--", label="published DreamerV3 (mean)")
    for label, history in runs:
        steps, returns = zip(*history)
        ax.plot(steps, returns, marker="o", markersize=3, label=label)
    ax.set_xlabel("env frames")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"DreamerV3 {name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
