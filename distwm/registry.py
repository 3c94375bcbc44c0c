"""Register extra world models and environment backends at run time.

Plugins registered here are honoured by :func:`distwm.create_model`, :func:`distwm.create_config`,
:func:`distwm.make_env` and every ``list_*`` / ``get_*`` function::

    import distwm
    from distwm.registry import register_model, register_env_backend

    register_model("my-wm", "my_pkg.models:MyWorldModel", aliases=("mywm",))
    register_env_backend("procgen", "my_pkg.envs:make_procgen_env",
                         matcher=lambda env_id: env_id.startswith("procgen:"),
                         env_lister=lambda: ["procgen:coinrun"])

Registering a name that already exists (built in or registered) raises unless
``overwrite=True``; deregistering restores the built-in entry if there was one.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

from distwm._names import normalize_name, unknown_name_error

__all__ = [
    "ModelSpec",
    "EnvBackendSpec",
    "register_model",
    "deregister_model",
    "register_env_backend",
    "deregister_env_backend",
    "registered_models",
    "registered_env_backends",
    "env_backend_matcher",
    "env_backend_lister",
]


class ModelSpec(NamedTuple):
    """Metadata describing a model available through ``create_model()``.

    ``import_path`` ("module:attr") names the class or factory; ``config_path`` names a
    config class or a zero-argument function that returns the default config.
    """

    name: str
    import_path: str
    config_path: str | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()


class EnvBackendSpec(NamedTuple):
    """Metadata describing an environment backend available through ``make_env``.

    ``factory_path`` ("module:function") names ``factory(env_id, **kwargs) -> env``.
    """

    name: str
    factory_path: str
    description: str = ""
    aliases: tuple[str, ...] = ()


_MODELS: dict[str, ModelSpec] = {}
_BACKENDS: dict[str, EnvBackendSpec] = {}
_MATCHERS: dict[str, Callable[[str], bool]] = {}
_LISTERS: dict[str, Callable[[], list[str]]] = {}


def _check_import_path(path: str, what: str) -> None:
    if not isinstance(path, str) or ":" not in path or path.startswith(":") or path.endswith(":"):
        raise ValueError(f"Bad {what} {path!r}: expected 'package.module:attribute'")


def _normalized_spec(spec, kind):
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
) -> ModelSpec:
    """Register a world model under ``name`` (and ``aliases``) for ``create_model``."""
    from distwm import api

    spec = name if isinstance(name, ModelSpec) else ModelSpec(
        name, import_path or "", config_path, description, tuple(aliases)
    )
    _check_import_path(spec.import_path, "import_path")
    if spec.config_path is not None:
        _check_import_path(spec.config_path, "config_path")
    spec = _normalized_spec(spec, "model")
    builtin = {n for s in api.BUILTIN_MODELS for n in (s.name, *s.aliases)}
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
    from distwm import api

    spec = name if isinstance(name, EnvBackendSpec) else EnvBackendSpec(
        name, factory_path or "", description, tuple(aliases)
    )
    _check_import_path(spec.factory_path, "factory_path")
    spec = _normalized_spec(spec, "env backend")
    builtin = {n for s in api.BUILTIN_ENV_BACKENDS for n in (s.name, *s.aliases)}
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
