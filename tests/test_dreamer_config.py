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


#: DreamerV3 paper (Hafner et al. 2023, arXiv 2301.04104v1), table B.1, written out here (not
#: read from distwm): GRU recurrent units, dense hidden units, MLP layers, CNN multiplier; the
#: latent is 32 categoricals of 32 classes in every size. RLlib's DreamerV3
#: (rllib/algorithms/dreamerv3/utils: get_gru_units, get_dense_hidden_units,
#: get_num_dense_layers, get_cnn_multiplier) has the same numbers.
PAPER_V3_SIZES = {
    #      deter  units layers cnn
    "XS": (256, 256, 1, 24),
    "S": (512, 512, 2, 32),
    "M": (1024, 640, 3, 48),
    "L": (2048, 768, 4, 64),
    "XL": (4096, 1024, 5, 96),
}

#: The current dreamerv3 code (danijar/dreamerv3, dreamerv3/configs.yaml, size1m ... size400m):
#: rssm deter, units (= rssm hidden), classes, cnn depth; stoch 32 and 3 layers in every size.
CODE_V3_SIZES = {
    "1m": (512, 64, 4, 4),
    "12m": (2048, 256, 16, 16),
    "25m": (3072, 384, 24, 24),
    "50m": (4096, 512, 32, 32),
    "100m": (6144, 768, 48, 48),
    "200m": (8192, 1024, 64, 64),
    "400m": (12288, 1536, 96, 96),
}


@pytest.mark.parametrize("size", sorted(PAPER_V3_SIZES))
def test_size_presets_are_the_papers_table(size):
    deter, units, layers, cnn = PAPER_V3_SIZES[size]
    cfg = DreamerConfig(model_size=size).resolved()
    assert (cfg.deter_size, cfg.num_units, cfg.num_layers, cfg.cnn_depth) == (deter, units, layers, cnn)
    assert (cfg.stoch_size, cfg.stoch_classes) == (32, 32)
    custom = DreamerConfig(model_size=size, deter_size=7).resolved()
    assert custom.deter_size == 7 and custom.num_units == units and custom.num_layers == layers


@pytest.mark.parametrize("size", sorted(CODE_V3_SIZES))
def test_size_presets_of_the_current_dreamerv3_code(size):
    deter, units, classes, cnn = CODE_V3_SIZES[size]
    cfg = DreamerConfig(model_size=size).resolved()
    assert (cfg.deter_size, cfg.num_units, cfg.stoch_classes, cfg.cnn_depth) == (deter, units, classes, cnn)
    assert (cfg.stoch_size, cfg.num_layers) == (32, 3)


def test_size_presets_of_the_v1_and_v2_papers():
    # DreamerV1 (Hafner et al. 2020; danijar/dreamer's defaults: deter_size 200, stoch_size 30,
    # num_units 400, cnn_depth 32; Gaussian latents)
    v1 = dreamer_v1_config().resolved()
    assert (v1.model_size, v1.deter_size, v1.stoch_size, v1.stoch_classes) == ("paper-v1", 200, 30, 0)
    assert (v1.num_units, v1.cnn_depth) == (400, 32)
    # DreamerV2 (Hafner et al. 2021, hyper-parameter table: RSSM units 600, 32 latents of 32
    # classes, MLPs of 4 layers of 400 units; danijar/dreamerv2's encoder depth 48)
    v2 = dreamer_v2_config().resolved()
    assert (v2.model_size, v2.deter_size, v2.stoch_size, v2.stoch_classes) == ("paper-v2", 600, 32, 32)
    assert (v2.num_units, v2.num_layers, v2.cnn_depth) == (400, 4, 48)


def test_every_size_preset_is_checked_against_a_published_table():
    published = {*PAPER_V3_SIZES, *CODE_V3_SIZES, "paper-v1", "paper-v2"}
    assert set(MODEL_SIZES) - {"tiny"} == published  # "tiny" is distwm's own test size


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


def test_seed_names_of_the_eval_cadence_are_aliases_of_eval_interval_and_eval_episodes(tmp_path):
    cfg = DreamerConfig(test_interval=2500, test_episodes=3)
    assert (cfg.eval_interval, cfg.eval_episodes) == (2500, 3)
    assert DreamerConfig.from_dict({"test_interval": 2500, "test_episodes": 3}) == cfg
    assert DreamerConfig.from_yaml("test_interval: 2500\ntest_episodes: 3\n") == cfg
    assert DreamerConfig().replace(test_interval=2500).set_dotted("test_episodes=3") == cfg
    data = cfg.to_dict()  # only the canonical names are written
    assert "test_interval" not in data and "test_episodes" not in data
    assert (data["eval_interval"], data["eval_episodes"]) == (2500, 3)
    cfg.to_yaml(tmp_path / "c.yaml")
    assert DreamerConfig.from_yaml(tmp_path / "c.yaml") == cfg
    with pytest.raises(ValueError, match="'test_interval' and 'eval_interval'.*give only 'eval_interval'"):
        DreamerConfig(test_interval=1, eval_interval=2)
    with pytest.raises(ValueError, match="eval_episodes must be a positive integer"):
        DreamerConfig.from_dict({"test_episodes": 0})


@pytest.mark.parametrize("field, value, message", [
    ("eval_interval", -1, "DreamerConfig.eval_interval must be an integer >= 0"),
    ("checkpoint_interval", 1.5, "DreamerConfig.checkpoint_interval must be an integer >= 0"),
    ("log_interval", 0, "DreamerConfig.log_interval must be a positive integer"),
    ("buffer_memory_limit", 0.0, r"buffer_memory_limit must be a fraction of the available memory in \(0, 1\]"),
    ("buffer_memory_limit", 1.5, "buffer_memory_limit"),
])
def test_cadences_and_memory_limit_are_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        DreamerConfig(**{field: value})
    assert DreamerConfig(buffer_memory_limit=0.5).buffer_memory_limit == 0.5
    assert DreamerConfig().buffer_memory_limit is None


def test_every_agent_config_has_the_cadences_in_env_steps():
    from distwm.configs.planet_config import PlanetConfig

    for cls in (DreamerConfig, PlanetConfig):
        names = cls.field_names()
        for name in ("eval_interval", "eval_episodes", "checkpoint_interval", "log_interval"):
            assert name in names, (cls.__name__, name)
    planet = PlanetConfig()
    assert (planet.eval_interval, planet.checkpoint_interval, planet.max_nonfinite_updates) == (25_000, 25_000, 10)
    with pytest.raises(ValueError, match="PlanetConfig.eval_interval must be an integer >= 0"):
        PlanetConfig(eval_interval=-5)
    with pytest.raises(ValueError, match="PlanetConfig.max_nonfinite_updates must be a positive int"):
        PlanetConfig(max_nonfinite_updates=0)
