"""The job manager's decisions as plain functions: which queued job starts now and on how many
bundles, what every other job waits for, and which bundles the autoscaler is asked for. No Ray and
no I/O here: `ray_app.jobs` reads the cluster, calls `plan`, and carries the plan out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cluster.resources import ALONE_MAX_CPUS, describe_bundle, scaled

Resources = Mapping[str, float]


@dataclass(frozen=True)
class NodeType:
    """A kind of node the cluster's autoscaler can start (its launcher config's `available_node_types`)."""

    name: str
    resources: Resources
    max_workers: int = 1


@dataclass(frozen=True)
class Capacity:
    """What the cluster can ever hold: the nodes it has, and the node types its autoscaler may add
    (none: a fixed cluster, which only ever has its nodes)."""

    nodes: tuple[Resources, ...] = ()
    node_types: tuple[NodeType, ...] = ()

    def holds_now(self, bundle: Resources) -> bool:
        """Whether one node of the cluster as it is has room for the whole bundle (when nothing runs)."""
        return any(fits(bundle, node) for node in self.nodes)

    def node_type_for(self, bundle: Resources) -> NodeType | None:
        """A node type the autoscaler can add that holds the bundle."""
        return next((t for t in self.node_types if t.max_workers > 0 and fits(bundle, t.resources)), None)

    def impossible(self, bundle: Resources) -> str | None:
        """Why no node, present or to come, can ever hold this bundle; None if one can."""
        if self.holds_now(bundle) or self.node_type_for(bundle):
            return None
        wanted = describe_bundle(bundle)
        lacking = sorted(k for k in bundle if not any(fits({k: bundle[k]}, n) for n in self.nodes))
        have = ", ".join(f"{_total(self.nodes, k):g} {k}" for k in lacking) or "no node with all of them"
        if self.node_types:
            kinds = "; ".join(f"{t.name}: {describe_bundle(t.resources) or 'nothing'}" for t in self.node_types)
            return (
                f"a {wanted} bundle fits no node of this cluster (it has {have}) and no node type its "
                f"autoscaler can add ({kinds})"
            )
        return f"a {wanted} bundle fits no node of this cluster (it has {have}) and the cluster has no autoscaler"

    def max_resource(self, key: str) -> float:
        """The most of a resource the cluster may ever have: its nodes' and what its node types may add."""
        return _total(self.nodes, key) + sum(t.resources.get(key, 0.0) * t.max_workers for t in self.node_types)


@dataclass(frozen=True)
class QueuedJob:
    job_id: int
    scope: str  # the license scope it needs (training:ner, ocr:training, ...)
    bundle: Resources  # one bundle: {"CPU": 1} or {"CPU": 1, "GPU": 1}, or the CPUs it asked for
    wanted: int = 1  # a search or a curve: how many bundles it would use at once
    grows: bool = False  # asked for no CPU count: alone on an idle fixed cluster, it takes a node's CPUs


@dataclass(frozen=True)
class LicenseSlots:
    id: str
    scopes: tuple[str, ...]
    free: int


@dataclass(frozen=True)
class Start:
    job_id: int
    slots: int  # bundles (and license slots) it takes, one per trial it runs at once
    licenses: tuple[str, ...]  # the license of each slot
    bundle: Resources | None = None  # the bundle of each slot (the job's own, or grown: see `plan`)


@dataclass
class Plan:
    starts: list[Start] = field(default_factory=list)
    waits: dict[int, str] = field(default_factory=dict)  # job id -> why it waits
    demand: list[dict[str, float]] = field(default_factory=list)  # bundles to show the autoscaler


def fits(bundle: Resources, free: Resources) -> bool:
    return all(free.get(k, 0.0) >= v for k, v in bundle.items())


def missing(bundle: Resources, free: Resources) -> str | None:
    """What is missing for the bundle, e.g. '1 GPU', or None if it fits."""
    short = {k: v - max(0.0, free.get(k, 0.0)) for k, v in bundle.items() if free.get(k, 0.0) < v}
    return describe_bundle(short) if short else None


def plan(
    queue: Sequence[QueuedJob],
    free: Resources,
    capacity: Capacity,
    licenses: Sequence[LicenseSlots],
    alone_cpus: float = ALONE_MAX_CPUS,
) -> Plan:
    """Go through the queue in order; a job that waits never holds back a later one that fits.

    - A job starts when its bundle fits in what is free and a license slot of its scope is free; a
      search or a curve takes up to `wanted` bundles and slots, as many as are free.
    - A job whose bundle does not fit, on a cluster whose autoscaler has a node type for it, waits
      "for 1 GPU (the autoscaler is adding a node)" and its bundle is demand, if a license slot is
      free for it (that slot is then counted as spoken for); with no slot it waits for a license and
      asks for no node.
    - Otherwise it waits for the resources (running jobs must end) or for a license.
    - A job that asked for no CPU count (`grows`), the only one in the queue, starting on a cluster
      without an autoscaler where nothing runs, takes every CPU of the largest node (at most
      `alone_cpus`, what Ray itself has free): a lone training uses the machine, and jobs that arrive
      together still run together, one CPU each.
    """
    free, free_before = dict(free), dict(free)
    slots = {lic.id: lic.free for lic in licenses}
    result = Plan()

    def license_for(scope: str) -> str | None:
        return next((lic.id for lic in licenses if scope in lic.scopes and slots[lic.id] > 0), None)

    for job in queue:
        lacking = missing(job.bundle, free) or (None if capacity.holds_now(job.bundle) else describe_bundle(job.bundle))
        license_id = license_for(job.scope)
        if lacking is None:
            if license_id is None:
                result.waits[job.job_id] = f"waiting for a license with scope {job.scope}"
                continue
            taken = []
            while (
                license_id is not None
                and len(taken) < job.wanted
                and (not taken or fits(scaled(job.bundle, len(taken) + 1), free))
            ):
                taken.append(license_id)
                slots[license_id] -= 1
                license_id = license_for(job.scope)
            for k, v in scaled(job.bundle, len(taken)).items():
                free[k] = free.get(k, 0.0) - v
            result.starts.append(Start(job.job_id, len(taken), tuple(taken)))
        elif capacity.node_type_for(job.bundle):
            if license_id is None:
                result.waits[job.job_id] = f"waiting for a license with scope {job.scope}"
                continue
            slots[license_id] -= 1
            result.waits[job.job_id] = f"waiting for {lacking} (the autoscaler is adding a node)"
            result.demand.append(dict(job.bundle))
        else:
            result.waits[job.job_id] = f"waiting for {lacking}"
    alone = _alone(queue, result, free_before, capacity, alone_cpus)
    if alone is not None:
        result.starts[0] = Start(result.starts[0].job_id, 1, result.starts[0].licenses, alone)
    return result


def _alone(
    queue: Sequence[QueuedJob], result: Plan, free: Resources, capacity: Capacity, most: float
) -> dict[str, float] | None:
    """The grown bundle of a lone job (see `plan`), or None when it keeps its own."""
    if len(queue) != 1 or len(result.starts) != 1 or capacity.node_types:
        return None
    job = queue[0]
    if not job.grows or result.starts[0].slots != 1 or free.get("CPU", 0.0) < _total(capacity.nodes, "CPU"):
        return None
    cpus = min(max((node.get("CPU", 0.0) for node in capacity.nodes), default=0.0), float(int(most)))
    return {**job.bundle, "CPU": cpus} if cpus > job.bundle.get("CPU", 1.0) else None


def _total(nodes: Sequence[Resources], key: str) -> float:
    return sum(node.get(key, 0.0) for node in nodes)
