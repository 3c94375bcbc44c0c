"""Score normalisation against hand-computed values from the Atari 100k reference files, and
reading published scores from the shared reference folder."""

import json

import numpy as np
import pytest
from conftest import require_reference

from distwm.benchmarks.normalization import (
    atari_human_random,
    canonical_task,
    derive_atari_table,
    normalize_score,
    normalize_scores,
)
from distwm.benchmarks.reference import (
    load_published_curves,
    load_published_scores,
    resolve_reference_dir,
)


def _reference_or_skip():
    return require_reference()


def test_atari_human_normalised_hand_computed():
    # From shared/reference/atari100k: HUMAN Pong 14.6, RANDOM Pong -20.7
    # score 0 -> (0 - (-20.7)) / (14.6 - (-20.7)) = 20.7 / 35.3
    assert normalize_score("ALE/Pong-v5", 0.0) == pytest.approx(20.7 / 35.3)
    # HUMAN Breakout 30.5, RANDOM 1.7: human score -> 1, random -> 0, 16.1 -> 0.5
    assert normalize_score("Breakout", 30.5) == pytest.approx(1.0)
    assert normalize_score("breakout", 1.7) == pytest.approx(0.0)
    assert normalize_score("BreakoutNoFrameskip-v4", 16.1) == pytest.approx(0.5)
    # MsPacman: RANDOM 307.3, HUMAN 6951.6 -> (1000 - 307.3) / 6644.3
    assert normalize_score("ms_pacman", 1000.0) == pytest.approx(692.7 / 6644.3)


def test_dmc_return_over_1000():
    np.testing.assert_allclose(normalize_score("walker-walk", [850.0, 120.0]), [0.85, 0.12])
    assert normalize_scores({"dmc_ball_in_cup_catch": [500.0]}) == {"ball_in_cup-catch": [0.5]}


def test_canonical_names_and_errors():
    assert canonical_task("ALE/UpNDown-v5") == "UpNDown"
    assert canonical_task("atari_james_bond") == "Jamesbond"
    assert canonical_task("cartpole_swingup") == "cartpole-swingup"
    with pytest.raises(ValueError, match="'Tetris'"):
        normalize_score("Tetris", 1.0)
    with pytest.raises(ValueError, match="unknown suite 'mujoco'"):
        normalize_score("walker-walk", 1.0, suite="mujoco")
    with pytest.raises(ValueError, match="both map"):
        normalize_scores({"Pong": [1.0], "ALE/Pong-v5": [2.0]})


def test_shipped_table_matches_reference_files():
    ref = _reference_or_skip()
    human = json.loads((ref / "atari100k" / "HUMAN.json").read_text())
    random = json.loads((ref / "atari100k" / "RANDOM.json").read_text())
    table = atari_human_random()
    assert set(table) == set(human) and len(table) == 26
    for game, (rnd, hum) in table.items():
        assert rnd == pytest.approx(np.mean(random[game]))
        assert hum == pytest.approx(np.mean(human[game]))
    assert derive_atari_table(ref)["games"]["Pong"] == {"random": -20.7, "human": 14.6}


def test_published_iris_iqm_matches_paper():
    _reference_or_skip()
    from distwm.benchmarks import compute_suite_metrics

    iris = normalize_scores(load_published_scores("iris"))
    out = compute_suite_metrics(iris, num_samples=100)
    # IRIS paper (Micheli et al., 2023), Atari 100k: mean 1.046, median 0.289, IQM 0.501
    assert out["mean"]["estimate"] == pytest.approx(1.046, abs=1e-3)
    assert out["median"]["estimate"] == pytest.approx(0.289, abs=1e-3)
    assert out["iqm"]["estimate"] == pytest.approx(0.501, abs=1e-3)


def test_published_curves_load():
    _reference_or_skip()
    curves = load_published_curves("dmc_proprio")
    assert curves and {"task", "seed", "xs", "ys"} <= set(curves[0])
    assert all(isinstance(v, float) for v in curves[0]["ys"][:3])
    with pytest.raises(ValueError, match="available suites"):
        load_published_curves("procgen")


def test_missing_reference_dir_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_reference_dir(missing)
    with pytest.raises(FileNotFoundError, match="DISTWM_REFERENCE_DIR"):
        load_published_scores("IRIS", reference_dir=missing)
