"""DreamerConfig: version defaults, size presets, round trips and every validation error."""

from __future__ import annotations

import pytest

from distwm.configs.dreamer_config import (
    MODEL_SIZES,
    DreamerConfig,
    dreamer_v1_config,
    dreamer_v2_config,
    dreamer_v3_config,
)
from distwm.configs.rl_config import RLConfig


def test_factories_give_each_version_its_published_settings():
    v1, v2, v3 = (f().resolved() for f in (dreamer_v1_config, dreamer_v2_config, dreamer_v3_config))
    assert isinstance(v3, RLConfig)
    assert (v1.latent, v1.reward_head, v1.free_nats, v1.stoch_classes) == ("gaussian", "normal", 3.0, 0)
    assert (v1.kl_dyn_scale, v1.kl_rep_scale) == (1.0, 1.0)  # plain KL(post || prior)
    assert v2.latent == "categorical" and v2.kl_dyn_scale == pytest.approx(0.8)
    assert v2.kl_rep_scale == pytest.approx(0.2)
    assert (v3.reward_head, v3.critic_head, v3.num_buckets) == ("twohot", "twohot", 255)
    assert (v3.kl_dyn_scale, v3.kl_rep_scale, v3.free_nats, v3.unimix) == (0.5, 0.1, 1.0, 0.01)
    assert (v3.stoch_size, v3.stoch_classes, v3.activation, v3.layer_norm) == (32, 32, "silu", True)
    assert v3.return_norm and v3.slow_critic_reg == 1.0 and v3.symlog_obs
    assert DreamerConfig().resolved() == v3


@pytest.mark.parametrize("size", ["XS", "S", "M", "L"])
def test_size_presets_and_explicit_overrides(size):
    cfg = DreamerConfig(model_size=size).resolved()
    assert cfg.deter_size == MODEL_SIZES[size]["deter_size"]
    assert cfg.num_units == MODEL_SIZES[size]["num_units"]
    custom = DreamerConfig(model_size=size, deter_size=7).resolved()
    assert custom.deter_size == 7 and custom.num_units == cfg.num_units


def test_yaml_round_trip_keeps_unset_fields_unset(tmp_path):
    cfg = DreamerConfig(version="v2", model_size="XS", env="CartPole-v1", kl_alpha=0.7)
    path = tmp_path / "dreamer.yaml"
    cfg.to_yaml(path)
    back = DreamerConfig.from_yaml(path)
    assert back == cfg and back.deter_size is None
    assert back.resolved().kl_dyn_scale == pytest.approx(0.7)


@pytest.mark.parametrize("field, value, message", [
    ("version", "v4", "version"),
    ("model_size", "XXL", "model_size"),
    ("batch_size", 0, "batch_size"),
    ("discount", 1.5, "discount"),
    ("free_nats", -1.0, "free_nats"),
    ("activation", "swishy", "activation"),
    ("return_norm_percentiles", (95.0, 5.0), "return_norm_percentiles"),
    ("stoch_classes", -1, "stoch_classes"),
    ("model_learning_rate", "1e-4", "model_learning_rate must be a number"),
    ("batch_size", 2.5, "batch_size must be a positive integer"),
])
def test_bad_values_raise_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        DreamerConfig(**{field: value})


def test_unknown_field_suggests_the_right_one():
    with pytest.raises(ValueError, match="imagine_horizon"):
        DreamerConfig.from_dict({"imagine_horizn": 3})


def test_agent_class_path_imports():
    from distwm.agent import import_object

    cls = import_object(DreamerConfig.AGENT_CLASS)
    assert hasattr(cls, "from_config") and hasattr(cls, "update")
