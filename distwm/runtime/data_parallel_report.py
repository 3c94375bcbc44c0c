"""The data-parallel path's progress line and end-of-run report (``report.md``,
``loss_curve.png``, ``summary.json``), beside the RL runtime's (:mod:`distwm.runtime.run_report`,
whose metrics reader and duration format they use). Torch-free."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from distwm.runtime.run_report import _duration, read_metrics

__all__ = ["format_data_progress", "plot_loss_curve", "write_data_parallel_report"]


def _loss(rec: Mapping[str, Any]) -> float | None:
    """The record's ``train/loss``, or its first ``train/`` metric."""
    if rec.get("train/loss") is not None:
        return rec["train/loss"]
    return next((v for k, v in sorted(rec.items()) if k.startswith("train/") and v is not None), None)


def format_data_progress(rec: Mapping[str, Any], total_updates: int) -> str:
    """One progress line: updates, rates, loss, data wait, restarts, ETA."""
    loss, eta = _loss(rec), rec.get("eta_seconds")
    return (
        f"[distwm] {rec['updates']:>9,d}/{total_updates:,d} updates "
        f"({100 * rec['updates'] / max(total_updates, 1):5.1f}%) | "
        f"{rec['updates_per_s']:6.2f} updates/s | {rec['frames_per_s']:8.1f} frames/s | "
        f"loss {'-' if loss is None else f'{loss:.4g}'} | "
        f"data wait {100 * rec['data_wait']:.0f}% | {rec['workers']} workers | "
        f"restarts {rec['restarts']} | ETA {'-' if eta is None else _duration(eta)}"
    )


def plot_loss_curve(rows: list[dict[str, Any]], path: str, title: str) -> str:
    """Every ``train/*`` metric of ``metrics.jsonl`` against updates (log scale when positive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for row in rows for k in row if k.startswith("train/")})
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    positive = True
    for key in keys:
        points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
        if points:
            xs, ys = zip(*points)
            positive = positive and min(ys) > 0
            ax.plot(xs, ys, label=key[len("train/"):])
    if keys and positive:
        ax.set_yscale("log")
    ax.set_xlabel("updates")
    ax.set_ylabel("training metric (mean over workers)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_data_parallel_report(run_dir: str, summary: Mapping[str, Any]) -> tuple[str, str]:
    """``report.md``, ``loss_curve.png`` and ``summary.json`` in ``run_dir`` from the summary and
    ``metrics.jsonl``; returns the first two paths."""
    rows = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "updates" in r]
    png = plot_loss_curve(rows, os.path.join(run_dir, "loss_curve.png"),
                          f"{summary['model']} on {summary['data_name']}")
    identical = summary.get("replicas_identical")
    lines = [
        f"# distwm run report: {summary['model']} on {summary['data_name']}",
        "",
        f"Run directory: `{summary['run_dir']}`; data: `{summary['data']}`",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| updates | {summary['updates']:,d} of {summary['total_updates']:,d} |",
        f"| updates redone after restarts | {summary['updates_redone']:,d} |",
        f"| wall time (this session) | {_duration(summary['seconds'])} |",
        f"| updates/s (mean, this session) | {summary['updates_per_s']:.2f} |",
        f"| frames/s (all workers) | {summary['frames_per_s']:.1f} |",
        f"| data wait (fraction of worker time) | {100 * summary['data_wait']:.1f}% |",
        f"| layout | {summary['workers']} Ray Train workers on {summary['device']}, "
        f"{summary.get('data_layout') or str(summary['files']) + ' shard files'}; batches {summary['batches']} per worker |",
        f"| worker-group restarts | {summary['restarts']} |",
        f"| replicas identical at the last checkpoint | "
        f"{'-' if identical is None else 'yes' if identical else 'NO'} |",
        f"| resumed | {summary['epoch']} time(s) |",
    ]
    if summary.get("final_metrics"):
        lines += [f"| final {k} | {v:.4g} |" for k, v in summary["final_metrics"].items()]
    lines += ["", "![training curves](loss_curve.png)", ""]
    media = summary.get("media") or {}
    if media.get("images") or media.get("videos"):
        lines += [f"The model's report at {media['updates']:,d} updates:", ""]
        lines += [f"![{name}]({os.path.relpath(path, run_dir)})" for name, path in media.get("images", {}).items()]
        lines += [f"- video: [{name}]({os.path.relpath(path, run_dir)})"
                  for name, path in media.get("videos", {}).items()]
        lines.append("")
    if media.get("scalars"):
        lines += ["| model check | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" for k, v in media["scalars"].items()]
        lines.append("")
    if summary.get("events"):
        lines += ["Restarts:", ""]
        for e in summary["events"]:
            where = f" from `{e['restored_from']}`" if e.get("restored_from") else " from scratch"
            lines.append(f"- worker group ({e['cause']}) after {e['updates']:,d} updates: restarted"
                         f"{where}; {e['updates_redone']:,d} updates redone")
        lines.append("")
    if summary.get("checkpoint"):
        lines += [f"Last checkpoint: `{summary['checkpoint']}`; continue with "
                  f"`distwm train --resume {summary['run_dir']} --steps N`.", ""]
    md = os.path.join(run_dir, "report.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(os.path.join(run_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(dict(summary), f, indent=1, default=str)
    return md, png
