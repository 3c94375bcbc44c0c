"""The Crafter score against the paper's formula on hand-made episodes, the runtime's record of
achievements (episode end -> driver counters -> trial result), the sweep report's Crafter
section beside the published scores, and the ``suite:`` checks. No Ray, no simulator."""

from __future__ import annotations

import json
import math

import gymnasium
import numpy as np
import pytest

from distwm.benchmarks.crafter_score import (CRAFTER_ACHIEVEMENTS, crafter_markdown, crafter_report,
                                             crafter_score, load_published_crafter_scores,
                                             success_rates, success_rates_from_counts)

# 4 episodes: as Crafter's info["achievements"] counts, or as the names unlocked
EPISODES = [
    {**{name: 0 for name in CRAFTER_ACHIEVEMENTS}, "collect_wood": 3, "wake_up": 1},
    {"wake_up": 2, "eat_cow": 0},
    ["collect_wood", "place_table"],
    {},
]
# by hand: collect_wood 2/4, wake_up 2/4, place_table 1/4, the other 19 never
HAND_SCORE = math.exp((2 * math.log(1 + 50.0) + math.log(1 + 25.0) + 19 * math.log(1.0)) / 22) - 1


def _rates(**unlocked: float) -> dict[str, float]:
    return {name: float(unlocked.get(name, 0.0)) for name in CRAFTER_ACHIEVEMENTS}


def test_success_rates_and_score_are_the_papers_formula():
    rates = success_rates(EPISODES)
    assert rates == _rates(collect_wood=50, wake_up=50, place_table=25)
    assert crafter_score(rates) == pytest.approx(HAND_SCORE)
    assert HAND_SCORE == pytest.approx(0.6579, abs=1e-4)  # the geometric mean, not the mean (5.7)
    assert crafter_score(_rates()) == 0.0
    assert crafter_score({n: 100.0 for n in CRAFTER_ACHIEVEMENTS}) == pytest.approx(100.0)
    # the crafter repository's analysis/common.py, written out: percent of episodes with a
    # count >= 1, then exp(mean(log(1 + percents))) - 1
    counts = np.array([[float(EPISODES[0].get(n, 0)), float(EPISODES[1].get(n, 0)),
                        float(n in EPISODES[2]), 0.0] for n in CRAFTER_ACHIEVEMENTS])
    percents = 100 * (counts >= 1).mean(axis=1)
    assert crafter_score(rates) == pytest.approx(float(np.exp(np.log(1 + percents).mean()) - 1))
    assert success_rates_from_counts({"wake_up": 2, "collect_wood": 2, "place_table": 1}, 4) == rates


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match=r"missing \['wake_up'\]"):
        crafter_score({n: 1.0 for n in CRAFTER_ACHIEVEMENTS if n != "wake_up"})
    with pytest.raises(ValueError, match=r"unknown \['find_food'\]"):
        crafter_score({**_rates(), "find_food": 1.0})
    with pytest.raises(ValueError, match=r"\[0, 100\].*'eat_cow': 150"):
        crafter_score(_rates(eat_cow=150))
    with pytest.raises(ValueError, match=r"unknown achievements \['fly'\].*collect_coal"):
        success_rates([{"fly": 1}])
    with pytest.raises(ValueError, match="at least one episode"):
        success_rates([])
    with pytest.raises(ValueError, match="unlocked in 5 of 4"):
        success_rates_from_counts({"wake_up": 5}, 4)


def test_published_scores_carry_their_sources():
    published = load_published_crafter_scores()
    assert published["DreamerV3"]["score"] == 14.5 and published["DreamerV3"]["score_std"] == 1.6
    assert published["Human Experts"]["score"] == 50.5 and published["Random"]["score"] == 1.6
    assert all("source" in entry and "arXiv" in entry["source"] for entry in published.values())


def test_report_scores_each_run_then_mean_std_and_ci_over_seeds():
    runs = [{"agent": "dreamer", "seed": s, "episodes": 40, "env_steps": 5000,
             "success_rates": _rates(collect_wood=w, wake_up=90)} for s, w in enumerate((10, 30, 60))]
    report = crafter_report(runs, num_samples=500, seed=0)
    scores = [crafter_score(r["success_rates"]) for r in runs]
    mine = report["agents"]["dreamer"]
    assert mine["scores"] == pytest.approx(scores) and mine["num_seeds"] == 3
    assert mine["mean"] == pytest.approx(np.mean(scores)) and mine["std"] == pytest.approx(np.std(scores))
    assert min(scores) <= mine["ci_lower"] <= mine["mean"] <= mine["ci_upper"] <= max(scores)
    assert mine["success_rates"]["collect_wood"] == pytest.approx(100 / 3)
    markdown = crafter_markdown(report)
    assert f"| dreamer | 3 | {np.mean(scores):.2f} | {np.std(scores):.2f} |" in markdown
    assert "| DreamerV3 (published) | - | 14.5 | 1.6 | - |" in markdown
    assert f"| dreamer | 2 | 5,000 | 40 | {scores[2]:.2f} |" in markdown
    assert "| collect_wood | 33.3 |" in markdown
    with pytest.raises(ValueError, match="no run"):
        crafter_report([])


class _ToyEnv(gymnasium.Env):
    """Episodes of 3 steps; ``achievements`` in info when asked."""

    observation_space = gymnasium.spaces.Dict({"state": gymnasium.spaces.Box(0, 1, (1,))})
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, achievements: bool):
        self.achievements, self.t = achievements, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return {"state": np.zeros(1, np.float32)}, {}

    def step(self, action):
        self.t += 1
        info = {"achievements": {"wake_up": int(self.t >= 2), "eat_cow": 0}} if self.achievements else {}
        return {"state": np.zeros(1, np.float32)}, 0.0, self.t == 3, False, info


def test_episode_ends_reach_the_trial_result_and_the_report():
    from distwm.runtime.env_worker import _AchievementLog
    from distwm.runtime.progress import achievement_summary, count_achievements
    from distwm.tune.crafter_report import trial_success_rates
    from distwm.tune.trainable import achievement_metrics

    log: list = []
    crafter_like, plain = _AchievementLog(_ToyEnv(True), log), _AchievementLog(_ToyEnv(False), log)
    for env in (crafter_like, plain):
        for _ in range(2):
            env.reset()
            for _ in range(3):
                env.step(0)
    assert log == [{"wake_up": 1, "eat_cow": 0}] * 2  # one per episode end; none from the plain env
    counters: dict = {"env_steps": 0}
    count_achievements(counters, log + [{"wake_up": 0, "eat_cow": 1}, {"wake_up": 1, "eat_cow": 1}])
    summary = achievement_summary(counters)
    assert summary == {"episodes": 4, "unlocked": {"wake_up": 3, "eat_cow": 2},
                       "success_rates": {"wake_up": 75.0, "eat_cow": 50.0}}
    assert achievement_summary({"env_steps": 10}) is None and achievement_metrics({}) == {}
    result = {"final": True, "score": 1.0, **achievement_metrics({"achievements": summary})}
    assert trial_success_rates(result) == (4, {"wake_up": 75.0, "eat_cow": 50.0})
    assert trial_success_rates({"final": True, "score": 1.0}) is None


@pytest.fixture
def crafter_sweep(tmp_path, monkeypatch):
    from distwm.tune import sweep_report
    from distwm.tune.storage import SWEEP_FILE
    from distwm.tune.sweep_config import SweepConfig
    from distwm.tune.sweep_report import TrialOutcome
    from distwm.tune.trainable import achievement_metrics

    results = tmp_path / "sweep"
    results.mkdir()
    sweep = SweepConfig.from_dict({"name": "crafter", "suite": "crafter", "games": ["crafter:reward"],
                                   "seeds": [0, 1, 2]})
    (results / SWEEP_FILE).write_text(sweep.to_yaml())
    rates = [_rates(collect_wood=40, wake_up=80), _rates(collect_wood=60, wake_up=90, place_table=10)]
    finals = [{"final": True, "score": 2.0 + s, "env_steps": 3000,
               **achievement_metrics({"achievements": {"episodes": 20 + s, "success_rates": r}})}
              for s, r in enumerate(rates)]
    outcomes = [TrialOutcome("dreamer", "crafter:reward", s, "done", 3000, 2.0 + s, "", finals[s])
                for s in (0, 1)]
    outcomes.append(TrialOutcome("dreamer", "crafter:reward", 2, "failed", 700, None, "RuntimeError"))
    monkeypatch.setattr(sweep_report, "load_trial_outcomes", lambda path: outcomes)
    return str(results), [crafter_score(r) for r in rates]


def test_a_crafter_sweep_report_has_the_score_section(crafter_sweep, tmp_path):
    from distwm.tune.sweep_report import build_sweep_report

    results_dir, scores = crafter_sweep
    result = build_sweep_report(results_dir, out_dir=str(tmp_path / "out"), num_samples=200)
    markdown = result["markdown"]
    assert "(raw returns)" in markdown and "## Crafter score" in markdown
    assert f"| dreamer | 2 | {np.mean(scores):.2f} | {np.std(scores):.2f} |" in markdown
    assert "| DreamerV3 (published) | - | 14.5 | 1.6 | - |" in markdown
    assert f"| dreamer | 1 | 3,000 | 21 | {scores[1]:.2f} |" in markdown  # the failed seed 2 is left out
    assert "## Crafter score" in (tmp_path / "out" / "report.md").read_text()
    saved = json.loads(open(result["paths"]["crafter_json"]).read())
    assert saved["agents"]["dreamer"]["mean"] == pytest.approx(np.mean(scores))
    assert [r["seed"] for r in saved["runs"]] == [0, 1]
    with pytest.raises(ValueError, match=r"--compare DreamerV3: .*suite 'crafter', which has no "
                                         r"published per-game returns.*compare needs"):
        build_sweep_report(results_dir, compare=["DreamerV3"], out_dir=str(tmp_path / "out2"))


def test_suites_crafter_and_minatar_check_their_games():
    from distwm.tune.sweep_config import SweepConfig

    def load(**fields):
        return SweepConfig.from_dict({"name": "s", **fields})

    assert load(suite="minatar", games=["minatar:breakout", "minatar:asterix"]).suite == "minatar"
    with pytest.raises(ValueError, match=r"'walker-walk' is not a task of suite 'crafter'"):
        load(suite="crafter", games=["walker-walk"])
    with pytest.raises(ValueError, match=r"'pong' is not a task of suite 'minatar'"):
        load(suite="minatar", games=["pong"])
    with pytest.raises(ValueError, match=r"compare: suite 'crafter' has no published per-game"):
        load(suite="crafter", games=["crafter"], compare=["DreamerV3"])
    with pytest.raises(ValueError, match=r"'procgen' is not one of.*'crafter', 'minatar'"):
        load(suite="procgen", games=["crafter"])
