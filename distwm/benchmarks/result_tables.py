"""Exporters: CSV (tidy long format), markdown and LaTeX tables of benchmark results.

Three result layouts are understood:

* one :class:`~distwm.benchmarks.runner.BenchmarkRunner` result (has ``"seeds"``);
* ``{agent: runner result}`` from :class:`~distwm.benchmarks.runner.MultiAgentBenchmarkRunner`;
* a suite report from :func:`distwm.benchmarks.suite_report.compute_suite_report`
  (``"kind": "suite_report"``).

The CSV has one row per value, columns ``agent, task, seed, metric, value`` (``seed`` is
``all`` for aggregates, a run index for suite scores); markdown and LaTeX hold a per-seed (or
per-task) table, an aggregate table with confidence intervals, and the recorded failures.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Iterator, Mapping, NamedTuple

__all__ = ["export_csv", "export_markdown", "export_latex", "build_rows", "build_tables",
           "render_markdown", "render_latex", "latex_escape", "Table", "CSV_COLUMNS"]

CSV_COLUMNS = ("agent", "task", "seed", "metric", "value")


class Table(NamedTuple):
    title: str
    headers: list[str]
    rows: list[list[str]]


# -- layouts ---------------------------------------------------------------------------------
def _layout(results: Mapping[str, Any]) -> str:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict")
    if results.get("kind") == "suite_report":
        return "suite"
    if "seeds" in results:
        return "single"
    if all(isinstance(v, Mapping) and "seeds" in v for v in results.values()):
        return "multi"
    raise ValueError(
        "unrecognised results: expected a BenchmarkRunner result (with 'seeds'), a dict "
        "{agent: result}, or a suite report (kind='suite_report'); got keys "
        f"{sorted(map(str, results))[:10]}"
    )


def _runs(results: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if _layout(results) == "single":
        yield str(results.get("agent") or "agent"), results
    else:
        for name, result in results.items():
            yield str(name), result


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}" if abs(value) >= 1e4 else f"{value:.3f}"
    return str(value)


def _ci(stats: Mapping[str, Any], key: str) -> str:
    interval = stats.get(key)
    return f"[{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "-"


def _ci_level(stats: Mapping[str, Any]) -> str:
    return f"{round(100 * stats.get('ci_level', 0.95))}% CI"


# -- tidy rows (CSV) -------------------------------------------------------------------------
_SEED_METRICS = ("mean", "std", "num_episodes", "normalized_mean")
_AGG_METRICS = ("mean", "median", "iqm", "std", "min", "max", "num_seeds", "num_failed")


def build_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows ``{agent, task, seed, metric, value}`` for every value in ``results``."""
    rows: list[dict[str, Any]] = []

    def add(agent, task, seed, metric, value):
        rows.append({"agent": agent, "task": task, "seed": seed, "metric": metric, "value": value})

    if _layout(results) == "suite":
        for agent, data in results["agents"].items():
            for task, entry in data["per_task"].items():
                for i, (norm, raw) in enumerate(zip(entry["runs"], entry["raw_runs"])):
                    add(agent, task, i, "score", norm)
                    add(agent, task, i, "raw_score", raw)
            for metric, stats in data["aggregate"].items():
                if isinstance(stats, Mapping):
                    for key in ("estimate", "ci_lower", "ci_upper"):
                        add(agent, "all", "all", metric if key == "estimate" else f"{metric}_{key}",
                            stats[key])
        for pair, stats in results.get("probability_of_improvement", {}).items():
            for key in ("estimate", "ci_lower", "ci_upper"):
                suffix = "" if key == "estimate" else f"_{key}"
                add(pair, "all", "all", f"probability_of_improvement{suffix}", stats[key])
        return rows

    for agent, result in _runs(results):
        task = result.get("env") or ""
        for seed, record in result["seeds"].items():
            if record.get("status") == "failed":
                add(agent, task, seed, "error", f"{record['stage']}: {record['error']}")
                continue
            for metric in _SEED_METRICS:
                if metric in record:
                    add(agent, task, seed, metric, record[metric])
        aggregate = result.get("aggregate", {})
        for prefix, stats in (("", aggregate), ("normalized_", aggregate.get("normalized", {}))):
            for metric in _AGG_METRICS:
                if metric in stats:
                    add(agent, task, "all", prefix + metric, stats[metric])
            for metric in ("iqm_ci", "mean_ci"):
                if metric in stats:
                    add(agent, task, "all", f"{prefix}{metric}_lower", stats[metric][0])
                    add(agent, task, "all", f"{prefix}{metric}_upper", stats[metric][1])
    return rows


def export_csv(results: Mapping[str, Any], path: str) -> str:
    """Write the tidy CSV (columns ``agent, task, seed, metric, value``); returns ``path``."""
    rows = build_rows(results)
    _ensure_parent(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


# -- tables (markdown, LaTeX) ----------------------------------------------------------------
def build_tables(results: Mapping[str, Any]) -> list[Table]:
    """Human-readable tables of ``results`` (see the module docstring)."""
    if _layout(results) == "suite":
        return _suite_tables(results)
    per_seed, aggregate, failures = [], [], []
    level = "95% CI"
    for agent, result in _runs(results):
        task = result.get("env") or "-"
        for seed, record in result["seeds"].items():
            if record.get("status") == "failed":
                per_seed.append([agent, task, seed, "failed", "-", "-", "-", "-"])
                failures.append([agent, task, seed, record["stage"], record["error"]])
            else:
                per_seed.append([agent, task, seed, "ok", str(record.get("num_episodes", "-")),
                                 _fmt(record["mean"]), _fmt(record["std"]),
                                 _fmt(record["normalized_mean"]) if "normalized_mean" in record
                                 else "-"])
        stats = result.get("aggregate", {})
        if stats.get("num_seeds"):
            level = _ci_level(stats)
            norm = stats.get("normalized")
            aggregate.append([
                agent, task, str(stats["num_seeds"]), str(stats.get("num_failed", 0)),
                _fmt(stats["mean"]), _fmt(stats["median"]), _fmt(stats["iqm"]),
                _ci(stats, "iqm_ci"), _ci(stats, "mean_ci"),
                f"{_fmt(norm['iqm'])} {_ci(norm, 'iqm_ci')}" if norm else "-",
            ])
        else:
            aggregate.append([agent, task, "0", str(stats.get("num_failed", 0))] + ["-"] * 6)
    tables = [
        Table("Per-seed returns",
              ["Agent", "Env", "Seed", "Status", "Episodes", "Mean return", "Std", "Normalised"],
              per_seed),
        Table("Aggregate over seeds",
              ["Agent", "Env", "Seeds", "Failed", "Mean", "Median", "IQM", f"IQM {level}",
               f"Mean {level}", f"Normalised IQM [{level}]"],
              aggregate),
    ]
    if failures:
        tables.append(Table("Failures", ["Agent", "Env", "Seed", "Stage", "Cause"], failures))
    return tables


def _suite_tables(report: Mapping[str, Any]) -> list[Table]:
    agents = list(report["agents"])
    tasks = sorted({t for a in agents for t in report["agents"][a]["per_task"]})
    per_task = []
    for task in tasks:
        row = [task]
        for agent in agents:
            entry = report["agents"][agent]["per_task"].get(task)
            row.append(_fmt(entry["mean"]) if entry else "-")
        per_task.append(row)
    metrics = list(report.get("metrics", []))
    level = f"{round(100 * (1 - report.get('alpha', 0.05)))}% CI"
    aggregate = []
    for agent in agents:
        agg = report["agents"][agent]["aggregate"]
        aggregate.append([agent, str(agg.get("num_tasks", "-")), str(agg.get("num_runs", "-"))] + [
            f"{_fmt(agg[m]['estimate'])} [{_fmt(agg[m]['ci_lower'])}, {_fmt(agg[m]['ci_upper'])}]"
            for m in metrics
        ])
    score = report.get("score_name", "score")
    tables = [
        Table(f"Per-task mean {score}", ["Task"] + agents, per_task),
        Table(f"Aggregate {score} ({level})", ["Agent", "Tasks", "Runs"] + metrics, aggregate),
    ]
    poi = report.get("probability_of_improvement", {})
    if poi:
        tables.append(Table(
            f"Probability of improvement ({level})", ["Comparison", "P(X > Y)", level],
            [[pair, _fmt(s["estimate"]), f"[{_fmt(s['ci_lower'])}, {_fmt(s['ci_upper'])}]"]
             for pair, s in poi.items()],
        ))
    return tables


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(results: Mapping[str, Any]) -> str:
    lines = ["# Benchmark results", ""]
    for table in build_tables(results):
        lines += [f"## {table.title}", "",
                  "| " + " | ".join(_md_cell(h) for h in table.headers) + " |",
                  "|" + "|".join("---" for _ in table.headers) + "|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
        lines.append("")
    return "\n".join(lines)


def export_markdown(results: Mapping[str, Any], path: str) -> str:
    """Write markdown tables of ``results``; returns ``path``."""
    _ensure_parent(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_markdown(results))
    return path


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: Any) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def render_latex(results: Mapping[str, Any], caption: str = "Benchmark results") -> str:
    blocks = []
    for table in build_tables(results):
        spec = "l" * 2 + "r" * (len(table.headers) - 2) if len(table.headers) > 2 else "l" * len(table.headers)
        body = [r"\begin{table}[ht]", r"\centering", r"\small",
                rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                " & ".join(latex_escape(h) for h in table.headers) + r" \\", r"\midrule"]
        body += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
        body += [r"\bottomrule", r"\end{tabular}",
                 rf"\caption{{{latex_escape(caption)}: {latex_escape(table.title.lower())}}}",
                 r"\end{table}"]
        blocks.append("\n".join(body))
    header = "% Generated by distwm.benchmarks.result_tables; needs \\usepackage{booktabs}\n"
    return header + "\n\n".join(blocks) + "\n"


def export_latex(results: Mapping[str, Any], path: str, caption: str = "Benchmark results") -> str:
    """Write booktabs LaTeX tables of ``results``; returns ``path``."""
    _ensure_parent(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_latex(results, caption))
    return path


def _ensure_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
