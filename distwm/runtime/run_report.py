"""Progress lines, Ray dashboard gauges and the end-of-run report (markdown + PNG)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterable, Mapping

__all__ = ["format_progress", "DashboardGauges", "read_metrics", "write_report"]

_log = logging.getLogger(__name__)

GAUGES = {
    "env_steps": "env steps collected",
    "updates": "learner updates",
    "env_steps_per_s": "env steps per second (smoothed over progress windows)",
    "updates_per_s": "learner updates per second",
    "replay_ratio": "replayed steps per env step",
    "replay_fill": "replay fill fraction",
    "weight_lag": "learner weight version minus the oldest worker's",
    "learner_idle": "fraction of learner time spent waiting for data",
    "episode_return": "mean return of recent training episodes",
}


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_progress(rec: Mapping[str, Any], total_steps: int) -> str:
    """One progress line: steps, rates, replay ratio, fill, weight lag, return, ETA."""
    ret = rec.get("episode_return")
    eta = rec.get("eta_seconds")
    return (
        f"[distwm] {rec['env_steps']:>9,d}/{total_steps:,d} steps "
        f"({100 * rec['env_steps'] / max(total_steps, 1):5.1f}%) | "
        f"{rec['env_steps_per_s']:7.1f} steps/s | {rec['updates']:,d} updates "
        f"{rec['updates_per_s']:6.2f}/s | ratio {rec['replay_ratio']:.1f}/{rec['target_ratio']:g} | "
        f"fill {100 * rec['replay_fill']:.1f}% | lag {rec['weight_lag']} | "
        f"return {'-' if ret is None else f'{ret:.2f}'} | idle {100 * rec['learner_idle']:.0f}% | "
        f"ETA {'-' if eta is None else _duration(eta)}"
    )


class DashboardGauges:
    """``ray.util.metrics`` gauges (shown in the Ray dashboard's metrics view)."""

    def __init__(self) -> None:
        self._gauges: dict[str, Any] | None = None

    def set(self, rec: Mapping[str, Any]) -> None:
        if self._gauges is None:
            try:
                from ray.util.metrics import Gauge

                self._gauges = {k: Gauge(f"distwm_{k}", description=d) for k, d in GAUGES.items()}
            except Exception as exc:  # pragma: no cover - metrics agent unavailable
                _log.debug("ray metrics unavailable: %s", exc)
                self._gauges = {}
        for key, gauge in self._gauges.items():
            value = rec.get(key)
            if value is not None:
                try:
                    gauge.set(float(value))
                except Exception:  # pragma: no cover
                    pass


def read_metrics(path: str) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` (missing file: no rows)."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def _series(rows: Iterable[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        if key in row and row[key] is not None:
            xs.append(row["step"])
            ys.append(row[key])
    return xs, ys


def plot_learning_curve(rows: list[dict[str, Any]], path: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    xs, ys = _series(rows, "episode_return")
    if xs:
        ax.plot(xs, ys, label="train episode return (mean per log interval)", color="tab:blue")
    xs, ys = _series(rows, "eval/return")
    if xs:
        ax.plot(xs, ys, "o-", label="eval return (explore off)", color="tab:orange")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _achievement_lines(achievements: Mapping[str, Any]) -> list[str]:
    """Success rates of the achievements (Crafter's) over the run's training episodes, and
    the Crafter score when they are Crafter's 22."""
    from distwm.benchmarks.crafter_score import CRAFTER_ACHIEVEMENTS, crafter_score

    rates = achievements["success_rates"]
    score = (f"; Crafter score {crafter_score(rates):.2f}%"
             if set(rates) == set(CRAFTER_ACHIEVEMENTS) else "")
    lines = [f"Achievement success rates (% of the {achievements['episodes']:,d} training episodes "
             f"that unlocked each){score}:", "", "| achievement | success rate (%) |", "| --- | --- |"]
    return lines + [f"| {name} | {rate:.1f} |" for name, rate in sorted(rates.items())] + [""]


def write_report(run_dir: str, summary: Mapping[str, Any]) -> tuple[str, str]:
    """``report.md``, ``learning_curve.png`` and ``summary.json`` (the summary and the best
    evaluation) in ``run_dir`` from the summary and ``metrics.jsonl``; returns the first two
    paths."""
    rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    png = plot_learning_curve(rows, os.path.join(run_dir, "learning_curve.png"),
                              f"{summary['model']} on {summary['env']}")
    evals = [r for r in rows if "eval/return" in r]
    final_eval = summary.get("final_eval")
    lines = [
        f"# distwm run report: {summary['model']} on {summary['env']}",
        "",
        f"Run directory: `{run_dir}`",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| env steps | {summary['env_steps']:,d} of {summary['total_steps']:,d} |",
        f"| learner updates | {summary['updates']:,d} |",
        f"| updates redone after learner restarts | {summary.get('updates_lost', 0):,d} |",
        f"| replay ratio (measured / target) | {summary['replay_ratio']:.2f} / "
        f"{summary['target_ratio']:g} |",
        f"| wall time (this session) | {_duration(summary['seconds'])} |",
        f"| env steps/s (mean) | {summary['env_steps_per_s']:.1f} |",
        f"| updates/s (mean) | {summary['updates_per_s']:.2f} |",
        f"| learner idle (waiting for data) | {100 * summary['learner_idle']:.1f}% |",
        f"| layout | {summary['workers']} workers x {summary['envs_per_worker']} envs, "
        f"{summary['shards']} shards, {summary.get('learners', 1)} learner(s) on "
        f"{summary['learner_device']} |",
        f"| episodes | {summary['episodes']:,d} |",
        f"| restarts (workers / learner / shards / evaluator) | "
        f"{' / '.join(str(summary['restarts'].get(k, 0)) for k in ('worker', 'learner', 'shard', 'evaluator'))} |",
        f"| resumed | {summary['epoch']} time(s) |",
    ]
    if final_eval is not None:
        lines.append(f"| final eval return ({len(final_eval['returns'])} episodes) | "
                     f"{final_eval['return_mean']:.2f} |")
    if evals:
        best = max(evals, key=lambda r: r["eval/return"])
        lines.append(f"| best eval return | {best['eval/return']:.2f} at {best['step']:,d} steps |")
    if summary.get("last_train_return") is not None:
        lines.append(f"| last training return | {summary['last_train_return']:.2f} |")
    lines += ["", "![learning curve](learning_curve.png)", ""]
    if summary.get("achievements"):
        lines += _achievement_lines(summary["achievements"])
    media = summary.get("media") or {}
    if media.get("images"):
        lines += [f"Open-loop predictions at {media['env_steps']:,d} env steps (per sequence: real "
                  "frames, the model's frames, their difference; the first frames are observed, "
                  "the rest predicted from the actions alone):", ""]
        lines += [f"![{name}]({os.path.relpath(path, run_dir)})" for name, path in media["images"].items()]
        lines += [f"- video: [{name}]({os.path.relpath(path, run_dir)})"
                  for name, path in media.get("videos", {}).items()]
        lines.append("")
    if media.get("scalars"):
        lines += ["| model check | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" for k, v in media["scalars"].items()]
        lines.append("")
    events = summary.get("events") or []
    if events:
        lines += ["Restarts:", ""]
        for e in events:
            where = f" from `{e['restored_from']}`" if e.get("restored_from") else ""
            detail = ""
            if e.get("updates_redone") is not None:
                detail = f"; {e['updates_redone']:,d} updates redone"
            if e.get("restored_steps") is not None:
                detail = (f"; {e['restored_steps']:,d} env steps back in replay "
                          f"({e.get('restored_log_steps', 0):,d} from its log)")
            lines.append(f"- {e['role']} {e['index']} ({e['cause']}) at {e['env_steps']:,d} steps, "
                         f"{e['updates']:,d} updates: restarted{where}{detail}")
        lines.append("")
    audit = summary.get("replay_audit")
    if audit:
        verdict = "all in replay" if audit["missing"] == 0 else f"{audit['missing']:,d} MISSING"
        lines += [f"Replay audit: {audit['acked_chunks']:,d} chunks acknowledged by the shards, "
                  f"{verdict}.", ""]
    if summary.get("checkpoint"):
        lines += [f"Last checkpoint: `{summary['checkpoint']}`; continue with "
                  f"`distwm train --resume {run_dir}`.", ""]
    md = os.path.join(run_dir, "report.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    best = max(evals, key=lambda r: r["eval/return"]) if evals else None
    record = {**summary, "best_eval": None if best is None else
              {"return": best["eval/return"], "step": best["step"]}}
    with open(os.path.join(run_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, default=str)  # the report's numbers, for scripts
    return md, png
