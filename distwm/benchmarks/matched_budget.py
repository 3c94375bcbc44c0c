"""Published agents beside ours at the end of their runs *and* at our budget.

A sweep often trains for far fewer env frames than the published runs (the quickstart: 4,000
agent steps x action repeat 2 = 8,000 frames; DreamerV3's DMC curves run to 490,000 frames).
Final published scores alone then set a short run beside a finished one. Agents with published
training curves (``dreamerv3_curves/{suite}-{agent}.json.gz``, whose ``xs`` count env frames,
action repeat included: Atari 100k curves end near 400,000 frames, DMC proprio near 500,000, DMC
vision near 1,000,000) also get a **matched-budget** row: each published seed's last curve point
at or before our frame budget. The rows are labelled so that they cannot be confused::

    DreamerV3 (published, final at 490,000 frames)               the end of the published runs
    DreamerV3 (published curve at 8,000 frames, matched budget)  the same frames as ours
    IRIS (published, final)                                      final scores only, no curve

There is no matched row, and a note says why, when our budget is at or beyond the curves' end
(the final scores are then the matched comparison) or before a task's first curve point (the
published runs logged nothing that early). :func:`published_comparison` returns the rows and
markdown notes naming every budget: ours, the matched one and the published final.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["PublishedComparison", "published_comparison", "has_published_curves",
           "final_label", "matched_label", "CURVE_AGENTS"]


def final_label(agent: str, final_frames: int | None = None) -> str:
    """``DreamerV3 (published, final at 490,000 frames)``; ``IRIS (published, final)`` without a curve."""
    if final_frames is None:
        return f"{agent} (published, final)"
    return f"{agent} (published, final at {final_frames:,} frames)"


def matched_label(agent: str, frames: int) -> str:
    """``DreamerV3 (published curve at 8,000 frames, matched budget)``."""
    return f"{agent} (published curve at {frames:,} frames, matched budget)"


@dataclass
class PublishedComparison:
    """``scores``: ``{row label: {task: raw runs}}``; ``notes``: markdown lines (the budgets and
    why a matched row is missing); ``budgets``: the same facts as data."""

    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    budgets: dict[str, Any] = field(default_factory=dict)


#: Published agents whose scores come from training curves (``published_agent_scores``).
CURVE_AGENTS = ("dreamerv3",)


def has_published_curves(agent: str, suite: str, reference_dir=None) -> bool:
    """Whether ``agent`` is a curve agent with ``dreamerv3_curves/{suite}-{agent}.json.gz``."""
    from distwm.benchmarks.reference import CURVES_DIR, resolve_reference_dir

    return agent.lower() in CURVE_AGENTS and (
        resolve_reference_dir(reference_dir) / CURVES_DIR / f"{suite}-{agent.lower()}.json.gz"
    ).is_file()


def _select(scores: Mapping[str, Any], wanted: set[str] | None, normalisation: str | None,
            agent: str, suite: str) -> dict[str, Any]:
    """The entries of ``scores`` (keyed by published task name) on the wanted canonical tasks;
    ``ValueError`` naming the tasks the published agent lacks."""
    from distwm.benchmarks.normalization import canonical_task

    if wanted is None:
        return dict(scores)
    kept = {t: v for t, v in scores.items() if canonical_task(t, normalisation) in wanted}
    missing = wanted - {canonical_task(t, normalisation) for t in kept}
    if missing:
        raise ValueError(f"published {agent} has no {suite} results for {sorted(missing)}")
    return kept


def _frames_range(values: Iterable[float]) -> str:
    lo, hi = int(min(values)), int(max(values))
    return f"{lo:,} frames" if lo == hi else f"{lo:,}-{hi:,} frames"


def _matched_row(agent: str, curves: Sequence[dict], frames: int, normalisation: str | None,
                 comparison: PublishedComparison) -> None:
    """Add ``agent``'s matched-budget row at ``frames`` to ``comparison``, or a note saying why
    there is none."""
    from distwm.benchmarks.normalization import canonical_task
    from distwm.benchmarks.reference import curve_final_scores

    info = comparison.budgets["published"][agent]
    curve_end = max(max(c["xs"]) for c in curves)
    if frames >= curve_end:
        info["matched"][frames] = {"row": None, "reason": "beyond the curves' end"}
        comparison.notes.append(
            f"- No matched-budget row for {agent} at {frames:,} frames: our budget is at or beyond "
            f"the end of the published curves ({curve_end:,.0f} frames), so "
            f"`{final_label(agent, int(curve_end))}` is the matched comparison.")
        return
    usable = [c for c in curves if min(c["xs"]) <= frames]
    by_task: dict[str, list[dict]] = {}
    for c in curves:
        by_task.setdefault(canonical_task(c["task"], normalisation), [])
    for c in usable:
        by_task[canonical_task(c["task"], normalisation)].append(c)
    too_early = sorted(t for t, kept in by_task.items() if not kept)
    if too_early:
        first = min(min(c["xs"]) for c in curves
                    if canonical_task(c["task"], normalisation) in too_early)
        info["matched"][frames] = {"row": None, "reason": "before the curves' first point",
                                   "tasks": too_early}
        comparison.notes.append(
            f"- No matched-budget row for {agent} at {frames:,} frames: the published curves of "
            f"{', '.join(too_early)} have no point at or before our budget (their first point is "
            f"at {first:,.0f} frames or later); only the final scores are shown.")
        return
    label = matched_label(agent, frames)
    comparison.scores[label] = curve_final_scores(usable, budget=frames)
    points = [max(x for x in c["xs"] if x <= frames) for c in usable]
    info["matched"][frames] = {"row": label, "points": [min(points), max(points)],
                               "seeds_without_point": len(curves) - len(usable)}
    dropped = (f"; {len(curves) - len(usable)} seed(s) without a point that early are left out"
               if len(usable) < len(curves) else "")
    comparison.notes.append(
        f"- `{label}`: each published seed's last curve point at or before {frames:,} frames "
        f"(points at {_frames_range(points)}), the same number of env frames as ours{dropped}.")


def published_comparison(agents: Sequence[str], suite: str, tasks: Iterable[str] | None = None,
                         normalisation: str | None = None,
                         our_budgets: Mapping[str, tuple[int, int]] | None = None,
                         reference_dir=None) -> PublishedComparison:
    """Published rows to put beside ours.

    ``agents``: published agent names (``DreamerV3``, ``IRIS``, ...); ``suite``: the reference
    suite (``atari100k``, ``dmc_proprio``, ``dmc_vision``); ``tasks``: our task names, matched to
    the published ones by canonical name in ``normalisation`` (``atari`` / ``dmc``; all published
    tasks when None); ``our_budgets``: ``{our agent: (agent steps, action repeat)}``, whose
    product is the frame budget the matched rows use (None: final rows only, no budget notes).
    """
    from distwm.benchmarks.normalization import canonical_task
    from distwm.benchmarks.reference import load_published_curves
    from distwm.benchmarks.suite_report import published_agent_scores

    wanted = None if tasks is None else {canonical_task(t, normalisation) for t in tasks}
    out = PublishedComparison(budgets={"ours": {}, "published": {}})
    frame_budgets: list[int] = []
    if our_budgets is not None:
        out.notes += ["## Budgets", ""]
        for label, (steps, repeat) in our_budgets.items():
            frames = int(steps) * int(repeat)
            out.budgets["ours"][label] = {"agent_steps": int(steps), "action_repeat": int(repeat),
                                          "frames": frames}
            out.notes.append(f"- Ours, `{label}`: {int(steps):,} agent steps x action repeat "
                             f"{int(repeat)} = {frames:,} env frames.")
            if frames not in frame_budgets:
                frame_budgets.append(frames)
    finals = published_agent_scores(list(agents), suite=suite, reference_dir=reference_dir)
    for agent in agents:
        final = _select(finals[agent], wanted, normalisation, agent, suite)
        if not has_published_curves(agent, suite, reference_dir):
            out.scores[final_label(agent)] = final
            out.budgets["published"][agent] = {"final_frames": None, "matched": {}}
            if our_budgets is not None:
                out.notes.append(f"- `{final_label(agent)}`: final scores only; no published "
                                 "curve exists to match our budget.")
            continue
        curves = [c for c in load_published_curves(suite, agent.lower(), reference_dir)
                  if wanted is None or canonical_task(c["task"], normalisation) in wanted]
        ends = [max(c["xs"]) for c in curves]
        label = final_label(agent, int(max(ends)))
        out.scores[label] = final
        out.budgets["published"][agent] = {"final_frames": int(max(ends)), "matched": {}}
        if our_budgets is not None:
            out.notes.append(f"- `{label}`: the last point of each published curve (at "
                             f"{_frames_range(ends)}), the end of the published runs.")
        for frames in frame_budgets:
            _matched_row(agent, curves, frames, normalisation, out)
    if our_budgets is not None:
        out.notes.append("")
    return out
