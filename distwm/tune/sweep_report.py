"""``distwm report RESULTS_DIR``: aggregate a sweep into IQM reports.

It reads the sweep's Tune experiment (``ExperimentAnalysis``; a local directory or a bucket URI)
and the ``sweep.yaml`` that ``distwm sweep`` saved there. Each trial that finished contributes its
final evaluation return as one run of its task; a trial that failed, was stopped early (ASHA, a
time limit) or has not finished is listed with its cause and left out, never scored as zero.
The statistics are ``distwm.benchmarks``': scores normalised for the suite (human-normalised
Atari, return/1000 for DeepMind Control, raw returns otherwise), IQM / median / mean /
optimality gap with stratified-bootstrap CIs, probability of improvement, performance profiles.
With a reference suite the published agents (``--compare``, default the sweep's ``compare``)
are computed the same way on the same tasks and shown side by side: at the end of their runs
and, for agents with published curves, at the sweep's budget in env frames (``--no-matched-budget``
to leave those rows out; :mod:`distwm.benchmarks.matched_budget`).

Written to ``<out>/`` (default ``<RESULTS_DIR>/report``): ``report.md`` (printed: aggregates,
per-task table, trials), ``trials.csv``, and from ``distwm.benchmarks.suite_report.write_report``:
``report.{json,csv,tex}``, ``report_performance_profile.png``,
``report_aggregate_intervals.png``. Inside a Ray job
(``RAY_ADDRESS`` set) or with ``--address`` the headline numbers are also exported as
``ray.util.metrics`` gauges (``distwm_report_aggregate``), held by a detached actor so that the
dashboard's metrics view keeps them after the job ends.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from distwm.tune.sweep_config import REFERENCE_SUITES, SweepConfig
from distwm.tune.trainable import search_overrides

__all__ = ["TrialOutcome", "load_trial_outcomes", "agent_scores", "build_sweep_report",
           "export_gauges", "SUITE_NORMALISATION"]

#: reference suite -> normalisation suite of ``distwm.benchmarks.normalization``
SUITE_NORMALISATION = {"atari100k": "atari", "dmc_proprio": "dmc", "dmc_vision": "dmc",
                       "crafter": None, "minatar": None}  # None: raw returns
GAUGE_NAME = "distwm_report_aggregate"
GAUGE_ACTOR = "distwm_report_gauges"


@dataclass
class TrialOutcome:
    """One trial as the report sees it. ``score`` is set only for finished trials."""

    agent: str
    game: str
    seed: int
    status: str
    env_steps: int | None
    score: float | None
    cause: str = ""
    #: the trial's final result (its last ``final`` report; empty when it has none)
    result: dict = field(default_factory=dict)


def _agent_label(config: Mapping[str, Any]) -> str:
    overrides = search_overrides(config)
    if not overrides:
        return str(config["agent"])
    parts = ",".join(f"{k.partition('.')[2]}={v:.3g}" if isinstance(v, float) else
                     f"{k.partition('.')[2]}={v}" for k, v in overrides.items())
    return f"{config['agent']}[{parts}]"


def _last_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def trial_status(trial: Any, done: bool, progress: str) -> tuple[str, str]:
    """``(status, cause)`` of a Tune trial for a report: ``done`` (its final result is there),
    ``failed`` (the error's last line), ``stopped`` (at ``progress``, e.g. "4,000 env steps")
    or ``unfinished``."""
    if done:
        return "done", ""
    if trial.status == "ERROR":
        return "failed", _last_line(trial.get_error())
    if trial.status == "TERMINATED":
        return "stopped", f"stopped early at {progress} (scheduler or time limit)"
    return "unfinished", f"{trial.status.lower()}: continue it with `distwm sweep --resume`"


def load_trial_outcomes(results_dir: str) -> list[TrialOutcome]:
    """Every trial of the sweep at ``results_dir`` (sorted by agent, game, seed)."""
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(results_dir)
    except ValueError as exc:
        raise ValueError(f"{results_dir!r} holds no Tune experiment: {exc}") from None
    outcomes = []
    for trial in analysis.trials:
        config, last = trial.config, trial.last_result or {}
        steps = last.get("env_steps")
        done = bool(last.get("final")) and last.get("score") is not None
        status, cause = trial_status(trial, done, f"{steps or 0:,} env steps")
        outcomes.append(TrialOutcome(_agent_label(config), str(config["game"]), int(config["seed"]),
                                     status, steps, float(last["score"]) if done else None, cause,
                                     dict(last) if last.get("final") else {}))
    return sorted(outcomes, key=lambda o: (o.agent, o.game, o.seed))


def agent_scores(outcomes: Iterable[TrialOutcome]) -> dict[str, dict[str, list[float]]]:
    """``{agent: {game: [score per finished seed]}}``."""
    out: dict[str, dict[str, list[float]]] = {}
    for o in outcomes:
        if o.score is not None:
            out.setdefault(o.agent, {}).setdefault(o.game, []).append(o.score)
    return out


def _published(compare: Sequence[str], sweep: SweepConfig, games: Iterable[str],
               notes: list[str] | None = None, matched_budget: bool = True) -> dict:
    """Published agents' raw scores on the sweep's games (canonical names matched): final rows
    and, with ``matched_budget``, rows at the sweep's frame budget
    (:mod:`distwm.benchmarks.matched_budget`); its budget notes are appended to ``notes``."""
    from distwm.benchmarks.matched_budget import published_comparison

    if not compare:
        return {}
    if sweep.suite not in REFERENCE_SUITES:
        what = ("has no reference suite" if sweep.suite is None else
                f"is suite {sweep.suite!r}, which has no published per-game returns"
                + (" (its report sets the published Crafter scores beside ours)"
                   if sweep.suite == "crafter" else ""))
        raise ValueError(
            f"--compare {','.join(compare)}: sweep {sweep.name!r} {what}; compare needs "
            f"`suite:` {', '.join(REFERENCE_SUITES)}"
        )
    budgets, budget_notes = None, []
    if matched_budget:
        try:
            budgets = {label: (sweep.budget.env_steps, repeat)
                       for label, repeat in sweep.action_repeats().items()}
        except ValueError as exc:
            budget_notes = [f"No matched-budget rows: {exc}.", ""]
    comparison = published_comparison(list(compare), sweep.suite, games,
                                      SUITE_NORMALISATION[sweep.suite], budgets)
    if notes is not None:
        notes.extend(budget_notes + comparison.notes)
    return comparison.scores


def _trials_markdown(outcomes: Sequence[TrialOutcome]) -> list[str]:
    lines = ["## Trials", "", "| Agent | Game | Seed | Status | Env steps | Score |",
             "|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.agent} | {o.game} | {o.seed} | {o.status} | "
                     f"{'-' if o.env_steps is None else f'{o.env_steps:,}'} | "
                     f"{'-' if o.score is None else f'{o.score:.2f}'} |")
    unscored = [o for o in outcomes if o.score is None]
    if unscored:
        lines += ["", "## Trials without a score (left out of the aggregates)", "",
                  "| Agent | Game | Seed | Status | Cause |", "|---|---|---|---|---|"]
        lines += [f"| {o.agent} | {o.game} | {o.seed} | {o.status} | "
                  f"{o.cause.replace('|', '/')} |" for o in unscored]
    return lines + [""]


def _write_trials_csv(outcomes: Sequence[TrialOutcome], path: str) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["agent", "game", "seed", "status", "env_steps", "score", "cause"])
        for o in outcomes:
            writer.writerow([o.agent, o.game, o.seed, o.status, o.env_steps, o.score, o.cause])
    return path


def build_sweep_report(results_dir: str, compare: Sequence[str] | None = None,
                       out_dir: str | None = None, num_samples: int = 2000,
                       alpha: float = 0.05, seed: int = 0,
                       matched_budget: bool = True) -> dict[str, Any]:
    """Aggregate the sweep at ``results_dir``; returns ``{"report", "markdown", "paths",
    "trials"}`` (see the module docstring for the files). ``matched_budget``: also set published
    curves beside ours at the sweep's frame budget (:mod:`distwm.benchmarks.matched_budget`)."""
    from distwm.benchmarks.result_tables import render_markdown
    from distwm.benchmarks.suite_report import compute_suite_report, write_report
    from distwm.tune.storage import load_saved_sweep

    sweep = load_saved_sweep(results_dir)
    outcomes = load_trial_outcomes(results_dir)
    ours = agent_scores(outcomes)
    if not ours:
        causes = "; ".join(f"{o.agent} {o.game} seed {o.seed}: {o.status}, {o.cause}" for o in outcomes)
        raise ValueError(f"no trial of {results_dir!r} has a final score ({causes or 'no trials'})")
    games = sorted({g for scores in ours.values() for g in scores})
    notes = []
    if compare is None:  # the sweep's default comparison: skipped, with a note, without data
        compare = list(sweep.compare)
        try:
            published = _published(compare, sweep, games, notes, matched_budget)
        except FileNotFoundError as exc:
            published = {}
            notes = [f"Published agents ({', '.join(compare)}) left out: {exc}", ""]
    else:
        try:
            published = _published(list(compare), sweep, games, notes, matched_budget)
        except FileNotFoundError as exc:
            raise ValueError(f"--compare {','.join(compare)}: {exc}") from None
    scores = {**ours, **published}
    suite = SUITE_NORMALISATION.get(sweep.suite) if sweep.suite else None
    report = compute_suite_report(scores, suite=suite, normalize=suite is not None,
                                  num_samples=num_samples, alpha=alpha, seed=seed)
    report.update(sweep=sweep.name, reference_suite=sweep.suite, results_dir=results_dir)
    out_dir = out_dir or (os.path.join(results_dir, "report") if "://" not in results_dir
                          else os.path.join(os.getcwd(), f"{sweep.name}-report"))
    paths = write_report(report, out_dir, stem="report")  # report.md is rewritten below
    paths["trials_csv"] = _write_trials_csv(outcomes, os.path.join(out_dir, "trials.csv"))
    done = sum(o.score is not None for o in outcomes)
    header = [f"# distwm sweep report: {sweep.name}", "",
              f"Results: `{results_dir}`; {done} of {len(outcomes)} trials scored; "
              f"score = final evaluation return"
              + (f", {report['score_name']} ({sweep.suite})" if suite else " (raw returns)")
              + f"; {round(100 * (1 - alpha))}% stratified-bootstrap CIs over {num_samples} resamples "
              "(IQM: 25% trimmed mean over all runs of all tasks).", "",
              f"Plots: `{os.path.basename(paths['aggregate_intervals'])}`, "
              f"`{os.path.basename(paths['performance_profile'])}`", "", *notes]
    aggregate_md = render_markdown(report).split("\n", 2)[2]  # drop its title line
    markdown = "\n".join(header + [aggregate_md] + _trials_markdown(outcomes))
    if sweep.suite == "crafter":  # Crafter scores beside the published ones (distwm.tune.crafter_report)
        from distwm.tune.crafter_report import crafter_section

        section, paths["crafter_json"] = crafter_section(outcomes, out_dir, num_samples, alpha, seed)
        markdown += "\n" + section
    paths["md"] = os.path.join(out_dir, "report.md")
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown)
    return {"report": report, "markdown": markdown, "paths": paths, "trials": outcomes}


class _GaugeHolder:
    """A detached actor holding the report's gauges (they outlive the reporting job)."""

    def __init__(self) -> None:
        from ray.util.metrics import Gauge

        self.gauge = Gauge(GAUGE_NAME, description="distwm report aggregates (estimate and CI)",
                           tag_keys=("sweep", "agent", "metric", "bound"))

    def set(self, values: list[tuple[dict[str, str], float]]) -> int:
        for tags, value in values:
            self.gauge.set(value, tags=tags)
        return len(values)


def export_gauges(report: Mapping[str, Any], address: str | None = None) -> int:
    """Set ``distwm_report_aggregate{sweep, agent, metric, bound}`` gauges on the Ray cluster
    (connecting to ``address`` when Ray is not initialised); returns how many were set."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto",
                 log_to_driver=False, configure_logging=False)
    values = []
    for agent, data in report["agents"].items():
        for metric in report["metrics"]:
            stats = data["aggregate"][metric]
            for bound in ("estimate", "ci_lower", "ci_upper"):
                tags = {"sweep": str(report.get("sweep", "")), "agent": agent, "metric": metric,
                        "bound": bound}
                values.append((tags, float(stats[bound])))
    holder = ray.remote(num_cpus=0)(_GaugeHolder).options(
        name=GAUGE_ACTOR, namespace="distwm", lifetime="detached", get_if_exists=True).remote()
    return int(ray.get(holder.set.remote(values)))
