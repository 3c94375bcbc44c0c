"""The catalog of world models and environment backends: the built-in tables (in
:mod:`distwm._exports`) and plugins.

Every ``list_*`` / ``get_*`` function, :func:`create_config` and :func:`make_env` are here
(:mod:`distwm.api` re-exports them and adds ``create_model`` / ``list_envs``), so that
``envs/`` and ``configs/`` use them without importing :mod:`distwm.api`.
Plugins registered here are honoured everywhere::

    import distwm
    from distwm.registry import register_model, register_env_backend

    register_model("my-wm", "my_pkg.models:MyWorldModel", aliases=("mywm",),
                   protocol_path="my_pkg.models:MyCore", kind="rl-agent", backends=("gym",))
    register_env_backend("procgen", "my_pkg.envs:make_procgen_env",
                         matcher=lambda env_id: env_id.startswith("procgen:"),
                         env_lister=lambda: ["procgen:coinrun"])

Registering a name that already exists (built in or registered) raises unless
``overwrite=True``; deregistering restores the built-in entry if there was one.

This module imports neither torch, ray nor a simulator (it sits below ``envs`` and
``configs``, which use it; nothing here imports a model family at module level).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from distwm._names import normalize_name, unknown_name_error

__all__ = [
    "MODEL_KINDS",
    "EnvBackendSpec",
    "ModelSpec",
    "apply_overrides",
    "backend_table",
    "create_config",
    "default_config",
    "deregister_env_backend",
    "deregister_model",
    "detect_backend",
    "env_backend_lister",
    "env_backend_matcher",
    "get_env_backend_spec",
    "get_model_spec",
    "list_env_backends",
    "list_models",
    "make_env",
    "model_backends",
    "model_table",
    "register_env_backend",
    "register_model",
    "registered_env_backends",
    "registered_models",
]

#: What a model family is: an RL agent (``distwm.agent.Agent``: acts and learns from replay),
#: a dataset-trained model (``distwm.agent.Trainable`` only) or a component (a network that
#: other models are built from; no protocol of its own).
MODEL_KINDS: tuple[str, ...] = ("rl-agent", "dataset-trained", "component")


class _ModelSpecFields(NamedTuple):
    name: str
    import_path: str
    config_path: str | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()
    protocol_path: str | None = None
    kind: str = "rl-agent"
    backends: tuple[str, ...] = ()


class ModelSpec(_ModelSpecFields):
    """Metadata describing a model available through ``create_model()``.

    * ``import_path`` ("module:attr"): the class or factory ``create_model`` calls (for RL
      families the seed's single-process wrapper, e.g. ``DreamerAgent``);
    * ``config_path``: a config class or a zero-argument function returning the default config;
    * ``protocol_path``: the family's protocol class (``distwm.agent.Agent`` or ``Trainable``),
      built with ``Class.from_config(config, observation_space, action_space, device)``;
    * ``kind``: one of :data:`MODEL_KINDS`;
    * ``backends``: the env backends the model trains on (empty: all of them).
    """

    __slots__ = ()

    def __new__(cls, name: str, import_path: str, config_path: str | None = None,
                description: str = "", aliases: Iterable[str] = (), protocol_path: str | None = None,
                kind: str = "rl-agent", backends: Iterable[str] = ()):
        if kind not in MODEL_KINDS:
            raise ValueError(
                f"ModelSpec {name!r}: kind must be one of {', '.join(map(repr, MODEL_KINDS))}, got {kind!r}"
            )
        if isinstance(aliases, str) or isinstance(backends, str):
            raise ValueError(f"ModelSpec {name!r}: aliases and backends are sequences of names, not a string")
        backends = tuple(backends)
        if not all(isinstance(b, str) and b for b in backends):
            raise ValueError(f"ModelSpec {name!r}: backends must be non-empty strings, got {backends!r}")
        return super().__new__(cls, name, import_path, config_path, description, tuple(aliases),
                               protocol_path, kind, backends)


class EnvBackendSpec(NamedTuple):
    """Metadata describing an environment backend available through ``make_env``.

    ``factory_path`` ("module:function") names ``factory(env_id, **kwargs) -> env``.
    """

    name: str
    factory_path: str
    description: str = ""
    aliases: tuple[str, ...] = ()


# -- plugins --------------------------------------------------------------------------------------

_MODELS: dict[str, ModelSpec] = {}
_BACKENDS: dict[str, EnvBackendSpec] = {}
_MATCHERS: dict[str, Callable[[str], bool]] = {}
_LISTERS: dict[str, Callable[[], list[str]]] = {}


def _check_import_path(path: str, what: str) -> None:
    if not isinstance(path, str) or ":" not in path or path.startswith(":") or path.endswith(":"):
        raise ValueError(f"Bad {what} {path!r}: expected 'package.module:attribute'")


def _normalized_spec(spec):
    name = normalize_name(spec.name)
    aliases = tuple(sorted({normalize_name(a) for a in spec.aliases} - {name}))
    return spec._replace(name=name, aliases=aliases)


def _check_free(kind: str, spec, builtin_names: Iterable[str], table: dict, overwrite: bool) -> None:
    taken = set(builtin_names)
    for other in table.values():
        if other.name != spec.name:
            taken |= {other.name, *other.aliases}
    if not overwrite:
        taken |= set(table)
    clash = sorted(({spec.name} | set(spec.aliases)) & taken)
    if clash:
        raise ValueError(
            f"Cannot register {kind} {spec.name!r}: {', '.join(map(repr, clash))} already in use "
            "(pass overwrite=True to replace a registered entry)"
        )


def register_model(
    name: str | ModelSpec,
    import_path: str | None = None,
    config_path: str | None = None,
    description: str = "",
    aliases: Iterable[str] = (),
    overwrite: bool = False,
    *,
    protocol_path: str | None = None,
    kind: str = "rl-agent",
    backends: Iterable[str] = (),
) -> ModelSpec:
    """Register a world model under ``name`` (and ``aliases``) for ``create_model``.

    ``protocol_path`` names the protocol class (``"module:Class"``, see :class:`ModelSpec`),
    ``kind`` is one of :data:`MODEL_KINDS` and ``backends`` the env backends it trains on.
    """
    spec = name if isinstance(name, ModelSpec) else ModelSpec(
        name, import_path or "", config_path, description, tuple(aliases),
        protocol_path=protocol_path, kind=kind, backends=tuple(backends),
    )
    _check_import_path(spec.import_path, "import_path")
    for what in ("config_path", "protocol_path"):
        if getattr(spec, what) is not None:
            _check_import_path(getattr(spec, what), what)
    spec = _normalized_spec(spec)
    spec = spec._replace(backends=tuple(normalize_name(b) for b in spec.backends))
    from distwm._exports import BUILTIN_MODELS

    builtin = {n for s in BUILTIN_MODELS for n in (s.name, *s.aliases)}
    if overwrite:
        builtin -= {spec.name}
    _check_free("model", spec, builtin, _MODELS, overwrite)
    _MODELS[spec.name] = spec
    return spec


def deregister_model(name: str) -> ModelSpec:
    """Remove a registered model; raises ``ValueError`` if ``name`` was not registered."""
    key = normalize_name(name)
    for canonical, spec in _MODELS.items():
        if key == canonical or key in spec.aliases:
            return _MODELS.pop(canonical)
    raise unknown_name_error("registered model", name, _MODELS)


def register_env_backend(
    name: str | EnvBackendSpec,
    factory_path: str | None = None,
    description: str = "",
    aliases: Iterable[str] = (),
    matcher: Callable[[str], bool] | None = None,
    env_lister: Callable[[], list[str]] | None = None,
    overwrite: bool = False,
) -> EnvBackendSpec:
    """Register an env backend for ``make_env``.

    ``matcher(env_id) -> bool`` lets ``make_env(env_id, backend="auto")`` pick this backend;
    ``env_lister() -> list[str]`` feeds ``list_envs``.
    """
    spec = name if isinstance(name, EnvBackendSpec) else EnvBackendSpec(
        name, factory_path or "", description, tuple(aliases)
    )
    _check_import_path(spec.factory_path, "factory_path")
    spec = _normalized_spec(spec)
    from distwm._exports import BUILTIN_ENV_BACKENDS

    builtin = {n for s in BUILTIN_ENV_BACKENDS for n in (s.name, *s.aliases)}
    if overwrite:
        builtin -= {spec.name}
    _check_free("env backend", spec, builtin, _BACKENDS, overwrite)
    _BACKENDS[spec.name] = spec
    _MATCHERS.pop(spec.name, None)
    _LISTERS.pop(spec.name, None)
    if matcher is not None:
        _MATCHERS[spec.name] = matcher
    if env_lister is not None:
        _LISTERS[spec.name] = env_lister
    return spec


def deregister_env_backend(name: str) -> EnvBackendSpec:
    """Remove a registered env backend; raises ``ValueError`` if it was not registered."""
    key = normalize_name(name)
    for canonical, spec in _BACKENDS.items():
        if key == canonical or key in spec.aliases:
            _MATCHERS.pop(canonical, None)
            _LISTERS.pop(canonical, None)
            return _BACKENDS.pop(canonical)
    raise unknown_name_error("registered env backend", name, _BACKENDS)


def registered_models() -> dict[str, ModelSpec]:
    return dict(_MODELS)


def registered_env_backends() -> dict[str, EnvBackendSpec]:
    return dict(_BACKENDS)


def env_backend_matcher(name: str) -> Callable[[str], bool] | None:
    return _MATCHERS.get(name)


def env_backend_lister(name: str) -> Callable[[], list[str]] | None:
    return _LISTERS.get(name)


# -- lookups --------------------------------------------------------------------------------------

def _module_available(import_path: str) -> bool:
    module = import_path.partition(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def model_table() -> dict[str, ModelSpec]:
    """Canonical name -> spec of every buildable built-in model and every registered one."""
    from distwm._exports import BUILTIN_MODELS

    table = {s.name: s for s in BUILTIN_MODELS if _module_available(s.import_path)}
    table.update(_MODELS)
    return table


def backend_table() -> dict[str, EnvBackendSpec]:
    from distwm._exports import BUILTIN_ENV_BACKENDS

    table = {s.name: s for s in BUILTIN_ENV_BACKENDS}
    table.update(_BACKENDS)
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
    return _lookup("model", name, model_table())


def get_env_backend_spec(name: str) -> EnvBackendSpec:
    """Return metadata for an environment backend name or alias."""
    return _lookup("env backend", name, backend_table())


def list_models() -> list[str]:
    """Canonical model names that ``create_model()`` can build in this installation."""
    return sorted(model_table())


def list_env_backends() -> list[str]:
    """Canonical backend names accepted by ``make_env()``."""
    return sorted(backend_table())


def model_backends(model: str) -> tuple[str, ...]:
    """The env backends ``model`` trains on, canonical names (``spec.backends``; all if empty)."""
    spec = get_model_spec(model)
    if not spec.backends:
        return tuple(list_env_backends())
    return tuple(get_env_backend_spec(b).name for b in spec.backends)


# -- configs and envs (the parts of distwm.api that envs/ and configs/ use) ------------------------

def _import_object(path: str) -> Any:
    from distwm.agent import import_object  # light: no torch

    return import_object(path)


def default_config(spec: ModelSpec) -> Any:
    """A fresh default config object of ``spec`` (``ValueError`` if it has no config class)."""
    if spec.config_path is None:
        raise ValueError(
            f"Model {spec.name!r} has no config class; pass its constructor arguments to "
            "create_model() directly"
        )
    return _import_object(spec.config_path)()


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """``config`` with ``overrides`` applied (``config.replace`` when the config has one)."""
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
    return apply_overrides(default_config(get_model_spec(model)), overrides)


def detect_backend(env_id: str) -> str:
    """The backend that recognises ``env_id``: registered matchers first, then the built-ins."""
    tried = []
    for name in _BACKENDS:
        matcher = _MATCHERS.get(name)
        if matcher is not None:
            tried.append(name)
            if matcher(env_id):
                return name
    from distwm.envs.auto import detect_backend as detect_builtin_backend

    backend, builtin_tried = detect_builtin_backend(env_id)
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
    name = detect_backend(env_id) if normalize_name(backend) == "auto" else backend
    spec = get_env_backend_spec(name)
    return _import_object(spec.factory_path)(env_id, **kwargs)
