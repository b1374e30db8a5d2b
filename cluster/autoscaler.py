"""The node types an autoscaler may add, read from its config: a Ray cluster launcher YAML
(`available_node_types`) or a KubeRay `RayCluster` (`workerGroupSpecs`). Ray publishes no such list
for node types with no node running, so labtrain reads the config the autoscaler itself reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cluster.scheduler import NodeType
from labtrain.errors import ValidationError


def node_types_from_file(path: str | Path) -> tuple[NodeType, ...]:
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ValidationError(f"autoscaling config {path}: {exc.strerror or exc}") from None
    return node_types_from_text(text, str(path))


def node_types_from_text(text: str, source: str) -> tuple[NodeType, ...]:
    """The worker node types of a launcher config or a RayCluster (the head is not one: it is there
    already, and the autoscaler never adds another)."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"autoscaling config {source} is not YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ValidationError(f"autoscaling config {source} must be a mapping")
    if "available_node_types" in config:
        return _launcher_types(config, source)
    if config.get("kind") == "RayCluster":
        return _kuberay_types(config, source)
    raise ValidationError(
        f"autoscaling config {source} has neither 'available_node_types' (a Ray cluster launcher "
        "config) nor kind: RayCluster (KubeRay)"
    )


def _launcher_types(config: dict, source: str) -> tuple[NodeType, ...]:
    head, cap = config.get("head_node_type"), config.get("max_workers")
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        if name == head:
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("resources", {}), dict):
            raise ValidationError(f"autoscaling config {source}: node type {name!r} needs a 'resources' mapping")
        resources = {k: float(v) for k, v in (spec.get("resources") or {}).items() if k in ("CPU", "GPU")}
        most = spec.get("max_workers", cap if cap is not None else 1)
        types.append(NodeType(name, resources, int(most)))
    return tuple(types)


def _kuberay_types(config: dict, source: str) -> tuple[NodeType, ...]:
    types = []
    for group in (config.get("spec") or {}).get("workerGroupSpecs") or []:
        name = group.get("groupName", "?")
        start = {k: str(v) for k, v in (group.get("rayStartParams") or {}).items()}
        containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        cpus = _quantity(start.get("num-cpus") or limits.get("cpu") or "0", f"{source}: group {name} cpu")
        gpus = _quantity(start.get("num-gpus") or limits.get("nvidia.com/gpu") or "0", f"{source}: group {name} gpu")
        resources = {"CPU": float(int(cpus))} | ({"GPU": float(int(gpus))} if gpus else {})
        types.append(NodeType(name, resources, int(group.get("maxReplicas", group.get("replicas", 0)))))
    return tuple(types)


def _quantity(value: str, where: str) -> float:
    """A Kubernetes quantity as Ray counts it: '8' -> 8, '500m' -> 0.5."""
    match = re.fullmatch(r"\s*([0-9.]+)(m?)\s*", str(value))
    if not match:
        raise ValidationError(f"autoscaling config {where}: {value!r} is not a CPU or GPU count")
    return float(match.group(1)) / (1000 if match.group(2) else 1)
