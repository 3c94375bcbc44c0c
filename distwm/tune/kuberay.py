"""Structural checks of KubeRay ``RayCluster`` / ``RayJob`` manifests (CRD ``ray.io/v1``).

Kubernetes rejects unknown fields of a CRD (strict field validation) and KubeRay rejects
groups without a pod template; this module checks, without a cluster, the fields distwm's
manifests rely on, with their types, then hands the cluster spec to Ray's own KubeRay
autoscaler code (``_derive_autoscaling_config_from_ray_cr``), which parses resources, custom
resources from ``rayStartParams`` and worker bounds and runs ``validate_config``.
Field lists follow ``ray-operator/apis/ray/v1/{raycluster,rayjob}_types.go`` (KubeRay 1.x).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from distwm.tune.cluster import ClusterConfigError, unknown_field_message, format_schema_error

__all__ = ["validate_kuberay_manifest", "KUBERAY_API_VERSION", "KUBERAY_KINDS"]

KUBERAY_API_VERSION = "ray.io/v1"
KUBERAY_KINDS = ("RayCluster", "RayJob")

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
_CLUSTER_SPEC_FIELDS = (
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
    "autoscalerOptions", "headServiceAnnotations", "suspend", "managedBy",
    "gcsFaultToleranceOptions", "upgradeStrategy",
)
_HEAD_GROUP_FIELDS = (
    "serviceType", "headService", "enableIngress", "rayStartParams", "template",
    "resources", "labels",
)
_WORKER_GROUP_FIELDS = (
    "groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
    "template", "scaleStrategy", "idleTimeoutSeconds", "suspend", "resources", "labels",
)
_AUTOSCALER_OPTION_FIELDS = (
    "resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts",
    "securityContext", "idleTimeoutSeconds", "upscalingMode", "version",
)
_JOB_SPEC_FIELDS = (
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
    "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy",
    "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
    "entrypointNumCpus", "entrypointNumGpus", "entrypointMemory", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend", "schedule",
)
_SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
_UPSCALING_MODES = ("Default", "Aggressive", "Conservative")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Checker:
    """Walks a manifest; every error names the source file and the dotted field path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> ClusterConfigError:
        return ClusterConfigError(f"{self.source}: field {where!r}: {problem}")

    def mapping(self, value: Any, where: str, fields: tuple[str, ...] | None = None) -> dict:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        if fields is not None:
            for key in value:
                if key not in fields:
                    raise ClusterConfigError(
                        unknown_field_message(self.source, where, str(key), list(fields))
                    )
        return dict(value)

    def typed(self, parent: Mapping, key: str, where: str, tp: type | tuple, required: bool):
        if key not in parent:
            if required:
                raise self.fail(f"{where}.{key}", "is required")
            return None
        value = parent[key]
        if isinstance(value, bool) and tp is int or not isinstance(value, tp):
            names = tp.__name__ if isinstance(tp, type) else " or ".join(t.__name__ for t in tp)
            raise self.fail(f"{where}.{key}", f"expected {names}, got {value!r}")
        return value

    def string_map(self, parent: Mapping, key: str, where: str, required: bool) -> None:
        value = self.typed(parent, key, where, dict, required)
        for k, v in (value or {}).items():
            if not isinstance(v, str):
                raise self.fail(
                    f"{where}.{key}.{k}", f"must be a string (quote it: \"{v}\"), got {v!r}"
                )

    def custom_resources(self, group: Mapping, where: str) -> None:
        """Parse ``rayStartParams.resources`` with Ray's own parser, naming the field."""
        from ray.autoscaler._private.kuberay.autoscaling_config import _get_custom_resources

        params = group.get("rayStartParams") or {}
        if "resources" not in params:
            return
        try:
            _get_custom_resources({}, params, group.get("groupName", "headgroup"))
        except Exception:
            raise self.fail(
                f"{where}.rayStartParams.resources",
                f"{params['resources']!r} is not Ray's format: a quoted JSON object of "
                "integers, written in YAML as '\"{\\\"learner\\\": 1}\"'",
            ) from None

    def pod_template(self, group: Mapping, where: str) -> None:
        template = self.mapping(group.get("template"), f"{where}.template")
        pod = self.mapping(template.get("spec"), f"{where}.template.spec")
        containers = self.typed(pod, "containers", f"{where}.template.spec", list, True)
        if not containers:
            raise self.fail(f"{where}.template.spec.containers", "needs the Ray container")
        for i, container in enumerate(containers):
            cwhere = f"{where}.template.spec.containers[{i}]"
            self.mapping(container, cwhere)
            self.typed(container, "name", cwhere, str, True)
            self.typed(container, "image", cwhere, str, True)
            if "resources" in container:
                res = self.mapping(container["resources"], f"{cwhere}.resources",
                                   ("requests", "limits", "claims"))
                for part in ("requests", "limits"):
                    self.typed(res, part, f"{cwhere}.resources", dict, False)

    def group(self, group: Any, where: str, head: bool) -> None:
        fields = _HEAD_GROUP_FIELDS if head else _WORKER_GROUP_FIELDS
        group = self.mapping(group, where, fields)
        self.string_map(group, "rayStartParams", where, required=False)
        self.custom_resources(group, where)
        self.pod_template(group, where)
        if head:
            return
        name = self.typed(group, "groupName", where, str, True)
        if not _DNS_LABEL.match(name):
            raise self.fail(f"{where}.groupName", f"{name!r} is not a DNS-1123 label")
        bounds = {k: self.typed(group, k, where, int, k != "replicas")
                  for k in ("replicas", "minReplicas", "maxReplicas")}
        for key, value in bounds.items():
            if value is not None and value < 0:
                raise self.fail(f"{where}.{key}", f"must be >= 0, got {value}")
        if bounds["minReplicas"] > bounds["maxReplicas"]:
            raise self.fail(f"{where}.minReplicas",
                            f"{bounds['minReplicas']} exceeds maxReplicas {bounds['maxReplicas']}")
        replicas = bounds["replicas"]
        if replicas is not None and not bounds["minReplicas"] <= replicas <= bounds["maxReplicas"]:
            raise self.fail(f"{where}.replicas", f"{replicas} is outside [minReplicas, maxReplicas]")

    def cluster_spec(self, spec: Any, where: str) -> dict:
        spec = self.mapping(spec, where, _CLUSTER_SPEC_FIELDS)
        self.typed(spec, "rayVersion", where, str, False)
        self.typed(spec, "enableInTreeAutoscaling", where, bool, False)
        if "autoscalerOptions" in spec:
            options = self.mapping(spec["autoscalerOptions"], f"{where}.autoscalerOptions",
                                   _AUTOSCALER_OPTION_FIELDS)
            mode = options.get("upscalingMode", "Default")
            if mode not in _UPSCALING_MODES:
                raise self.fail(f"{where}.autoscalerOptions.upscalingMode",
                                f"{mode!r} is not one of {', '.join(_UPSCALING_MODES)}")
            self.typed(options, "idleTimeoutSeconds", f"{where}.autoscalerOptions", int, False)
        if "headGroupSpec" not in spec:
            raise self.fail(f"{where}.headGroupSpec", "is required")
        self.group(spec["headGroupSpec"], f"{where}.headGroupSpec", head=True)
        groups = self.typed(spec, "workerGroupSpecs", where, list, False) or []
        names = set()
        for i, group in enumerate(groups):
            self.group(group, f"{where}.workerGroupSpecs[{i}]", head=False)
            if group["groupName"] in names:
                raise self.fail(f"{where}.workerGroupSpecs[{i}].groupName",
                                f"duplicate group name {group['groupName']!r}")
            names.add(group["groupName"])
        return spec

    def job_spec(self, spec: Any, where: str) -> dict | None:
        import yaml

        spec = self.mapping(spec, where, _JOB_SPEC_FIELDS)
        mode = spec.get("submissionMode", "K8sJobMode")
        if mode not in _SUBMISSION_MODES:
            raise self.fail(f"{where}.submissionMode",
                            f"{mode!r} is not one of {', '.join(_SUBMISSION_MODES)}")
        self.typed(spec, "entrypoint", where, str, mode != "InteractiveMode")
        self.typed(spec, "shutdownAfterJobFinishes", where, bool, False)
        self.typed(spec, "ttlSecondsAfterFinished", where, int, False)
        runtime_env = self.typed(spec, "runtimeEnvYAML", where, str, False)
        if runtime_env is not None:
            try:
                parsed = yaml.safe_load(runtime_env)
            except yaml.YAMLError as exc:
                raise self.fail(f"{where}.runtimeEnvYAML", f"not valid YAML: {exc}") from None
            if not isinstance(parsed, dict):
                raise self.fail(f"{where}.runtimeEnvYAML", "must hold a YAML mapping")
        if ("rayClusterSpec" in spec) == ("clusterSelector" in spec):
            raise self.fail(where, "needs exactly one of 'rayClusterSpec' (a new cluster) "
                                   "or 'clusterSelector' (an existing RayCluster)")
        if "clusterSelector" in spec:
            self.string_map(spec, "clusterSelector", where, required=True)
            return None
        return self.cluster_spec(spec["rayClusterSpec"], f"{where}.rayClusterSpec")


def validate_kuberay_manifest(data: Mapping[str, Any], source: str = "<manifest>") -> dict:
    """Check a RayCluster/RayJob manifest; return Ray's autoscaling config for its cluster.

    A ``RayJob`` that targets an existing cluster (``clusterSelector``) returns ``{}``.
    """
    import jsonschema
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    check = _Checker(source)
    data = check.mapping(data, "<top level>", _TOP_FIELDS)
    if data.get("apiVersion") != KUBERAY_API_VERSION:
        raise check.fail("apiVersion", f"{data.get('apiVersion')!r} is not "
                                       f"{KUBERAY_API_VERSION!r} (KubeRay 1.x)")
    kind = data.get("kind")
    if kind not in KUBERAY_KINDS:
        raise check.fail("kind", f"{kind!r} is not one of {', '.join(KUBERAY_KINDS)}")
    metadata = check.mapping(data.get("metadata"), "metadata")
    name = check.typed(metadata, "name", "metadata", str, True)
    if not _DNS_LABEL.match(name):
        raise check.fail("metadata.name", f"{name!r} is not a DNS-1123 label")
    namespace = check.typed(metadata, "namespace", "metadata", str, False) or "default"
    if kind == "RayCluster":
        cluster_spec = check.cluster_spec(data.get("spec"), "spec")
    else:
        cluster_spec = check.job_spec(data.get("spec"), "spec")
        if cluster_spec is None:
            return {}
    ray_cr = {"metadata": {"name": name, "namespace": namespace}, "spec": cluster_spec}
    try:
        return _derive_autoscaling_config_from_ray_cr(ray_cr)
    except jsonschema.ValidationError as exc:
        raise ClusterConfigError(format_schema_error(f"{source} (derived autoscaling config)",
                                                     exc)) from None
    except Exception as exc:  # Ray's parser raises bare KeyError/ValueError/JSONDecodeError
        raise ClusterConfigError(
            f"{source}: Ray's KubeRay autoscaler cannot read the cluster spec: {exc!r}"
        ) from None
