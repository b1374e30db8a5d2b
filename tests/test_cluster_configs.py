"""The cluster configs under cluster/configs: Ray's autoscaler schema for the launcher YAMLs
(AWS, GCP) and structural checks of the KubeRay RayCluster (no kubectl here)."""

from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIGS = Path(__file__).resolve().parents[1] / "cluster" / "configs"


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_passes_rays_schema_and_scales_workers_from_zero(name):
    config = prepare_config(yaml.safe_load((CONFIGS / name).read_text()))
    validate_config(config)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["CPU"] == 0  # the head trains nothing
    assert types["cpu_worker"]["min_workers"] == 0 and "GPU" not in types["cpu_worker"]["resources"]
    assert types["gpu_worker"]["min_workers"] == 0 and types["gpu_worker"]["resources"]["GPU"] == 1
    assert any("labtrain" in c for c in config["setup_commands"])


def test_kuberay_cluster_has_an_autoscaled_head_cpu_and_gpu_groups():
    spec = yaml.safe_load((CONFIGS / "kuberay.yaml").read_text())
    assert (spec["apiVersion"], spec["kind"]) == ("ray.io/v1", "RayCluster")
    body = spec["spec"]
    assert body["enableInTreeAutoscaling"] is True
    head = body["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265, 8000} <= ports
    groups = {g["groupName"]: g for g in body["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert 0 == group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        container = group["template"]["spec"]["containers"][0]
        assert container["image"].startswith("labtrain:")
        assert container["resources"]["requests"] == container["resources"]["limits"]
    assert groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
