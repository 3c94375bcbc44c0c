"""``scripts/plot_paired_curves.py`` groups learning runs by evaluation step; ``--budget`` cuts
longer runs to the common length instead of refusing them."""

from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import plot_paired_curves  # noqa: E402


def _run(path, steps):
    with open(path, "w") as f:
        json.dump({"eval_history": [[x, float(x) / 100] for x in steps]}, f)


def test_runs_of_other_lengths_are_refused_without_a_budget_and_cut_with_one(tmp_path):
    _run(tmp_path / "a_seed0.json", [5000, 10000, 15000, 20000])
    _run(tmp_path / "a_seed1.json", [5000, 10000])
    spec = f"on={tmp_path}/a_seed*.json"
    with pytest.raises(SystemExit, match="--budget"):
        plot_paired_curves.load_group(spec)
    label, steps, runs = plot_paired_curves.load_group(spec, budget=10000)
    assert label == "on" and steps == [5000, 10000]
    assert runs == [[50.0, 100.0], [50.0, 100.0]]


def test_a_group_that_matches_no_file_names_the_expected_form(tmp_path):
    with pytest.raises(SystemExit, match="label=glob"):
        plot_paired_curves.load_group(f"on={tmp_path}/none*.json")
