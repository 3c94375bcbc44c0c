"""Every cluster config in cluster/ passes Ray's own validation; broken ones are rejected clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import require_module

require_module("jsonschema", "Ray's config validation needs jsonschema: pip install -e '.[test]' (ray brings it)")

from distwm.tune.cluster import ClusterConfigError, validate_cluster_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_CONFIGS = ["cluster/cluster.yaml", "cluster/onprem.yaml"]
KUBERAY_MANIFESTS = ["cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob.yaml"]


def test_every_cluster_yaml_is_covered():
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cluster").rglob("*.yaml"))
    assert found == sorted(LAUNCHER_CONFIGS + KUBERAY_MANIFESTS)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS + KUBERAY_MANIFESTS)
def test_cluster_config_validates(name):
    config = validate_cluster_config(ROOT / name)
    assert config["head_node_type"] in config["available_node_types"]


def test_aws_config_has_gpu_learner_and_autoscaling_cpu_workers():
    config = validate_cluster_config(ROOT / "cluster/cluster.yaml")
    types = config["available_node_types"]
    learner = [t for t in types.values() if t["resources"].get("learner")]
    assert len(learner) == 1 and learner[0]["resources"]["GPU"] >= 1
    cpu_only = [t for name, t in types.items()
                if name != config["head_node_type"] and not t["resources"].get("GPU")]
    assert cpu_only and all(t["min_workers"] < t["max_workers"] for t in cpu_only)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert any("distwm[all]" in c for c in config["head_setup_commands"])


def test_kuberay_gpu_group_advertises_learner_resource():
    config = validate_cluster_config(ROOT / "cluster/kuberay/raycluster.yaml")
    assert config["available_node_types"]["learner-gpu"]["resources"]["learner"] == 1
    assert config["available_node_types"]["learner-gpu"]["resources"]["GPU"] == 1


def _broken(tmp_path, name, mutate):
    data = yaml.safe_load((ROOT / name).read_text())
    mutate(data)
    path = tmp_path / Path(name).name
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ClusterConfigError) as info:
        validate_cluster_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    return message


def test_misspelled_top_level_key_is_rejected_with_suggestion(tmp_path):
    def mutate(d):
        d["max_worker"] = d.pop("max_workers")

    message = _broken(tmp_path, "cluster/cluster.yaml", mutate)
    assert "'max_worker'" in message and "Did you mean 'max_workers'" in message


def test_node_type_with_bad_field_is_rejected(tmp_path):
    def mutate(d):
        d["available_node_types"]["env_cpu"]["node_cfg"] = {"InstanceType": "c6i.large"}

    message = _broken(tmp_path, "cluster/cluster.yaml", mutate)
    assert "available_node_types.env_cpu.node_cfg" in message
    assert "node_config" in message


def test_fractional_resource_is_rejected(tmp_path):
    def mutate(d):
        d["available_node_types"]["learner_gpu"]["resources"]["GPU"] = 0.5

    message = _broken(tmp_path, "cluster/cluster.yaml", mutate)
    assert "available_node_types.learner_gpu.resources.GPU" in message


def test_unknown_provider_and_bad_head_type_are_rejected(tmp_path):
    message = _broken(tmp_path, "cluster/cluster.yaml",
                      lambda d: d["provider"].__setitem__("type", "awz"))
    assert "provider.type" in message and "aws" in message
    message = _broken(tmp_path, "cluster/cluster.yaml",
                      lambda d: d.__setitem__("head_node_type", "gpu_head"))
    assert "head_node_type" in message


def test_onprem_without_head_ip_is_rejected(tmp_path):
    message = _broken(tmp_path, "cluster/onprem.yaml", lambda d: d["provider"].pop("head_ip"))
    assert "head_ip" in message


def test_kuberay_misspelled_group_field_is_rejected(tmp_path):
    def mutate(d):
        d["spec"]["workerGroupSpecs"][0]["minReplica"] = 1

    message = _broken(tmp_path, "cluster/kuberay/raycluster.yaml", mutate)
    assert "spec.workerGroupSpecs[0].minReplica" in message and "minReplicas" in message


def test_kuberay_unquoted_start_param_and_bad_custom_resources_are_rejected(tmp_path):
    def unquoted(d):
        d["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0

    message = _broken(tmp_path, "cluster/kuberay/raycluster.yaml", unquoted)
    assert "spec.headGroupSpec.rayStartParams.num-cpus" in message

    def bad_json(d):
        d["spec"]["workerGroupSpecs"][0]["rayStartParams"]["resources"] = "{learner: 1}"

    message = _broken(tmp_path, "cluster/kuberay/raycluster.yaml", bad_json)
    assert "spec.workerGroupSpecs[0].rayStartParams.resources" in message


def test_rayjob_problems_are_rejected(tmp_path):
    message = _broken(tmp_path, "cluster/kuberay/rayjob.yaml",
                      lambda d: d["spec"].__setitem__("entryPoint", d["spec"].pop("entrypoint")))
    assert "spec.entryPoint" in message and "entrypoint" in message
    message = _broken(tmp_path, "cluster/kuberay/rayjob.yaml",
                      lambda d: d.__setitem__("apiVersion", "ray.io/v1alpha1"))
    assert "apiVersion" in message
    message = _broken(tmp_path, "cluster/kuberay/rayjob.yaml",
                      lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
                      ["spec"]["containers"][0].pop("image"))
    assert "containers[0].image" in message


def test_unreadable_files_are_rejected(tmp_path):
    with pytest.raises(ClusterConfigError, match="no such file"):
        validate_cluster_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: [unclosed\n")
    with pytest.raises(ClusterConfigError, match="not valid YAML"):
        validate_cluster_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ClusterConfigError, match="expected a mapping"):
        validate_cluster_config(listy)
