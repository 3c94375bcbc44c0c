"""Strict config round trips and errors (distwm.configs.base)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from distwm.configs.base import ConfigBase
from distwm.configs.rl_config import RLConfig


@dataclass
class Inner(ConfigBase):
    units: int = 4


@dataclass
class Outer(ConfigBase):
    name: str = "x"
    lr: float = 1e-3
    layers: tuple[int, ...] = (32, 32)
    mode: Literal["a", "b"] = "a"
    clip: Optional[float] = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_dict_and_yaml_round_trip(tmp_path):
    cfg = Outer(name="y", lr=2, layers=(1, 2, 3), mode="b", clip=0.5, flag=True, inner=Inner(7))
    assert cfg.lr == 2
    again = Outer.from_dict(cfg.to_dict())
    assert again == Outer(name="y", lr=2.0, layers=(1, 2, 3), mode="b", clip=0.5, flag=True, inner=Inner(7))
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert Outer.from_yaml(path) == again
    assert Outer.from_yaml(cfg.to_yaml()) == again


def test_int_accepted_for_float_and_list_for_tuple():
    cfg = Outer.from_dict({"lr": 1, "layers": [4, 5]})
    assert isinstance(cfg.lr, float) and cfg.layers == (4, 5)


def test_exponent_without_a_dot_is_a_float(tmp_path):
    """PyYAML (YAML 1.1) reads ``3e-4`` as a string; a float field takes it as the number."""
    path = tmp_path / "c.yaml"
    path.write_text("lr: 3e-4\nclip: 1E+2\n")
    cfg = Outer.from_yaml(path)
    assert cfg.lr == pytest.approx(3e-4) and cfg.clip == pytest.approx(100.0)
    assert Outer.from_dict({}).set_dotted("lr=5e-5").lr == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="'name': expected a string"):
        Outer.from_dict({"name": 3e-4})
    with pytest.raises(ValueError, match="'lr': expected a float, got '3e-4x'"):
        Outer.from_dict({"lr": "3e-4x"})


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"lrr": 1.0}, "Unknown config field 'lrr' for Outer. Did you mean 'lr'?"),
        ({"lr": "fast"}, "'lr': expected a float"),
        ({"flag": 1}, "'flag': expected true or false"),
        ({"name": 3}, "'name': expected a string"),
        ({"mode": "c"}, "'mode': 'c' is not one of 'a', 'b'"),
        ({"layers": [1, "x"]}, "'layers[1]'"),
        ({"inner": {"unitz": 3}}, "'inner.unitz'"),
        ({"inner": {"units": 1.5}}, "'inner.units': expected an int"),
        ({"clip": "none"}, "'clip'"),
    ],
)
def test_bad_fields_and_values_are_named(data, fragment):
    with pytest.raises(ValueError) as err:
        Outer.from_dict(data)
    assert fragment in str(err.value)


def test_from_dict_needs_a_mapping_and_yaml_file_must_exist(tmp_path):
    with pytest.raises(ValueError, match="expects a mapping"):
        Outer.from_dict([1, 2])
    with pytest.raises(ValueError, match="does not exist"):
        Outer.from_yaml(tmp_path / "missing.yaml")


def test_replace_and_set_dotted_validate():
    cfg = RLConfig()
    assert cfg.replace(env="CartPole-v1").env == "CartPole-v1"
    assert cfg.set_dotted("action_repeat=4").action_repeat == 4
    assert cfg.set_dotted("obs_type=state").obs_type == "state"
    with pytest.raises(ValueError, match="'action_repeat'"):
        cfg.set_dotted("action_repeat=fast")
    with pytest.raises(ValueError, match="key=value"):
        cfg.set_dotted("action_repeat")
    with pytest.raises(ValueError, match="Unknown config field 'seeds'"):
        cfg.replace(seeds=3)


@pytest.mark.parametrize("config_cls", ["DreamerConfig", "PlanetConfig"])
def test_every_family_checks_activation_names_against_the_one_table(config_cls):
    import importlib

    from distwm.blocks.layers import ACTIVATIONS, activation_module
    from distwm.configs.activations import ACTIVATION_NAMES

    module = importlib.import_module(
        "distwm.configs." + ("dreamer_config" if config_cls == "DreamerConfig" else "planet_config"))
    cls = getattr(module, config_cls)
    with pytest.raises(ValueError, match=rf"{config_cls}.activation 'swishy' is not one of relu, elu"):
        cls(activation="swishy")
    assert isinstance(cls(activation="ELU"), cls)  # names are case-insensitive everywhere
    assert set(ACTIVATIONS) == set(ACTIVATION_NAMES)
    assert type(activation_module("Mish")).__name__ == "Mish"


def test_direct_construction_checks_choice_fields():
    with pytest.raises(ValueError, match=r"Outer.mode 'c' is not one of 'a', 'b'"):
        Outer(mode="c")
    from distwm.configs.dreamer_config import DreamerConfig

    with pytest.raises(ValueError, match=r"DreamerConfig.imagine_cont 'sample' is not one of 'prob', 'mode'"):
        DreamerConfig(imagine_cont="sample")
    assert DreamerConfig(version="v2").resolved().imagine_cont == "prob"
    assert DreamerConfig().resolved().imagine_cont == "mode"


@dataclass
class Renamed(ConfigBase):
    ALIASES = {"old": "new"}
    REMOVED = {"gone": "it is the runtime's setting now (runtime.gone)"}

    new: int = 1
    other: str = "x"


@dataclass
class RenamedChild(Renamed):
    ALIASES = {"older": "other"}


def test_aliases_map_old_names_to_new_ones_everywhere():
    assert Renamed(old=3) == Renamed(new=3) == Renamed.from_dict({"old": 3})
    assert Renamed().replace(old=4).new == 4 and Renamed().set_dotted("old=5").new == 5
    assert Renamed.from_yaml("old: 6\n").new == 6
    assert Renamed(old=3).to_dict() == {"new": 3, "other": "x"}
    child = RenamedChild(old=2, older="y")  # aliases are inherited and merged
    assert (child.new, child.other) == (2, "y")
    with pytest.raises(ValueError, match="'old' and 'new' of Renamed are the same setting"):
        Renamed.from_dict({"old": 1, "new": 2})
    with pytest.raises(ValueError, match=r"'old': expected an int"):
        Renamed.from_dict({"old": "many"})
    with pytest.raises(ValueError, match=r"'gone' of Renamed is not accepted: it is the runtime's"):
        Renamed.from_dict({"gone": 1})
    with pytest.raises(ValueError, match="Unknown config field 'olde'"):
        Renamed.from_dict({"olde": 1})
