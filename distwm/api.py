"""The public entry points: names -> configs, models and environments.

Nothing here imports torch, ray or a simulator until a model or env is actually built.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

from distwm._names import normalize_name, unknown_name_error
from distwm.agent import import_object
from distwm.registry import EnvBackendSpec, ModelSpec
from distwm import registry as _registry

__all__ = [
    "ModelSpec",
    "EnvBackendSpec",
    "BUILTIN_MODELS",
    "BUILTIN_ENV_BACKENDS",
    "create_config",
    "create_model",
    "get_env_backend_spec",
    "get_model_spec",
    "list_env_backends",
    "list_envs",
    "list_models",
    "make_env",
]

_DREAMER = "distwm.models.dreamer:DreamerAgent"
_DREAMER_CONFIGS = "distwm.configs.dreamer_config"

#: Built-in models. ``list_models`` shows only those whose implementation is installed.
BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("dreamer", _DREAMER, f"{_DREAMER_CONFIGS}:dreamer_v3_config",
              "DreamerV3 agent (discrete latents, symlog two-hot heads); alias of dreamer-v3",
              ("dreamer-agent", "dreameragent")),
    ModelSpec("dreamer-v1", _DREAMER, f"{_DREAMER_CONFIGS}:dreamer_v1_config",
              "DreamerV1: Gaussian latents, free nats, MSE heads", ("dreamerv1",)),
    ModelSpec("dreamer-v2", _DREAMER, f"{_DREAMER_CONFIGS}:dreamer_v2_config",
              "DreamerV2: categorical latents, KL balancing 0.8", ("dreamerv2",)),
    ModelSpec("dreamer-v3", _DREAMER, f"{_DREAMER_CONFIGS}:dreamer_v3_config",
              "DreamerV3 as published", ("dreamerv3",)),
    ModelSpec("planet", "distwm.models.planet:Planet", "distwm.configs.planet_config:PlanetConfig",
              "PlaNet: latent planning with CEM over a recurrent state-space model", ("planet-agent",)),
    ModelSpec("modular-rssm", "distwm.models.modular_rssm:create_modular_rssm", None,
              "RSSM with swappable encoder, decoder and recurrent backbone",
              ("rssm", "modularrssm")),
)

#: Built-in env backends; each factory is ``factory(env_id, **kwargs) -> gymnasium.Env``.
BUILTIN_ENV_BACKENDS: tuple[EnvBackendSpec, ...] = (
    EnvBackendSpec("gym", "distwm.envs.gym_env:make_gym_env",
                   "Gymnasium registry ids (state, or image from render)",
                   ("gymnasium", "gym-env", "classic-control")),
    EnvBackendSpec("dmc", "distwm.envs.dmc:make_dmc_env",
                   "DeepMind Control Suite (domain-task ids), state and/or pixels",
                   ("dm-control", "dmcontrol", "deepmind-control", "dm-control-suite")),
    EnvBackendSpec("atari", "distwm.envs.ale_atari_env:make_atari_env",
                   "Arcade Learning Environment via ale-py (ROMs included)", ("ale", "ale-py")),
    EnvBackendSpec("mujoco", "distwm.envs.mujoco_env:make_mujoco_env",
                   "Native MuJoCo from an MJCF .xml or .mjb file", ("mj", "native-mujoco")),
    EnvBackendSpec("robotics", "distwm.envs.robotics_env:make_robotics_env",
                   "Gymnasium-Robotics tasks (extra: robotics)",
                   ("gymnasium-robotics", "gym-robotics")),
    EnvBackendSpec("brax", "distwm.envs.brax_env:make_brax_env",
                   "Brax physics on CPU JAX (extra: brax)", ()),
    EnvBackendSpec("unity", "distwm.envs.unity_env:make_unity_mlagents_env",
                   "Unity ML-Agents executable (extra: unity)",
                   ("mlagents", "ml-agents", "unity-mlagents")),
)

#: Env backends each model family trains on (for ``list_envs(model)``).
_MODEL_BACKENDS: dict[str, tuple[str, ...]] = {
    "dreamer": ("dmc", "gym", "atari", "mujoco", "robotics", "brax", "unity"),
    "planet": ("dmc", "gym", "mujoco"),
    "modular-rssm": ("dmc", "gym", "mujoco"),
}


# -- catalog lookups --------------------------------------------------------------------------

def _module_available(import_path: str) -> bool:
    module = import_path.partition(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _model_table() -> dict[str, ModelSpec]:
    table = {s.name: s for s in BUILTIN_MODELS if _module_available(s.import_path)}
    table.update(_registry.registered_models())
    return table


def _backend_table() -> dict[str, EnvBackendSpec]:
    table = {s.name: s for s in BUILTIN_ENV_BACKENDS}
    table.update(_registry.registered_env_backends())
    return table


def _lookup(kind: str, name: str, table: Mapping[str, Any]):
    key = normalize_name(name)
    if key in table:
        return table[key]
    for spec in table.values():
        if key in spec.aliases:
            return spec
    aliases = [a for spec in table.values() for a in spec.aliases]
    raise unknown_name_error(kind, name, table, aliases)


def get_model_spec(name: str) -> ModelSpec:
    """Return metadata for a model name or alias (case and ``_``/``-`` insensitive)."""
    return _lookup("model", name, _model_table())


def get_env_backend_spec(name: str) -> EnvBackendSpec:
    """Return metadata for an environment backend name or alias."""
    return _lookup("env backend", name, _backend_table())


def list_models() -> list[str]:
    """Canonical model names that ``create_model()`` can build in this installation."""
    return sorted(_model_table())


def list_env_backends() -> list[str]:
    """Canonical backend names accepted by ``make_env()``."""
    return sorted(_backend_table())


def _backend_envs(backend: str) -> list[str]:
    lister = _registry.env_backend_lister(backend)
    if lister is not None:
        return sorted(lister())
    if backend in _registry.registered_env_backends():
        return []
    from distwm.envs.auto import list_backend_envs

    return list_backend_envs(backend)


def list_envs(model: str | None = None) -> list[str] | dict[str, list[str]]:
    """Known environment ids: ``{backend: [ids]}``, or a flat list for one model family."""
    if model is None:
        return {backend: _backend_envs(backend) for backend in list_env_backends()}
    spec = get_model_spec(model)
    family = spec.name.split("-v")[0] if spec.name.startswith("dreamer") else spec.name
    backends = _MODEL_BACKENDS.get(family, tuple(list_env_backends()))
    ids: list[str] = []
    for backend in backends:
        ids.extend(_backend_envs(backend))
    return sorted(dict.fromkeys(ids))


# -- configs and models -----------------------------------------------------------------------

def _default_config(spec: ModelSpec) -> Any:
    if spec.config_path is None:
        raise ValueError(
            f"Model {spec.name!r} has no config class; pass its constructor arguments to "
            "create_model() directly"
        )
    factory = import_object(spec.config_path)
    return factory()


def _apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    if not overrides:
        return config
    if hasattr(config, "replace"):
        return config.replace(**overrides)
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"Unknown config field {key!r} for {type(config).__name__}")
        setattr(config, key, value)
    return config


def create_config(model: str, **overrides: Any) -> Any:
    """Create the default config object for ``model`` and apply ``overrides``.

    >>> cfg = create_config("dreamer", env="walker-walk", seed=7)
    >>> cfg.env
    'walker-walk'
    """
    return _apply_overrides(_default_config(get_model_spec(model)), overrides)


def _resolve_config(spec: ModelSpec, config: Any) -> Any:
    default = _default_config(spec)
    if config is None:
        return default
    if isinstance(config, (str, Path)):
        import yaml

        path = Path(config)
        if not path.is_file():
            raise ValueError(f"Config file {str(path)!r} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"Config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
        return _apply_overrides(default, data)
    if isinstance(config, Mapping):
        return _apply_overrides(default, dict(config))
    if isinstance(config, type(default)):
        return config
    raise ValueError(
        f"config for {spec.name!r} must be a {type(default).__name__}, a dict or a YAML path, "
        f"got {type(config).__name__}"
    )


def create_model(model: str, config: Any = None, **overrides: Any) -> Any:
    """Instantiate a model or agent from a name.

    Keyword overrides that are config fields go into the config; the rest are passed to the
    constructor or factory.

    >>> agent = create_model("dreamer", env="walker-walk", total_steps=1000)  # doctest: +SKIP
    """
    spec = get_model_spec(model)
    target = import_object(spec.import_path)
    if spec.config_path is None:
        if config is not None:
            overrides = {"config": config, **overrides}
        return target(**overrides)
    cfg = _resolve_config(spec, config)
    fields = set(cfg.field_names()) if hasattr(cfg, "field_names") else set(vars(cfg))
    cfg_overrides = {k: v for k, v in overrides.items() if k in fields}
    rest = {k: v for k, v in overrides.items() if k not in fields}
    return target(_apply_overrides(cfg, cfg_overrides), **rest)


# -- environments -----------------------------------------------------------------------------

def _detect_backend(env_id: str) -> str:
    tried = []
    for name in _registry.registered_env_backends():
        matcher = _registry.env_backend_matcher(name)
        if matcher is not None:
            tried.append(name)
            if matcher(env_id):
                return name
    from distwm.envs.auto import detect_backend

    backend, builtin_tried = detect_backend(env_id)
    if backend is not None:
        return backend
    tried.extend(builtin_tried)
    raise ValueError(
        f"No env backend recognises {env_id!r} (tried: {', '.join(tried)}). "
        f"Pass backend= one of {', '.join(list_env_backends())}, or check the id with "
        "`distwm envs`."
    )


def make_env(env_id: str, backend: str = "auto", **kwargs: Any) -> Any:
    """Create an environment with one entry point for every backend.

    ``env_id``: a backend id (``walker-walk``, ``ALE/Pong-v5``, ``pong``, ``CartPole-v1``), an
    MJCF/MJB path or a Unity executable. ``backend``: one of ``list_env_backends()`` or
    ``"auto"``. Other keyword arguments go to the backend's factory.
    """
    if not isinstance(env_id, (str, Path)) or not str(env_id):
        raise ValueError(f"env_id must be a non-empty string or path, got {env_id!r}")
    env_id = str(env_id)
    name = _detect_backend(env_id) if normalize_name(backend) == "auto" else backend
    spec = get_env_backend_spec(name)
    factory = import_object(spec.factory_path)
    return factory(env_id, **kwargs)
