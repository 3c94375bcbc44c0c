"""Published agents at our budget beside their final scores: the matched row is the curve value
at the sweep's frame budget (agent steps x action repeat), the labels say which row is which,
and a budget beyond the curves' end or before their first point gives a note, not a failure.
Synthetic curves in a tmp reference folder, plus one check on the real shared curves."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import require_reference

from distwm.benchmarks.matched_budget import final_label, matched_label, published_comparison
from distwm.tune import sweep_report
from distwm.tune.storage import SWEEP_FILE
from distwm.tune.sweep_config import SweepConfig
from distwm.tune.sweep_report import TrialOutcome, build_sweep_report

ROOT = Path(__file__).resolve().parents[1]
XS = [10_000.0, 20_000.0, 40_000.0, 80_000.0]  # env frames
# per seed: a rising curve whose value at each point is distinct (seed s adds s)
CURVE_YS = {"dmc_cartpole_balance": [100.0, 300.0, 600.0, 900.0],
            "dmc_walker_walk": [50.0, 150.0, 400.0, 800.0]}
SEEDS = (0, 1, 2)
IRIS_PONG = [15.0, 17.0, 19.0]


def _ys(task: str, seed: int) -> list[float]:
    return [y + seed for y in CURVE_YS[task]]


@pytest.fixture
def reference(tmp_path, monkeypatch) -> Path:
    from distwm.benchmarks.reference import REFERENCE_ENV_VAR

    folder = tmp_path / "reference"
    (folder / "dreamerv3_curves").mkdir(parents=True)
    (folder / "atari100k").mkdir()
    dmc = [{"task": task, "method": "dreamerv3", "seed": s, "xs": XS, "ys": _ys(task, s)}
           for task in CURVE_YS for s in SEEDS]
    # Atari: xs stored as JSON strings, as in the published files; the seeds log at other frames
    atari = [{"task": "atari_pong", "method": "dreamerv3", "seed": s,
              "xs": json.dumps([1_000.0 + s, 200_000.0 + s, 400_000.0]),
              "ys": json.dumps([-21.0, -5.0 + s, 10.0 + s])} for s in SEEDS]
    for suite, curves in (("dmc_proprio", dmc), ("atari100k", atari)):
        with gzip.open(folder / "dreamerv3_curves" / f"{suite}-dreamerv3.json.gz", "wt") as f:
            json.dump(curves, f)
    (folder / "atari100k" / "IRIS.json").write_text(json.dumps({"Pong": IRIS_PONG}))
    monkeypatch.setenv(REFERENCE_ENV_VAR, str(folder))
    return folder


def _dmc(budget_frames: int, tasks=("cartpole-balance", "walker-walk")):
    return published_comparison(["DreamerV3"], "dmc_proprio", list(tasks), "dmc",
                                {"dreamer": (budget_frames // 2, 2)})


def test_matched_row_is_the_curve_value_at_the_budget_not_the_final(reference):
    comparison = _dmc(20_000)  # 10,000 agent steps x action repeat 2
    final, matched = final_label("DreamerV3", 80_000), matched_label("DreamerV3", 20_000)
    assert final == "DreamerV3 (published, final at 80,000 frames)"
    assert matched == "DreamerV3 (published curve at 20,000 frames, matched budget)"
    assert list(comparison.scores) == [final, matched]
    for task, ys in CURVE_YS.items():
        assert comparison.scores[matched][task] == [ys[1] + s for s in SEEDS]  # the point at 20k
        assert comparison.scores[final][task] == [ys[-1] + s for s in SEEDS]
    # between two points: the last point at or before the budget (never a later one)
    between = _dmc(30_000)
    assert between.scores[matched_label("DreamerV3", 30_000)]["dmc_walker_walk"] == [150.0, 151.0, 152.0]
    notes = "\n".join(comparison.notes)
    assert "10,000 agent steps x action repeat 2 = 20,000 env frames" in notes
    assert f"`{final}`: the last point of each published curve (at 80,000 frames)" in notes
    assert f"`{matched}`: each published seed's last curve point at or before 20,000 frames" in notes
    assert comparison.budgets["ours"]["dreamer"]["frames"] == 20_000


def test_budget_beyond_the_curves_end_gives_only_the_final_row_and_a_note(reference):
    comparison = _dmc(100_000)
    assert list(comparison.scores) == [final_label("DreamerV3", 80_000)]
    notes = "\n".join(comparison.notes)
    assert "No matched-budget row for DreamerV3 at 100,000 frames" in notes
    assert "at or beyond the end of the published curves (80,000 frames)" in notes


def test_budget_before_the_first_point_gives_a_note_not_an_error(reference):
    comparison = _dmc(8_000)  # the quickstart's 4,000 agent steps x 2; the curves start at 10k
    assert list(comparison.scores) == [final_label("DreamerV3", 80_000)]
    notes = "\n".join(comparison.notes)
    assert "No matched-budget row for DreamerV3 at 8,000 frames" in notes
    assert "cartpole-balance, walker-walk have no point at or before our budget" in notes
    assert "10,000 frames" in notes


def test_seeds_without_an_early_point_are_left_out_and_said_so(reference):
    comparison = published_comparison(["DreamerV3"], "atari100k", ["Pong"], "atari",
                                      {"dreamer": (250, 4)})  # 1,000 frames: seed 0 only
    matched = comparison.scores[matched_label("DreamerV3", 1_000)]
    assert matched == {"atari_pong": [-21.0]}
    assert "2 seed(s) without a point that early are left out" in "\n".join(comparison.notes)


def test_agent_without_curves_gets_only_its_final_row_with_a_note(reference):
    comparison = published_comparison(["DreamerV3", "IRIS"], "atari100k", ["ALE/Pong-v5"], "atari",
                                      {"dreamer": (50_000, 4)})  # 200,000 frames
    assert list(comparison.scores) == [final_label("DreamerV3", 400_000),
                                       matched_label("DreamerV3", 200_000), "IRIS (published, final)"]
    assert comparison.scores["IRIS (published, final)"] == {"Pong": IRIS_PONG}
    # seed s logs at 200,000 + s frames: only seed 0 has a point at the budget besides 1,000 + s
    assert comparison.scores[matched_label("DreamerV3", 200_000)]["atari_pong"] == [-5.0, -21.0, -21.0]
    assert ("`IRIS (published, final)`: final scores only; no published curve exists to match "
            "our budget") in "\n".join(comparison.notes)


def test_without_budgets_only_final_rows_and_no_notes(reference):
    comparison = published_comparison(["DreamerV3"], "dmc_proprio", ["cartpole-balance"], "dmc")
    assert list(comparison.scores) == [final_label("DreamerV3", 80_000)]
    assert list(comparison.scores[final_label("DreamerV3", 80_000)]) == ["dmc_cartpole_balance"]
    assert comparison.notes == []


def test_a_task_the_published_agent_lacks_is_named(reference):
    with pytest.raises(ValueError, match=r"published DreamerV3 has no dmc_proprio results for \['cheetah-run'\]"):
        _dmc(20_000, tasks=("cartpole-balance", "cheetah-run"))


def test_action_repeats_of_the_quickstart_and_a_search_over_them():
    quickstart = SweepConfig.load(str(ROOT / "tune_configs" / "quickstart.yaml"))
    assert quickstart.action_repeats() == {"dreamer": 2}
    assert quickstart.budget.env_steps * 2 == 10_000  # the comment's 10,000 frames
    searched = SweepConfig.from_dict({**quickstart.to_dict(),
                                      "search": {"agent.action_repeat": {"choice": [1, 2]}}})
    with pytest.raises(ValueError, match="search varies agent.action_repeat"):
        searched.action_repeats()


@pytest.fixture
def sweep_dir(tmp_path, monkeypatch, reference):
    results = tmp_path / "sweep"
    results.mkdir()
    sweep = SweepConfig.from_dict({
        "name": "matched", "suite": "dmc_proprio", "compare": ["DreamerV3"],
        "agents": {"dreamer": {"model": "dreamer", "agent": {"action_repeat": 2}}},
        "games": ["cartpole-balance", "walker-walk"], "seeds": [0, 1],
        "budget": {"env_steps": 10_000}})  # 20,000 frames
    (results / SWEEP_FILE).write_text(sweep.to_yaml())
    trials = [TrialOutcome("dreamer", game, seed, "done", 10_000, 200.0 + 100 * seed)
              for game in sweep.games for seed in sweep.seeds]
    monkeypatch.setattr(sweep_report, "load_trial_outcomes", lambda path: trials)
    return str(results)


def test_sweep_report_shows_both_rows_and_says_which_is_which(sweep_dir, tmp_path):
    result = build_sweep_report(sweep_dir, out_dir=str(tmp_path / "out"), num_samples=50)
    final, matched = final_label("DreamerV3", 80_000), matched_label("DreamerV3", 20_000)
    agents = result["report"]["agents"]
    assert set(agents) == {"dreamer", final, matched}
    # dmc scores are return / 1000: the matched mean is the curves' 20k points, not the finals
    matched_mean = sum(ys[1] + s for ys in CURVE_YS.values() for s in SEEDS) / 6 / 1000
    assert agents[matched]["aggregate"]["mean"]["estimate"] == pytest.approx(matched_mean)
    assert agents[final]["aggregate"]["mean"]["estimate"] == pytest.approx(
        sum(ys[-1] + s for ys in CURVE_YS.values() for s in SEEDS) / 6 / 1000)
    markdown = result["markdown"]
    assert "## Budgets" in markdown and "= 20,000 env frames" in markdown
    # both rows in the aggregate table and in the per-task table (one row per agent per table)
    assert markdown.count(f"| {matched} |") >= 2 and markdown.count(f"| {final} |") >= 2
    without = build_sweep_report(sweep_dir, out_dir=str(tmp_path / "plain"), num_samples=50,
                                 matched_budget=False)
    assert set(without["report"]["agents"]) == {"dreamer", final}
    assert "## Budgets" not in without["markdown"]


def test_distwm_report_cli_has_the_rows_by_default_and_a_flag_to_leave_them_out(
        sweep_dir, tmp_path, capsys):
    from distwm.cli import main

    assert main(["report", sweep_dir, "--out", str(tmp_path / "a"), "--num-samples", "20",
                 "--no-gauges"]) == 0
    assert matched_label("DreamerV3", 20_000) in capsys.readouterr().out
    assert main(["report", sweep_dir, "--out", str(tmp_path / "b"), "--num-samples", "20",
                 "--no-gauges", "--no-matched-budget"]) == 0
    printed = capsys.readouterr().out
    assert "matched budget" not in printed and final_label("DreamerV3", 80_000) in printed


def test_real_curves_cartpole_balance_matched_is_below_final():
    require_reference("dreamerv3_curves/dmc_proprio-dreamerv3.json.gz")
    quickstart = SweepConfig.load(str(ROOT / "tune_configs" / "quickstart.yaml"))
    steps, repeat = quickstart.budget.env_steps, quickstart.action_repeats()["dreamer"]

    def mean(runs):
        return sum(runs) / len(runs)

    # 4,000 agent steps x 2 = 8,000 frames come before the published curves' first point (10,000)
    early = published_comparison(["DreamerV3"], "dmc_proprio", ["cartpole-balance"], "dmc",
                                 {"dreamer": (4_000, repeat)})
    final = early.scores[final_label("DreamerV3", 490_000)]["dmc_cartpole_balance"]
    assert len(early.scores) == 1
    assert "No matched-budget row for DreamerV3 at 8,000 frames" in "\n".join(early.notes)
    # the quickstart's 5,000 agent steps x 2 = 10,000 frames: the published runs were far from
    # their final score
    matched = published_comparison(["DreamerV3"], "dmc_proprio", ["cartpole-balance"], "dmc",
                                   {"dreamer": (steps, repeat)})
    at_budget = matched.scores[matched_label("DreamerV3", 10_000)]["dmc_cartpole_balance"]
    assert len(at_budget) == len(final)
    assert mean(at_budget) < 0.5 * mean(final)
    assert mean(final) > 900  # DreamerV3 solves cartpole-balance by the end
