"""The public entry points: names -> configs, models and environments.

Everything is driven by the catalog (:mod:`distwm.registry`, built-in rows in
:mod:`distwm._exports`): a family is described by its :class:`ModelSpec` (protocol class,
kind, env backends), never by a branch here. Nothing here imports torch, ray or a simulator
until a model or env is actually built.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distwm import registry as _registry
from distwm._exports import BUILTIN_ENV_BACKENDS, BUILTIN_MODELS
from distwm.agent import import_object
from distwm.registry import (
    MODEL_KINDS,
    EnvBackendSpec,
    ModelSpec,
    apply_overrides,
    create_config,
    default_config,
    get_env_backend_spec,
    get_model_spec,
    list_env_backends,
    list_models,
    make_env,
    model_backends,
)

__all__ = [
    "BUILTIN_ENV_BACKENDS",
    "BUILTIN_MODELS",
    "MODEL_KINDS",
    "EnvBackendSpec",
    "ModelSpec",
    "create_config",
    "create_model",
    "get_env_backend_spec",
    "get_model_spec",
    "list_env_backends",
    "list_envs",
    "list_models",
    "make_env",
]


# -- environments per model -------------------------------------------------------------------

def _backend_envs(backend: str) -> list[str]:
    lister = _registry.env_backend_lister(backend)
    if lister is not None:
        return sorted(lister())
    if backend in _registry.registered_env_backends():
        return []
    from distwm.envs.auto import list_backend_envs

    return list_backend_envs(backend)


def list_envs(model: str | None = None) -> list[str] | dict[str, list[str]]:
    """Known environment ids: ``{backend: [ids]}``, or a flat list of the ids of the backends
    ``model`` trains on (its spec's ``backends``; every backend when that is empty)."""
    if model is None:
        return {backend: _backend_envs(backend) for backend in list_env_backends()}
    ids: list[str] = []
    for backend in model_backends(model):
        ids.extend(_backend_envs(backend))
    return sorted(dict.fromkeys(ids))


# -- models -----------------------------------------------------------------------------------

def _resolve_config(spec: ModelSpec, config: Any) -> Any:
    default = default_config(spec)
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
        return apply_overrides(default, data)
    if isinstance(config, Mapping):
        return apply_overrides(default, dict(config))
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
    return target(apply_overrides(cfg, cfg_overrides), **rest)
