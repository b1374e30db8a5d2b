"""Resource bundles for training jobs and the accounting of what the job manager has handed
out; Ray's own view (nodes, totals, what is free) for the cluster page."""

from __future__ import annotations

from dataclasses import dataclass, field

CPU_BUNDLE = {"CPU": 1.0}
GPU_BUNDLE = {"CPU": 1.0, "GPU": 1.0}
ALONE_MAX_CPUS = 16  # a CPU job that runs alone on a cluster without an autoscaler takes a node's CPUs, up to this


def bundle_for(gpu: bool, cpus: int | None = None) -> dict[str, float]:
    """A job's bundle: the CPUs it asked for (`cpus`), else 1; and a GPU if it asked for one."""
    bundle = dict(GPU_BUNDLE if gpu else CPU_BUNDLE)
    if cpus:
        bundle["CPU"] = float(cpus)
    return bundle


def scaled(bundle: dict[str, float], n: int) -> dict[str, float]:
    """`n` bundles of one shape, as one ledger entry (a search running n trials at once)."""
    return {k: v * n for k, v in bundle.items()}


def sweep_size(request: dict) -> int:
    """How many trials a training may run at once: a search's trials, a curve's points x seeds; else 1."""
    if request.get("tune"):
        return int(request["tune"]["trials"])
    if request.get("curve"):
        return len(request["curve"]["points"]) * int(request["curve"]["seeds"])
    return 1


def describe_bundle(bundle: dict[str, float]) -> str:
    return " + ".join(f"{int(v) if float(v).is_integer() else v} {k}" for k, v in sorted(bundle.items()))


@dataclass
class Ledger:
    """The bundles given to running jobs, against the cluster's totals (which grow when an
    autoscaler adds nodes). Ray itself places the bundles; the ledger only decides when a job
    may ask, so that a waiting job can say what it waits for."""

    totals: dict[str, float] = field(default_factory=dict)
    held: dict[int, dict[str, float]] = field(default_factory=dict)  # job id -> bundle

    def free(self) -> dict[str, float]:
        free = dict(self.totals)
        for bundle in self.held.values():
            for k, v in bundle.items():
                free[k] = free.get(k, 0.0) - v
        return free

    def take(self, job_id: int, bundle: dict[str, float]) -> None:
        self.held[job_id] = bundle

    def give_back(self, job_id: int) -> None:
        self.held.pop(job_id, None)


def cluster_view(ray_module) -> dict:
    """Nodes and resources as Ray reports them (call inside a connected Ray driver or actor)."""
    nodes = []
    for node in ray_module.nodes():
        res = node.get("Resources", {})
        nodes.append(
            {
                "node_id": node["NodeID"],
                "address": node.get("NodeManagerAddress"),
                "alive": node["Alive"],
                "cpus": res.get("CPU", 0.0),
                "gpus": res.get("GPU", 0.0),
                "memory_gb": round(res.get("memory", 0.0) / 2**30, 2),
                "head": "node:__internal_head__" in res,
            }
        )
    total, available = ray_module.cluster_resources(), ray_module.available_resources()
    keys = ("CPU", "GPU", "memory")

    def pick(res: dict) -> dict:
        out = {k: res.get(k, 0.0) for k in keys}
        out["memory_gb"] = round(out.pop("memory") / 2**30, 2)
        return out

    return {
        "nodes": nodes,
        "total": pick(total),
        "available": pick(available),
        "gpu_available": total.get("GPU", 0.0) > 0,
    }
