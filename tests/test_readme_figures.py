"""The README's benchmark figures are what ``scripts/readme_figures.py`` renders from the JSON
files the benchmark scripts wrote (``docs/benchmarks/``) and the published curves."""

from __future__ import annotations

import os
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import readme_figures  # noqa: E402
from conftest import require_reference  # noqa: E402


def test_every_figures_block_of_the_readme_is_what_the_script_renders_from_the_files():
    require_reference("dreamerv3_curves")
    text = open(os.path.join(ROOT, "README.md")).read()
    found = readme_figures.readme_blocks(text)
    assert set(found) == set(readme_figures.BLOCKS), "README.md lacks a figures block (or has an unknown one)"
    for name in readme_figures.BLOCKS:
        assert found[name] == readme_figures.render(name), (
            f"README.md's {name} figures differ from the files: run python scripts/readme_figures.py --write")


def test_the_learning_rows_quote_the_json_files():
    row = readme_figures.learning_row("dreamer_cartpole_seed0.json", "setting")
    import json

    run = json.load(open(os.path.join(readme_figures.BENCH, "dreamer_cartpole_seed0.json")))
    returns = [r for _, r in run["eval_history"]]
    assert f"best {max(returns):.0f}" in row and f"final {returns[-1]:.0f}" in row
    assert f"{run['updates']} updates" in row
