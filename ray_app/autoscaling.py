"""What the job manager reads of the Ray cluster's shape and what it shows its autoscaler: the
nodes alive now, the node types the autoscaler may add (from the config it reads), and the
bundles labtrain's queued jobs wait for (`ray.autoscaler.sdk.request_resources`)."""

from __future__ import annotations

import logging
from pathlib import Path

import ray

from cluster.autoscaler import node_types_from_file
from cluster.scheduler import Capacity, NodeType

log = logging.getLogger(__name__)
MONITOR = "autoscaler/_private/monitor.py"


def find_node_types(explicit: str | None) -> tuple[tuple[NodeType, ...], str | None]:
    """The autoscaler's node types and where they were read: `--autoscaling-config`, else the
    config of the cluster's own autoscaler process when it runs on this machine (the head: where
    `labtrain serve` runs), else Ray's published cluster config; none: a cluster without autoscaler."""
    if explicit:
        return node_types_from_file(explicit), explicit
    path = _monitor_config(ray.get_runtime_context().gcs_address)
    if path:
        return node_types_from_file(path), path
    published = _published_node_types()
    if published:
        return published, "Ray's cluster config"
    return (), None


def _monitor_config(gcs_address: str) -> str | None:
    """The `--autoscaling-config` of the monitor process of this cluster (its --gcs-address has our
    port; other clusters on the machine have other ports)."""
    port = gcs_address.rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith(MONITOR) for a in argv):
            continue
        flags = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        if flags.get("gcs-address", "").rsplit(":", 1)[-1] == port and flags.get("autoscaling-config"):
            return flags["autoscaling-config"]
    return None


def _published_node_types() -> tuple[NodeType, ...]:
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # an older or newer Ray without it
        return ()
    if config is None:
        return ()
    return tuple(
        NodeType(
            g.name,
            {k: float(v) for k, v in g.resources.items() if k in ("CPU", "GPU")},
            g.max_count if g.max_count >= 0 else 1_000,
        )
        for g in config.node_group_configs
        if g.max_count != 0
    )


def capacity(node_types: tuple[NodeType, ...]) -> Capacity:
    """The alive nodes' CPU and GPU totals, and the node types the autoscaler may add."""
    nodes = tuple({k: n["Resources"].get(k, 0.0) for k in ("CPU", "GPU")} for n in ray.nodes() if n["Alive"])
    return Capacity(nodes, node_types)


class Demand:
    """The bundles shown to the autoscaler. Ray takes a request as the capacity the cluster must
    at least have (as if idle), replaced by each call: so it is the bundles held by running jobs
    plus those queued jobs wait for, and nothing once no job waits for a node."""

    def __init__(self, enabled: bool):
        self.enabled, self.shown = enabled, []

    def show(self, held: list[dict], waiting: list[dict]) -> None:
        wanted = sorted((held + waiting) if waiting else [], key=lambda b: sorted(b.items()))
        if not self.enabled or wanted == self.shown:
            return
        from ray.autoscaler.sdk import request_resources

        try:
            if wanted:
                request_resources(bundles=wanted)
            else:
                request_resources(num_cpus=0)
        except Exception as exc:  # the next schedule pass tries again
            log.warning("could not show the autoscaler the queue's demand: %s", exc)
            return
        self.shown = wanted
