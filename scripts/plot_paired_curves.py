#!/usr/bin/env python
"""Groups of ``bench_dreamer_learning.py`` runs as one curve each: the mean evaluation return over
the group's runs at every evaluation, with the min-max band and each run thin.

    python scripts/plot_paired_curves.py --title "CartPole-v1, seeds 0-4" \\
        "fixes on=docs/benchmarks/dreamer_cartpole_seed[0-4].json" \\
        "fixes off=docs/benchmarks/dreamer_cartpole_fixesoff_seed[0-4].json" \\
        --out docs/benchmarks/dreamer_cartpole_fixes_on_off.png

Prints each group's mean curve as a table. Every run of a group must share the evaluation steps.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys


def load_group(spec: str, budget: float | None = None) -> tuple[str, list[float], list[list[float]]]:
    """``label=glob`` -> ``(label, steps, returns per run)``, each run cut at ``budget`` env steps."""
    label, sep, pattern = spec.partition("=")
    paths = sorted(glob.glob(pattern)) if sep else []
    if not paths:
        raise SystemExit(f"groups are given as label=glob matching run JSON files, got {spec!r}")
    histories = []
    for path in paths:
        with open(path) as f:
            histories.append(json.load(f)["eval_history"])
    if budget is not None:
        histories = [[(x, y) for x, y in history if x <= budget] for history in histories]
    steps = [x for x, _ in histories[0]]
    for path, history in zip(paths, histories):
        if [x for x, _ in history] != steps:
            raise SystemExit(f"{path} has other evaluation steps than {paths[0]}"
                             + ("" if budget is not None else " (--budget cuts longer runs to a common length)"))
    return label, steps, [[y for _, y in history] for history in histories]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="+", metavar="LABEL=GLOB")
    parser.add_argument("--title", default="")
    parser.add_argument("--out", required=True, help="PNG path")
    parser.add_argument("--budget", type=float, default=None,
                        help="leave out evaluations after this many env steps (runs of other lengths)")
    args = parser.parse_args(argv)
    groups = [load_group(spec, args.budget) for spec in args.groups]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, steps, runs), color in zip(groups, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        mean = [sum(col) / len(col) for col in zip(*runs)]
        ax.fill_between(steps, [min(c) for c in zip(*runs)], [max(c) for c in zip(*runs)],
                        color=color, alpha=0.15)
        for run in runs:
            ax.plot(steps, run, color=color, lw=0.6, alpha=0.5)
        ax.plot(steps, mean, color=color, lw=2, label=f"{label} (mean of {len(runs)})")
        print(f"{label}: " + ", ".join(f"{x / 1000:g}k {y:.0f}" for x, y in zip(steps, mean)))
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.set_title(args.title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
