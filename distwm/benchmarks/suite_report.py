"""Suite reports: normalised scores of several agents over many tasks, aggregated with
stratified-bootstrap CIs, compared pairwise, and set beside published agents.

``agent_scores`` is ``{agent: {task: [run scores]}}`` with raw returns. The report::

    {"kind": "suite_report", "suite": "atari" | "dmc" | None, "normalized": bool,
     "score_name": "human-normalised score" | "score / 1000" | "return",
     "metrics": [...], "alpha": 0.05, "num_samples": ..., "seed": ...,
     "agents": {agent: {"per_task": {task: {"runs", "raw_runs", "mean"}},
                        "aggregate": {metric: {"estimate", "ci_lower", "ci_upper"},
                                      "num_tasks", "num_runs"},
                        "performance_profile": {"taus", "profile", "ci_lower", "ci_upper"}}},
     "probability_of_improvement": {"A > B": {"estimate", "ci_lower", "ci_upper",
                                              "tasks": [...]}}}
"""

from __future__ import annotations

import glob
import itertools
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from distwm.benchmarks.metrics import (
    DEFAULT_METRICS,
    compute_suite_metrics,
    performance_profile,
    probability_of_improvement,
)
from distwm.benchmarks.normalization import infer_suite, normalize_scores

__all__ = [
    "compute_suite_report",
    "collect_scores",
    "load_results_dir",
    "published_agent_scores",
    "write_report",
]

SCORE_NAMES = {"atari": "human-normalised score", "dmc": "score / 1000", None: "return"}


def _suite_of_tasks(tasks: Iterable[str]) -> str:
    suites = {infer_suite(t) for t in tasks}
    if len(suites) != 1:
        raise ValueError(f"tasks mix suites {sorted(suites)}; report one suite at a time")
    return suites.pop()


def compute_suite_report(agent_scores: Mapping[str, Mapping[str, Sequence[float]]],
                         suite: str | None = None, normalize: bool = True,
                         metrics: Sequence[str] = DEFAULT_METRICS,
                         taus: Sequence[float] | None = None, num_samples: int = 2000,
                         alpha: float = 0.05, seed: int | None = 0) -> dict[str, Any]:
    """Aggregate every agent's scores (normalised unless ``normalize=False``); see module doc."""
    if not agent_scores:
        raise ValueError("agent_scores is empty: no agent to report")
    if normalize and suite is None:
        suite = _suite_of_tasks(t for scores in agent_scores.values() for t in scores)
    normalized = {}
    for agent, raw in agent_scores.items():
        if not raw:
            raise ValueError(f"agent {agent!r} has no task scores")
        if normalize:
            normalized[agent] = normalize_scores(raw, suite)
            raw_by_name = dict(zip(normalized[agent], raw.values()))
        else:
            normalized[agent] = {t: [float(v) for v in runs] for t, runs in raw.items()}
            raw_by_name = raw
        normalized[agent] = {"scores": normalized[agent], "raw": raw_by_name}
    if taus is None:
        top = max(max(max(r) for r in d["scores"].values()) for d in normalized.values())
        taus = np.linspace(0.0, max(1.0, float(top)), 101)
    report: dict[str, Any] = {
        "kind": "suite_report", "suite": suite if normalize else None, "normalized": normalize,
        "score_name": SCORE_NAMES[suite if normalize else None], "metrics": list(metrics),
        "alpha": alpha, "num_samples": num_samples, "seed": seed, "agents": {},
        "probability_of_improvement": {},
    }
    for agent, data in normalized.items():
        scores = data["scores"]
        report["agents"][agent] = {
            "per_task": {
                t: {"runs": list(runs), "raw_runs": [float(v) for v in data["raw"][t]],
                    "mean": float(np.mean(runs))}
                for t, runs in scores.items()
            },
            "aggregate": compute_suite_metrics(scores, metrics, num_samples, alpha, seed),
            "performance_profile": performance_profile(scores, taus, num_samples, alpha, seed),
        }
    for a, b in itertools.combinations(normalized, 2):
        common = sorted(set(normalized[a]["scores"]) & set(normalized[b]["scores"]))
        if not common:
            continue
        poi = probability_of_improvement(
            {t: normalized[a]["scores"][t] for t in common},
            {t: normalized[b]["scores"][t] for t in common}, num_samples, alpha, seed)
        report["probability_of_improvement"][f"{a} > {b}"] = {**poi, "tasks": common}
    return report


def collect_scores(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """``{agent: {task: per-seed mean returns}}`` from BenchmarkRunner results (failed seeds
    are not scores and are left out; a result without any successful seed raises)."""
    out: dict[str, dict[str, list[float]]] = {}
    for result in results:
        agent, task = str(result.get("agent")), str(result.get("env"))
        means = [r["mean"] for r in result["seeds"].values() if r.get("status") == "ok"]
        if not means:
            causes = "; ".join(f"seed {f['seed']}: {f['error']}" for f in result.get("failures", []))
            raise ValueError(f"{agent} on {task} has no successful seed ({causes})")
        out.setdefault(agent, {}).setdefault(task, []).extend(means)
    return out


def load_results_dir(path: str) -> list[dict[str, Any]]:
    """Every ``benchmark_results.json`` under ``path`` (recursively), loaded."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"results directory not found: {path!r}")
    files = sorted(glob.glob(os.path.join(path, "**", "benchmark_results.json"), recursive=True))
    if not files:
        raise FileNotFoundError(f"no benchmark_results.json under {path!r}")
    out = []
    for file in files:
        with open(file, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def published_agent_scores(agents: Sequence[str], suite: str = "atari100k",
                           reference_dir=None) -> dict[str, dict[str, list[float]]]:
    """Raw published scores ``{agent: {task: runs}}`` to put beside distwm's.

    Atari 100k agents come from ``atari100k/{AGENT}.json``; ``dreamerv3`` (any suite with
    curves: ``atari100k``, ``dmc_proprio``, ``dmc_vision``) from the final point of each
    published DreamerV3 curve.
    """
    from distwm.benchmarks.reference import (
        curve_final_scores,
        load_published_curves,
        load_published_scores,
    )

    out = {}
    for agent in agents:
        if agent.lower() == "dreamerv3":
            out[agent] = curve_final_scores(load_published_curves(suite, "dreamerv3", reference_dir))
        else:
            out[agent] = load_published_scores(agent, suite, reference_dir)
    return out


def write_report(report: Mapping[str, Any], out_dir: str, stem: str = "report") -> dict[str, str]:
    """Write the report as JSON, CSV, markdown, LaTeX and two PNG plots; returns the paths."""
    from distwm.benchmarks import plots, result_tables

    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "json": os.path.join(out_dir, f"{stem}.json"),
        "csv": result_tables.export_csv(report, os.path.join(out_dir, f"{stem}.csv")),
        "md": result_tables.export_markdown(report, os.path.join(out_dir, f"{stem}.md")),
        "tex": result_tables.export_latex(report, os.path.join(out_dir, f"{stem}.tex"),
                                      caption="Aggregate benchmark results"),
        "performance_profile": plots.plot_performance_profiles(
            {a: d["performance_profile"] for a, d in report["agents"].items()},
            os.path.join(out_dir, f"{stem}_performance_profile.png"),
            xlabel=f"{report['score_name']} (tau)"),
        "aggregate_intervals": plots.plot_aggregate_intervals(
            {a: d["aggregate"] for a, d in report["agents"].items()},
            os.path.join(out_dir, f"{stem}_aggregate_intervals.png"),
            metrics=report["metrics"], xlabel=report["score_name"]),
    }
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return paths
