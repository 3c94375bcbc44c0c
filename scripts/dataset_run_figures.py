#!/usr/bin/env python
"""Figures of a dataset-trained run (``distwm train MODEL --data``): the model's report scalars at
every checkpoint (Genie: reconstruction PSNR and Delta_t PSNR; I-JEPA: linear-probe accuracy;
DiT: sample-quality scores) as JSON and a PNG, and the last report's media copied beside them.

    python scripts/dataset_run_figures.py RUN_DIR --out docs/benchmarks/genie_breakout \
        [--title "Genie on Breakout"] [--keys psnr/delta_t psnr/reconstruction]

Writes ``OUT.json`` (run summary, the report rows, wall time), ``OUT.png`` (one panel per report
scalar over updates) and ``OUT_<media name>.<ext>`` (the last checkpoint's images and videos).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil


def report_rows(run_dir: str) -> list[dict]:
    rows = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            scalars = {k[len("report/"):]: v for k, v in row.items() if k.startswith("report/")}
            if scalars:
                rows.append({"updates": row["step"], **scalars})
    return rows


def last_media(run_dir: str) -> dict[str, str]:
    """``{name: path}`` of the newest checkpoint's media (``media/<name>_<updates>.<ext>``)."""
    newest: dict[str, tuple[int, str]] = {}
    for path in glob.glob(os.path.join(run_dir, "media", "*")):
        match = re.match(r"(.+)_(\d+)\.(\w+)$", os.path.basename(path))
        if match:
            name, step = match.group(1), int(match.group(2))
            if step >= newest.get(name, (-1, ""))[0]:
                newest[name] = (step, path)
    return {name: path for name, (_, path) in newest.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("--title", default=None)
    p.add_argument("--keys", nargs="*", default=None, help="report scalars to plot (default all)")
    args = p.parse_args()
    rows = report_rows(args.run_dir)
    if not rows:
        raise SystemExit(f"{args.run_dir}: metrics.jsonl holds no report/* rows (no checkpoint yet?)")
    summary = json.load(open(os.path.join(args.run_dir, "summary.json")))
    keys = args.keys or sorted({k for r in rows for k in r if k != "updates"})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    media = {}
    for name, path in last_media(args.run_dir).items():
        target = f"{args.out}_{name}{os.path.splitext(path)[1]}"
        shutil.copyfile(path, target)
        media[name] = os.path.basename(target)
    result = {"run_dir": args.run_dir, "model": summary.get("model"), "data": summary.get("data"),
              "updates": summary.get("updates"), "seconds": summary.get("total_seconds"),
              "workers": summary.get("workers"), "frames_per_s": summary.get("frames_per_s"),
              "replicas_identical": summary.get("replicas_identical"), "report": rows,
              "media": media}
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["updates"], r[key]) for r in rows if key in r]
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o")
        if key.endswith("delta_t"):
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_title(key)
        ax.set_xlabel("updates")
    fig.suptitle(args.title or f"{result['model']} on {os.path.basename(str(result['data']))}")
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=100)
    print(json.dumps({k: v for k, v in result.items() if k != "report"} | {"last_report": rows[-1]},
                     indent=2))


if __name__ == "__main__":
    main()
