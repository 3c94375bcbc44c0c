"""``--set`` keeps the text of a string field where YAML would read a boolean or a number
(``autocast=off``), while other fields still get YAML's value."""

from __future__ import annotations

import argparse
from typing import Literal, Optional

import pytest
import yaml

from distwm.configs.base import parse_override_value
from distwm.configs.genie_config import genie_preset
from distwm.configs.runtime_config import DataParallelRunConfig, RunConfig
from distwm.runtime import cli


@pytest.mark.parametrize("raw, tp, expected", [
    ("off", Literal["off", "bf16"], "off"),
    (" on", Literal["on", "off"], "on"),
    ("yes", str, "yes"),
    ("no", Optional[str], "no"),
    ("123", str, "123"),
    ("null", Optional[str], None),
    ("true", Literal[True, "auto"], True),
    ("bf16", Literal["off", "bf16"], "bf16"),
    ("off", bool, False),
    ("4", int, 4),
    ("[1, 2]", tuple[int, ...], [1, 2]),
    ("3e-4", float, 3e-4),
    ("1E5", Optional[float], 1e5),
    ("3e-4", str, "3e-4"),
])
def test_parse_override_value(raw, tp, expected):
    assert parse_override_value(raw, tp) == expected
    assert type(parse_override_value(raw, tp)) is type(expected)


def test_set_dotted_keeps_the_text_of_choices():
    config = genie_preset("tiny", autocast="bf16")
    assert config.set_dotted("autocast=off").autocast == "off"
    assert config.set_dotted("action_decoder_dim=null").action_decoder_dim is None
    assert config.set_dotted("batch_size=3").batch_size == 3
    with pytest.raises(ValueError, match=r"'yes' is not one of 'off', 'bf16'"):
        config.set_dotted("autocast=yes")


@pytest.mark.parametrize("model", ["genie", "dit"])
def test_data_parallel_set_autocast_off(model):
    run = DataParallelRunConfig(model=model).apply_override("autocast=bf16")
    run = run.apply_override("autocast=off")
    assert run.model_config["autocast"] == "off"
    assert run.build_model_config().autocast == "off"
    assert run.apply_override("model_config.autocast=off").build_model_config().autocast == "off"


def test_run_config_set_keeps_text_and_yaml_values():
    run = RunConfig(model="iris").apply_override("autocast=off")
    assert run.agent["autocast"] == "off" and run.build_agent_config().autocast == "off"
    # a bool field of the runtime section still reads YAML's booleans
    assert run.apply_override("runtime.verbose=off").runtime.verbose is False


def _train_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="distwm")
    cli.add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_cli_print_config_with_autocast_off(tmp_path, capsys):
    args = _train_args("genie", "--data", str(tmp_path), "--set", "autocast=off", "--print-config")
    assert cli.cmd_train(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model_config"]["autocast"] == "off"
