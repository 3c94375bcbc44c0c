"""Validate cluster configs offline, with the same steps Ray runs before it launches anything.

``validate_cluster_config(path)`` accepts

* a Ray cluster-launcher config (``ray up``: ``cluster/cluster.yaml``, ``cluster/onprem.yaml``).
  It runs what ``ray up`` runs in ``ray.autoscaler._private.commands._bootstrap_config`` up to
  the point where a cloud provider would be contacted: ``prepare_config`` (defaults of the
  provider, merged setup commands, docker checks, per node type worker bounds) and then
  ``validate_config`` (the JSON schema ``ray/autoscaler/ray-schema.json`` plus Ray's
  consistency checks). No credentials are needed.
* a KubeRay ``RayCluster`` or ``RayJob`` manifest (``apiVersion: ray.io/v1``): a structural
  check of the CRD fields distwm's manifests rely on (:mod:`distwm.tune.kuberay`), then
  Ray's own derivation of the autoscaling config from the ``RayCluster`` spec (what the
  autoscaler inside a KubeRay head runs), validated by ``validate_config``.

Any problem raises :class:`ClusterConfigError` (a ``ValueError``) whose message starts with
the file and names the offending field.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ClusterConfigError", "validate_cluster_config", "load_yaml_mapping"]


class ClusterConfigError(ValueError):
    """A cluster config that Ray or KubeRay would reject."""


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; errors name the file (and line)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ClusterConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ClusterConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ClusterConfigError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def validate_cluster_config(path: str | os.PathLike) -> dict[str, Any]:
    """Validate a ``ray up`` config or a KubeRay manifest; return the config Ray would use.

    For a cluster-launcher config that is the prepared config (defaults filled in); for a
    KubeRay manifest, the autoscaling config Ray derives from the cluster spec.
    """
    data = load_yaml_mapping(path)
    if "apiVersion" in data or "kind" in data:
        from distwm.tune.kuberay import validate_kuberay_manifest

        return validate_kuberay_manifest(data, source=str(path))
    return validate_launcher_config(data, source=str(path))


def _ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    schema_path = os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")
    with open(schema_path) as f:
        return json.load(f)


def unknown_field_message(source: str, where: str, key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    field = f"{where}.{key}" if where else key
    return f"{source}: unknown field {field!r}.{hint} Valid fields: {', '.join(sorted(valid))}"


def format_schema_error(source: str, error: Any) -> str:
    """A one-line message for a ``jsonschema.ValidationError``: file, field path, problem."""
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extras = [
            k for k in error.instance
            if k not in allowed and not any(re.search(p, str(k)) for p in patterns)
        ]
        if extras:
            return unknown_field_message(source, where, str(extras[0]), allowed)
    return f"{source}: field {where or '<top level>'!r}: {error.message}"


def _check_provider(data: Mapping[str, Any], source: str) -> None:
    from ray.autoscaler._private.providers import _NODE_PROVIDERS

    provider = data.get("provider")
    if not isinstance(provider, Mapping):
        raise ClusterConfigError(
            f"{source}: field 'provider' is required and must be a mapping with a 'type'"
        )
    kinds = sorted(k for k, v in _NODE_PROVIDERS.items() if v is not None)
    kind = provider.get("type")
    if kind not in kinds:
        raise ClusterConfigError(
            f"{source}: field 'provider.type': {kind!r} is not a Ray node provider; "
            f"valid: {', '.join(kinds)}"
        )
    if kind in ("aws", "gcp") and not isinstance(provider.get("region"), str):
        raise ClusterConfigError(f"{source}: field 'provider.region' is required for {kind}")


def validate_launcher_config(data: Mapping[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Ray's ``prepare_config`` then ``validate_config`` on a ``ray up`` config mapping."""
    import click
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = _ray_schema()
    valid_top = list(schema["properties"])
    for key in data:
        if key not in valid_top:
            raise ClusterConfigError(unknown_field_message(source, "", str(key), valid_top))
    _check_provider(data, source)
    try:
        prepared = prepare_config(dict(data))
    except click.exceptions.ClickException as exc:  # cli_logger.abort
        raise ClusterConfigError(f"{source}: {exc.message}") from None
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise ClusterConfigError(f"{source}: Ray rejected the config: {exc!r}") from None
    try:
        validate_config(prepared)
    except jsonschema.ValidationError as exc:
        raise ClusterConfigError(format_schema_error(source, exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise ClusterConfigError(f"{source}: {exc}") from None
    return prepared
