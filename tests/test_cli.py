"""The `distwm` command's catalog listings and errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from distwm import cli
from distwm.utils.tables import format_table


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distwm.cli", *args], capture_output=True, text=True)


def test_version_and_backends(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert "distwm 0.1.0" in capsys.readouterr().out
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["backend", "aliases", "description"]
    assert any(line.startswith("dmc ") for line in out.splitlines())


def test_models_lists_every_buildable_model(capsys):
    import distwm

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in distwm.list_models():
        assert name in out


def test_unknown_command_and_option_fail_clearly():
    res = run_cli("trian")
    assert res.returncode == 2 and "invalid choice: 'trian'" in res.stderr
    res = run_cli("models", "--bogus")
    assert res.returncode == 2 and "unrecognized arguments: --bogus" in res.stderr


def test_envs_with_unknown_model_is_an_error(capsys):
    assert cli.main(["envs", "--model", "nope"]) == 2
    assert "Unknown model 'nope'" in capsys.readouterr().err


def test_format_table_aligns_columns():
    text = format_table(("a", "bb"), [("xxx", "y"), ("z", "wwww")])
    lines = text.splitlines()
    assert lines[0] == "a    bb"
    assert lines[2] == "xxx  y"
    assert lines[3] == "z    wwww"
