"""Public API: names, aliases, errors, registry, lazy import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import distwm
from distwm import api, registry


def test_import_and_list_models_import_no_heavy_modules():
    code = (
        "import sys, json, distwm; distwm.list_models(); distwm.list_env_backends(); "
        "distwm.get_env_backend_spec('dm_control'); "
        "print(json.dumps([m for m in ('torch', 'ray', 'gymnasium', 'mujoco', 'dm_control', "
        "'ale_py', 'jax', 'brax', 'mlagents_envs') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    "typed, canonical",
    [
        ("gymnasium", "gym"),
        ("GYM", "gym"),
        ("ale", "atari"),
        ("dm_control", "dmc"),
        ("DM-Control", "dmc"),
        ("mlagents", "unity"),
        ("ML_Agents", "unity"),
        ("gymnasium_robotics", "robotics"),
    ],
)
def test_env_backend_aliases_normalise(typed, canonical):
    assert distwm.get_env_backend_spec(typed).name == canonical


def test_list_env_backends_is_canonical_and_sorted():
    names = distwm.list_env_backends()
    assert names == sorted(names)
    assert {"gym", "dmc", "atari", "mujoco", "robotics", "brax", "unity"} <= set(names)


def test_unknown_backend_error_names_value_choices_and_suggestion():
    with pytest.raises(ValueError) as err:
        distwm.get_env_backend_spec("atary")
    msg = str(err.value)
    assert "'atary'" in msg and "Did you mean 'atari'" in msg and "dmc" in msg


def test_unknown_model_error_names_value_and_valid_models():
    with pytest.raises(ValueError) as err:
        distwm.get_model_spec("no-such-model")
    msg = str(err.value)
    assert "'no-such-model'" in msg
    for name in distwm.list_models():
        assert name in msg


def test_list_models_only_lists_buildable_models(monkeypatch):
    ghost = api.ModelSpec("ghost", "distwm.models.does_not_exist:Ghost", None, "", ())
    from distwm import _exports

    monkeypatch.setattr(_exports, "BUILTIN_MODELS", _exports.BUILTIN_MODELS + (ghost,))
    assert "ghost" not in distwm.list_models()
    with pytest.raises(ValueError):
        distwm.get_model_spec("ghost")


def test_model_spec_and_env_backend_spec_are_named_tuples():
    spec = distwm.ModelSpec("x", "a.b:C")
    assert spec.config_path is None and spec.aliases == () and spec[1] == "a.b:C"
    backend = distwm.EnvBackendSpec("y", "a.b:make")
    assert backend.description == "" and backend._fields == ("name", "factory_path", "description", "aliases")


def test_make_env_rejects_bad_ids_and_backends():
    with pytest.raises(ValueError, match="non-empty"):
        distwm.make_env("")
    with pytest.raises(ValueError, match="Unknown env backend 'nope'"):
        distwm.make_env("CartPole-v1", backend="nope")


def test_make_env_unknown_id_lists_what_was_tried():
    with pytest.raises(ValueError) as err:
        distwm.make_env("definitely-not-an-env-xyz")
    msg = str(err.value)
    assert "'definitely-not-an-env-xyz'" in msg and "tried" in msg and "dmc" in msg


# -- registry -----------------------------------------------------------------------------------

@pytest.fixture
def toy_model():
    spec = registry.register_model(
        "Toy_WM", "plugin_fixtures:ToyModel", "plugin_fixtures:ToyConfig",
        description="toy", aliases=("toywm",),
    )
    yield spec
    registry.deregister_model("toy-wm")


def test_registered_model_is_honoured_everywhere(toy_model):
    assert toy_model.name == "toy-wm"
    assert "toy-wm" in distwm.list_models()
    assert distwm.get_model_spec("TOYWM") == toy_model
    cfg = distwm.create_config("toy_wm", hidden=16)
    assert cfg.hidden == 16 and cfg.lr == 1e-3
    model = distwm.create_model("toywm", hidden=4, scale=2.0)
    assert model.config.hidden == 4 and model.scale == 2.0
    model = distwm.create_model("toy-wm", config={"lr": 0.5})
    assert model.config.lr == 0.5


def test_create_model_from_yaml_and_config_errors(toy_model, tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("hidden: 32\n")
    assert distwm.create_model("toy-wm", config=str(path)).config.hidden == 32
    with pytest.raises(ValueError, match="hiden"):
        distwm.create_config("toy-wm", hiden=3)
    with pytest.raises(ValueError, match="'hidden'"):
        distwm.create_config("toy-wm", hidden="three")
    with pytest.raises(ValueError, match="does not exist"):
        distwm.create_model("toy-wm", config=str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="must be a ToyConfig"):
        distwm.create_model("toy-wm", config=42)


def test_deregistered_model_disappears(toy_model):
    registry.deregister_model("toywm")
    assert "toy-wm" not in distwm.list_models()
    with pytest.raises(ValueError, match="toy-wm"):
        distwm.create_model("toy-wm")
    registry.register_model(toy_model)  # the fixture deregisters it again


def test_register_model_refuses_clashes_and_bad_paths(toy_model):
    with pytest.raises(ValueError, match="already in use"):
        registry.register_model("toy-wm", "plugin_fixtures:ToyModel")
    with pytest.raises(ValueError, match="already in use"):
        registry.register_model("other", "plugin_fixtures:ToyModel", aliases=("toywm",))
    with pytest.raises(ValueError, match="already in use"):
        registry.register_model("gym-like", "plugin_fixtures:ToyModel", aliases=("dreamer-v3",))
    with pytest.raises(ValueError, match="package.module:attribute"):
        registry.register_model("bad", "no_colon_here")
    with pytest.raises(ValueError, match="Unknown registered model"):
        registry.deregister_model("never-registered")
    replaced = registry.register_model("toy-wm", "plugin_fixtures:ToyModel", overwrite=True)
    assert replaced.aliases == ()


def test_model_without_config_passes_overrides_to_factory():
    registry.register_model("plain-dict", "builtins:dict")
    try:
        assert distwm.create_model("plain_dict", a=1) == {"a": 1}
        with pytest.raises(ValueError, match="has no config class"):
            distwm.create_config("plain-dict")
    finally:
        registry.deregister_model("plain-dict")


def test_registered_env_backend_is_honoured_by_make_env_and_lists():
    registry.register_env_backend(
        "toy", "plugin_fixtures:make_toy_env", aliases=("toy-sim",),
        matcher=lambda env_id: env_id.startswith("toy:"), env_lister=lambda: ["toy:count"],
    )
    try:
        assert "toy" in distwm.list_env_backends()
        assert distwm.list_envs()["toy"] == ["toy:count"]
        env = distwm.make_env("toy:count", length=2)  # auto-detected through the matcher
        obs, info = env.reset(seed=0)
        assert info["env_id"] == "toy:count"
        assert env.step(0)[2] is False and env.step(0)[2] is True
        env = distwm.make_env("anything", backend="TOY_SIM")
        assert env.reset()[1]["env_id"] == "anything"
    finally:
        registry.deregister_env_backend("toy")
    assert "toy" not in distwm.list_env_backends()
    with pytest.raises(ValueError):
        distwm.make_env("anything", backend="toy")


# -- catalog metadata ---------------------------------------------------------------------------

def test_builtin_specs_say_protocol_kind_and_backends():
    for name in ("dreamer", "dreamer-v1", "dreamer-v2", "dreamer-v3", "planet"):
        spec = distwm.get_model_spec(name)
        assert spec.kind == "rl-agent"
        assert spec.protocol_path is not None and ":" in spec.protocol_path
    assert distwm.get_model_spec("dreamer-v2").protocol_path.startswith("distwm.models.dreamer")
    assert distwm.get_model_spec("planet").protocol_path.split(":")[1] in ("PlanetCore", "PlanetAgent")
    assert distwm.get_model_spec("dreamer").backends == ()  # every backend
    assert set(distwm.get_model_spec("planet").backends) == {"dmc", "gym", "mujoco"}
    assert distwm.get_model_spec("modular-rssm").kind == "component"
    assert distwm.get_model_spec("modular-rssm").protocol_path is None


def test_model_spec_keeps_the_seed_positional_fields_and_checks_kind():
    spec = distwm.ModelSpec("x", "a.b:C", None, "d", ("y",))
    assert spec._fields[:5] == ("name", "import_path", "config_path", "description", "aliases")
    assert (spec.protocol_path, spec.kind, spec.backends) == (None, "rl-agent", ())
    assert spec._replace(kind="component").kind == "component"
    with pytest.raises(ValueError) as err:
        distwm.ModelSpec("x", "a.b:C", kind="agent")
    msg = str(err.value)
    assert "'agent'" in msg and all(k in msg for k in ("rl-agent", "dataset-trained", "component"))


def test_register_model_takes_protocol_kind_and_backends():
    spec = registry.register_model("Data_WM", "plugin_fixtures:ToyModel", "plugin_fixtures:ToyConfig",
                                   protocol_path="plugin_fixtures:ToyModel", kind="dataset-trained",
                                   backends=("GYM",))
    try:
        got = distwm.get_model_spec("data-wm")
        assert got == spec
        assert (got.protocol_path, got.kind, got.backends) == ("plugin_fixtures:ToyModel", "dataset-trained", ("gym",))
        assert registry.model_backends("data-wm") == ("gym",)
    finally:
        registry.deregister_model("data-wm")
    with pytest.raises(ValueError, match="rl-agent"):
        registry.register_model("bad-kind", "plugin_fixtures:ToyModel", kind="nope")
    with pytest.raises(ValueError, match="package.module:attribute"):
        registry.register_model("bad-proto", "plugin_fixtures:ToyModel", protocol_path="no_colon")


def test_list_envs_of_a_model_reads_its_spec_backends():
    registry.register_env_backend("toy", "plugin_fixtures:make_toy_env", env_lister=lambda: ["toy:count"])
    registry.register_model("toy-only", "plugin_fixtures:ToyModel", backends=("toy",))
    try:
        assert distwm.list_envs("toy-only") == ["toy:count"]
    finally:
        registry.deregister_model("toy-only")
        registry.deregister_env_backend("toy")


def test_api_has_no_per_family_branches():
    import inspect

    source = inspect.getsource(api)
    assert "_MODEL_BACKENDS" not in source and 'startswith("dreamer")' not in source


def test_lazy_exports_come_from_one_table():
    import distwm.models
    from distwm import _exports

    assert distwm._LAZY == _exports.EXPORTS
    assert set(distwm.models.__all__) == set(_exports.MODELS_EXPORTS)
    assert set(_exports.MODELS_EXPORTS) <= set(_exports.EXPORTS)
