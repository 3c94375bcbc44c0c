"""What a sweep of a dataset-trained model (:mod:`distwm.tune.data_sweep`) left: the trial
table ``distwm sweep`` prints (:func:`sweep_outcome`) and ``distwm report RESULTS_DIR``.

The report reads the Tune experiment and its ``sweep.yaml``. Every trial is listed with its status and
final metrics (the last training metrics ``train/*``, the model's last report scalars
``report/*``, ``loss``/``score``); a trial that failed, stopped early or has not finished is
listed with its cause and left out of the aggregates. Per data set and search point, the
sweep's metric (``tune.metric``) is aggregated over the seeds: mean, standard deviation and a
bootstrap confidence interval of the mean (:func:`distwm.benchmarks.metrics.compute_aggregate_metrics`),
best first by ``tune.mode``. There are no published scores to set beside these: the papers'
numbers are ImageNet-scale (FID-50K, linear probes) and not comparable.

Written to ``<out>/`` (default ``<RESULTS_DIR>/report``): ``report.md`` (printed),
``aggregates.csv``, ``trials.csv`` (every final metric) and ``report.json``.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from distwm.tune.data_sweep import DataSweepConfig
from distwm.tune.sweep import SweepOutcome, _saved_statuses
from distwm.tune.trainable import REPORT_PREFIX
from distwm.tune.sweep_report import trial_status

__all__ = ["search_point", "format_point", "trial_label", "DataSweepOutcome", "sweep_outcome",
           "DataTrialOutcome", "FINAL_KEYS", "PUBLISHED_NOTES", "load_data_trial_outcomes",
           "aggregate_data_trials", "write_data_sweep_report", "build_data_sweep_report"]

#: final-result keys a data-parallel trial writes, besides ``train/*`` and ``report/*``
FINAL_KEYS = ("score", "loss", "updates_per_s", "time_total_s")
#: why there is nothing published to compare with, by model family
PUBLISHED_NOTES = {
    "dit": "the DiT paper reports FID-50K on ImageNet 256x256 and 512x512 (an Inception-v3 "
           "feature extractor, models up to 675M parameters trained for millions of steps); "
           "the sample class accuracy and Frechet distance here are measured with a classifier "
           "trained in the run itself, so they are relative measures for one data set.",
    "jepa": "I-JEPA reports ImageNet-1K linear-probe and low-shot accuracies of ViT-H/14 and "
            "larger after hundreds of epochs; the probe accuracies here are of small ViTs on "
            "small data sets.",
    "genie": "Genie reports FVD and delta-PSNR of an 11B-parameter model trained on 30k hours "
             "of Platformers video; these runs are small models on collected clips.",
}
_GENERIC_NOTE = "the published results of this model family are at far larger scales."


# -- trials and the table `distwm sweep` prints ---------------------------------------------

def search_point(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config's searched values as ``{"model_config.X": v, "data_parallel.Y": w}``."""
    point = {f"model_config.{k}": v for k, v in (config.get("model_config") or {}).items()}
    point.update({f"data_parallel.{k}": v for k, v in (config.get("data_parallel") or {}).items()
                  if k not in ("data", "seed")})
    return dict(sorted(point.items()))


def format_point(point: Mapping[str, Any]) -> str:
    """``LR=0.000316,DROP=0.1`` (``-`` for none)."""
    return ",".join(f"{k.partition('.')[2]}={v:.3g}" if isinstance(v, float) else
                    f"{k.partition('.')[2]}={v}" for k, v in point.items()) or "-"


def trial_label(config: Mapping[str, Any]) -> str:
    """``<data set>-s<seed>`` and the searched values, ``sklearn-digits-16-s0[LR=0.001]``."""
    from distwm.datasets.training_data import source_name

    dp = config.get("data_parallel") or {}
    point = search_point(config)
    return (f"{source_name(str(dp.get('data', '?')))}-s{dp.get('seed', '?')}"
            + (f"[{format_point(point)}]" if point else ""))


class DataSweepOutcome(SweepOutcome):
    """What a data sweep left: one row per trial (``trial``, ``status``: ``DONE``, ``STOPPED``,
    ``ERROR`` or ``UNFINISHED``, ``updates``, ``metric``, ``error``), best first."""

    def __init__(self, path: str, rows: list[dict[str, Any]], metric: str):
        super().__init__(path, rows)
        self.HEADERS = ("trial", "status", "updates", metric, "error")

    def table_rows(self) -> list[tuple[str, ...]]:
        return [(r["trial"], r["status"], "-" if r["updates"] is None else f"{r['updates']:,}",
                 "-" if r["metric"] is None else f"{r['metric']:.4g}", r["error"] or "")
                for r in self.rows]


def sweep_outcome(path: str, result_grid: Any, sweep: DataSweepConfig) -> DataSweepOutcome:
    """The outcome table of a Tune ``ResultGrid`` (statuses as the saved experiment has them)."""
    statuses = _saved_statuses(path, result_grid)
    metric, rows = sweep.tune.metric, []
    for result in result_grid:
        metrics, config, error = result.metrics or {}, result.config or {}, result.error
        cause = str(error).strip().splitlines()[-1] if error is not None and str(error).strip() else ""
        saved = statuses.get(os.path.basename(str(result.path).rstrip("/")), "TERMINATED")
        if saved not in ("TERMINATED", "ERROR"):
            status = "UNFINISHED"
        elif error is not None:
            status = "ERROR"
        else:
            status = "DONE" if metrics.get("final") else "STOPPED"
        value = metrics.get(metric) if metrics.get("final") else None
        rows.append({"trial": trial_label(config) if config else "?", "status": status,
                     "updates": metrics.get("updates"), "metric": value,
                     "error": None if error is None else f"{type(error).__name__}: {cause}"})
    per_cell = sweep.num_grid_trials() // (len(sweep.data_sets()) * len(sweep.seeds))
    expected = Counter({trial_label({"data_parallel": {"data": d, "seed": s}}): per_cell
                        for d in sweep.data_sets() for s in sweep.seeds})
    seen = Counter(r["trial"].partition("[")[0] for r in rows)
    rows += [{"trial": label, "status": "UNFINISHED", "updates": None, "metric": None, "error": None}
             for label in (expected - seen).elements()]  # not created yet when it was stopped
    sign = -1.0 if sweep.tune.mode == "max" else 1.0
    rows.sort(key=lambda r: (r["metric"] is None, sign * (r["metric"] or 0.0), r["trial"]))
    return DataSweepOutcome(path, rows, metric)


# -- the report ------------------------------------------------------------------------------

@dataclass
class DataTrialOutcome:
    """One trial as the report sees it; ``metrics`` (final values) only for finished trials."""

    label: str
    data: str
    seed: int
    point: dict[str, Any]
    status: str  # done | failed | stopped | unfinished
    updates: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    cause: str = ""


def _final_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(result.items())
            if (k in FINAL_KEYS or k.startswith(("train/", REPORT_PREFIX)))
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


def load_data_trial_outcomes(results_dir: str) -> list[DataTrialOutcome]:
    """Every trial of the data sweep at ``results_dir``, sorted by label."""
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(results_dir)
    except ValueError as exc:
        raise ValueError(f"{results_dir!r} holds no Tune experiment: {exc}") from None
    outcomes = []
    for trial in analysis.trials:
        config, last = trial.config or {}, trial.last_result or {}
        updates = last.get("updates")
        status, cause = trial_status(trial, bool(last.get("final")), f"{updates or 0:,} updates")
        metrics = _final_metrics(last) if status == "done" else {}
        dp = config.get("data_parallel") or {}
        outcomes.append(DataTrialOutcome(trial_label(config), str(dp.get("data")), int(dp.get("seed", 0)),
                                         search_point(config), status,
                                         None if updates is None else int(updates), metrics, cause))
    return sorted(outcomes, key=lambda o: o.label)


def aggregate_data_trials(outcomes: Sequence[DataTrialOutcome], metric: str, mode: str = "max",
                          num_samples: int = 2000, alpha: float = 0.05,
                          seed: int = 0) -> list[dict[str, Any]]:
    """One row per (data set, search point) with finished trials that have ``metric``:
    ``data``, ``point``, ``seeds``, ``values`` and ``compute_aggregate_metrics``' mean, std,
    min, max, ``mean_ci`` (``1 - alpha`` bootstrap CI of the mean over seeds), ``num_seeds``;
    best mean first (``mode``), each with its ``rank``."""
    from distwm.benchmarks.metrics import compute_aggregate_metrics

    groups: dict[tuple[str, str], list[DataTrialOutcome]] = {}
    for o in outcomes:
        if o.status == "done" and metric in o.metrics:
            groups.setdefault((o.data, format_point(o.point)), []).append(o)
    rows = []
    for (data, point), members in groups.items():
        members = sorted(members, key=lambda o: o.seed)
        values = [o.metrics[metric] for o in members]
        stats = compute_aggregate_metrics(values, num_samples=num_samples, alpha=alpha, seed=seed)
        rows.append({"data": data, "point": point, "seeds": [o.seed for o in members],
                     "values": values, **{k: stats[k] for k in (
                         "mean", "std", "min", "max", "mean_ci", "num_seeds", "ci_level")}})
    rows.sort(key=lambda r: (-r["mean"] if mode == "max" else r["mean"], r["data"], r["point"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:,d}" if isinstance(value, int) else f"{value:.4g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "/")


def _markdown(sweep: DataSweepConfig, results_dir: str, outcomes: Sequence[DataTrialOutcome],
              rows: Sequence[Mapping[str, Any]], num_samples: int, seed: int) -> str:
    run = sweep.base_run()
    metric, mode = sweep.tune.metric, sweep.tune.mode
    family = run.spec().name.split("-")[0]
    done = [o for o in outcomes if o.status == "done"]
    level = round(100 * rows[0]["ci_level"]) if rows else 95
    lines = [f"# distwm sweep report: {sweep.name}", "",
             f"Dataset-trained sweep of **{run.model}** on Ray Train: "
             f"{run.data_parallel.workers} worker(s) and {run.data_parallel.total_updates:,d} "
             f"updates a trial. Results: `{results_dir}`; {len(done)} of {len(outcomes)} trials "
             f"finished. Ranked by `{metric}` ({'higher' if mode == 'max' else 'lower'} is better).", "",
             f"## {metric} over seeds", "",
             f"Per data set and search point: the mean over seeds, their standard deviation and "
             f"the {level}% bootstrap CI of the mean ({num_samples} resamples of the seeds, "
             f"seed {seed}); best first.", "",
             f"| rank | data | search point | seeds | mean | std | {level}% CI | min | max |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = (f"[{r['mean_ci'][0]:.4g}, {r['mean_ci'][1]:.4g}]" if r["num_seeds"] > 1
              else "- (1 seed)")
        lines.append(f"| {r['rank']} | {_cell(r['data'])} | {_cell(r['point'])} | "
                     f"{', '.join(map(str, r['seeds']))} | {r['mean']:.4g} | {r['std']:.4g} | {ci} | "
                     f"{r['min']:.4g} | {r['max']:.4g} |")
    if not rows:
        lines.append("| - | no finished trial has this metric | | | | | | | |")
    missing = [o for o in done if metric not in o.metrics]
    if missing:
        have = sorted({k for o in missing for k in o.metrics})
        lines += ["", f"{len(missing)} finished trial(s) have no `{metric}` in their final "
                      f"results (they have: {', '.join(have) or 'nothing'}); set `tune.metric` "
                      "to one of these."]
    keys = sorted({k for o in done for k in o.metrics})
    same = {k: done[0].metrics.get(k) for k in keys
            if len(done) > 1 and all(o.metrics.get(k) == done[0].metrics.get(k) for o in done)}
    keys = [k for k in keys if k not in same]
    lines += ["", "## Trials", "", "Final metrics (`train/*`: the last training report, "
              "`report/*`: the model's report at the last checkpoint).", "",
              "| trial | status | updates | " + " | ".join(keys) + " |",
              "|---|---|---|" + "---|" * len(keys)]
    for o in outcomes:
        values = [_number(o.metrics.get(k)) for k in keys]
        lines.append(f"| {_cell(o.label)} | {o.status} | {_number(o.updates)} | "
                     + " | ".join(values) + " |")
    if same:
        lines += ["", "The same in every finished trial: "
                  + ", ".join(f"`{k}` {_number(v)}" for k, v in same.items()) + "."]
    unscored = [o for o in outcomes if o.status != "done"]
    if unscored:
        lines += ["", "Left out of the aggregates:", ""]
        lines += [f"- {o.label}: {o.status}, {o.cause}" for o in unscored]
    lines += ["", "## Published scores", "",
              f"No published scores exist at these scales: {PUBLISHED_NOTES.get(family, _GENERIC_NOTE)}",
              ""]
    return "\n".join(lines)


def _write_csv(path: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
    return path


def write_data_sweep_report(sweep: DataSweepConfig, outcomes: Sequence[DataTrialOutcome],
                            out_dir: str, results_dir: str = "", num_samples: int = 2000,
                            alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Aggregate ``outcomes`` of ``sweep`` and write the files into ``out_dir``; returns
    ``{"report", "markdown", "paths"}``."""
    rows = aggregate_data_trials(outcomes, sweep.tune.metric, sweep.tune.mode, num_samples,
                                 alpha, seed)
    markdown = _markdown(sweep, results_dir, outcomes, rows, num_samples, seed)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"markdown": os.path.join(out_dir, "report.md")}
    with open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(markdown)
    paths["aggregates_csv"] = _write_csv(
        os.path.join(out_dir, "aggregates.csv"),
        ["rank", "data", "search_point", "metric", "num_seeds", "mean", "std", "ci_lower",
         "ci_upper", "min", "max", "seeds"],
        [[r["rank"], r["data"], r["point"], sweep.tune.metric, r["num_seeds"], r["mean"], r["std"],
          r["mean_ci"][0], r["mean_ci"][1], r["min"], r["max"], " ".join(map(str, r["seeds"]))]
         for r in rows])
    keys = sorted({k for o in outcomes for k in o.metrics})
    paths["trials_csv"] = _write_csv(
        os.path.join(out_dir, "trials.csv"),
        ["trial", "data", "seed", "search_point", "status", "updates", *keys, "cause"],
        [[o.label, o.data, o.seed, format_point(o.point), o.status, o.updates,
          *[o.metrics.get(k) for k in keys], o.cause] for o in outcomes])
    report = {"kind": "data_sweep_report", "sweep": sweep.name, "results_dir": results_dir,
              "metric": sweep.tune.metric, "mode": sweep.tune.mode, "aggregates": rows,
              "trials": [asdict(o) for o in outcomes], "published": None}
    paths["json"] = os.path.join(out_dir, "report.json")
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)
    return {"report": report, "markdown": markdown, "paths": paths}


def build_data_sweep_report(results_dir: str, out_dir: str | None = None, num_samples: int = 2000,
                            alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """The report of the data sweep at ``results_dir`` (see the module docstring)."""
    from distwm.tune.data_sweep import load_saved_data_sweep

    sweep = load_saved_data_sweep(results_dir)
    outcomes = load_data_trial_outcomes(results_dir)
    if not outcomes:
        raise ValueError(f"the sweep at {results_dir!r} has no trials yet")
    out_dir = out_dir or (os.path.join(results_dir, "report") if "://" not in results_dir
                          else os.path.join(os.getcwd(), f"{sweep.name}-report"))
    return write_data_sweep_report(sweep, outcomes, out_dir, results_dir, num_samples, alpha, seed)
