"""Exporters produce parseable CSV, markdown and LaTeX; suite reports write tables and plots."""

import csv
import re

import pytest

from distwm.benchmarks import compute_suite_report, export_csv, export_latex, export_markdown
from distwm.benchmarks.suite_report import collect_scores, load_results_dir, write_report

RESULT = {
    "agent": "dreamer_v3", "env": "walker-walk", "suite": "dmc", "num_episodes": 2,
    "seeds": {
        "0": {"status": "ok", "episode_returns": [500.0, 700.0], "mean": 600.0, "std": 100.0,
              "num_episodes": 2, "normalized_mean": 0.6},
        "1": {"status": "failed", "stage": "evaluate", "error": "RuntimeError: 50% | broken_env",
              "traceback": "..."},
        "2": {"status": "ok", "episode_returns": [800.0, 800.0], "mean": 800.0, "std": 0.0,
              "num_episodes": 2, "normalized_mean": 0.8},
    },
    "aggregate": {"mean": 700.0, "median": 700.0, "iqm": 700.0, "std": 100.0, "min": 600.0,
                  "max": 800.0, "num_seeds": 2, "mean_ci": [600.0, 800.0],
                  "iqm_ci": [600.0, 800.0], "ci_level": 0.95, "per_seed_means": [600.0, 800.0],
                  "num_failed": 1,
                  "normalized": {"mean": 0.7, "median": 0.7, "iqm": 0.7, "num_seeds": 2,
                                 "iqm_ci": [0.6, 0.8], "mean_ci": [0.6, 0.8]}},
    "failures": [{"seed": 1, "stage": "evaluate", "error": "RuntimeError: 50% | broken_env"}],
}


def _md_tables(text):
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


def test_export_csv_is_tidy_and_parseable(tmp_path):
    path = export_csv(RESULT, str(tmp_path / "r.csv"))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"agent", "task", "seed", "metric", "value"}
    get = {(r["seed"], r["metric"]): r["value"] for r in rows}
    assert float(get[("0", "mean")]) == 600.0
    assert float(get[("2", "normalized_mean")]) == 0.8
    assert get[("1", "error")] == "evaluate: RuntimeError: 50% | broken_env"
    assert float(get[("all", "iqm")]) == 700.0
    assert float(get[("all", "iqm_ci_lower")]) == 600.0
    assert float(get[("all", "normalized_iqm_ci_upper")]) == 0.8
    assert ("1", "mean") not in get  # a failed seed has no score


def test_export_markdown_tables_are_well_formed(tmp_path):
    text = open(export_markdown(RESULT, str(tmp_path / "r.md"))).read()
    tables = _md_tables(text)
    assert len(tables) == 3  # per-seed, aggregate, failures
    for table in tables:
        assert len({len(row) for row in table}) == 1
        assert all(set(c) <= {"-"} for c in table[1])
    per_seed = tables[0]
    assert per_seed[0][:3] == ["Agent", "Env", "Seed"]
    assert [row[3] for row in per_seed[2:]] == ["ok", "failed", "ok"]
    assert "50% \\| broken_env" in text


def test_export_latex_is_balanced_and_escaped(tmp_path):
    text = open(export_latex(RESULT, str(tmp_path / "r.tex"), caption="Walker_walk & co")).read()
    assert text.count(r"\begin{table}") == text.count(r"\end{table}") == 3
    assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 3
    assert r"dreamer\_v3" in text and r"50\%" in text and r"Walker\_walk \& co" in text
    for block in text.split(r"\begin{tabular}")[1:]:
        spec = re.match(r"\{([lr]+)\}", block).group(1)
        rows = [l for l in block.split(r"\end{tabular}")[0].splitlines() if l.endswith(r"\\")]
        assert rows and all(len(re.findall(r"(?<!\\)&", r)) == len(spec) - 1 for r in rows)


def test_multi_agent_layout(tmp_path):
    other = dict(RESULT, agent="iris")
    text = open(export_markdown({"dreamer_v3": RESULT, "iris": other}, str(tmp_path / "m.md"))).read()
    assert len(_md_tables(text)[1]) == 4  # header, rule, two agents
    with pytest.raises(ValueError, match="unrecognised results"):
        export_csv({"x": 1}, str(tmp_path / "bad.csv"))


def test_suite_report_exports_and_plots(tmp_path):
    scores = {
        "ours": {"ALE/Pong-v5": [0.0, 5.0, 10.0], "Breakout": [10.0, 20.0, 30.0]},
        "baseline": {"pong": [-20.7, -10.0], "breakout": [1.7, 5.0, 6.0]},
    }
    report = compute_suite_report(scores, num_samples=200)
    assert report["suite"] == "atari" and report["score_name"] == "human-normalised score"
    ours = report["agents"]["ours"]
    assert ours["per_task"]["Pong"]["runs"][0] == pytest.approx(20.7 / 35.3)
    assert ours["per_task"]["Breakout"]["raw_runs"] == [10.0, 20.0, 30.0]
    poi = report["probability_of_improvement"]["ours > baseline"]
    assert poi["estimate"] == pytest.approx(1.0) and poi["tasks"] == ["Breakout", "Pong"]
    paths = write_report(report, str(tmp_path / "rep"))
    for key in ("performance_profile", "aggregate_intervals"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    get = {(r["agent"], r["task"], r["seed"], r["metric"]): float(r["value"]) for r in rows}
    assert get[("ours > baseline", "all", "all", "probability_of_improvement")] == pytest.approx(poi["estimate"])
    assert poi["estimate"] == 1.0  # every run of ours beats every run of the baseline, by hand
    assert [get[("ours", "Breakout", str(i), "raw_score")] for i in range(3)] == [10.0, 20.0, 30.0]
    # Pong: (score + 20.7) / (14.6 + 20.7), by hand
    assert [get[("ours", "Pong", str(i), "score")] for i in range(3)] == pytest.approx(
        [20.7 / 35.3, 25.7 / 35.3, 30.7 / 35.3])
    iqm = ours["aggregate"]["iqm"]
    assert get[("ours", "all", "all", "iqm")] == pytest.approx(iqm["estimate"])
    assert get[("ours", "all", "all", "iqm_ci_lower")] == pytest.approx(iqm["ci_lower"])
    tables = _md_tables(open(paths["md"]).read())
    assert tables[0][0] == ["Task", "ours", "baseline"] and len(tables) == 3
    tex = open(paths["tex"]).read()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 3


def test_collect_scores_from_results_dir(tmp_path):
    from distwm.benchmarks.runner import write_all_formats

    write_all_formats(RESULT, str(tmp_path / "a"), "benchmark_results")
    loaded = load_results_dir(str(tmp_path))
    assert collect_scores(loaded) == {"dreamer_v3": {"walker-walk": [600.0, 800.0]}}
    with pytest.raises(FileNotFoundError, match="no benchmark_results.json"):
        (tmp_path / "empty").mkdir()
        load_results_dir(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="results directory not found"):
        load_results_dir(str(tmp_path / "missing"))


def test_probability_of_improvement_by_hand_and_in_the_csv(tmp_path):
    ours, base = [0.1, 0.5, 0.9, 0.3], [0.2, 0.4, 0.6, 0.8]
    # by hand: pairs with ours > base: 0.5 > 0.2, 0.4; 0.9 > all 4; 0.3 > 0.2 -> 7 of 16
    report = compute_suite_report({"ours": {"t": ours}, "base": {"t": base}}, normalize=False,
                                  num_samples=500)
    poi = report["probability_of_improvement"]["ours > base"]
    assert poi["estimate"] == pytest.approx(7 / 16)
    assert 0.0 <= poi["ci_lower"] < 7 / 16 < poi["ci_upper"] <= 1.0
    paths = write_report(report, str(tmp_path / "rep"))
    with open(paths["csv"], newline="") as f:
        rows = {(r["agent"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)
                if r["agent"] == "ours > base"}
    assert rows == pytest.approx({
        ("ours > base", "probability_of_improvement"): poi["estimate"],
        ("ours > base", "probability_of_improvement_ci_lower"): poi["ci_lower"],
        ("ours > base", "probability_of_improvement_ci_upper"): poi["ci_upper"]})
