"""What a job's Ray tasks and workers share (ray_app.train_run, ray_app.sweep_run): their events to
the job manager, their CPU priority, how a job survives a lost worker, and how Ray's failures read."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

import ray

from ray_app.settings import JOB_MANAGER, NAMESPACE

PROGRESS_EVERY_S = 1.0

# What Ray Train starts beside each run that a labtrain job (one worker) has no use for: the
# preemption watcher, an actor process per run that polls for draining nodes (a lost node is the
# FailureConfig's and the epoch checkpoints' business, and the autoscaler drains idle nodes only),
# and the metrics callbacks (nothing scrapes them). The controller polls its worker every 0.5 s
# instead of 2 s, so a run's end (or a dead worker) is seen sooner. Read by the run's driver and its
# controller.
LEAN_TRAIN_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}


def one_worker_trainer(train_loop, **kwargs):
    """The `TorchTrainer` of one job or trial (one worker), without what it has no use for: what
    `LEAN_TRAIN_ENV` names (unless set already), and the DatasetManager actor that Ray Train 2.60
    starts for every run, Ray Datasets or not (a process that imports Ray Data while the worker
    starts beside it; a labtrain worker reads its snapshot itself)."""
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    for name, value in LEAN_TRAIN_ENV.items():
        os.environ.setdefault(name, value)

    class OneWorkerTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            return callbacks if self.datasets else [c for c in callbacks if not isinstance(c, DatasetsCallback)]

    return OneWorkerTrainer(train_loop, **kwargs)


@dataclass(frozen=True)
class Resilience:
    """How a job survives a lost node or worker: Ray Train starts its worker again, on another node
    if need be, up to `max_retries` times; from its last epoch's checkpoint when `storage_fs` (the
    artifact store: a place every node reaches) keeps them, else from the beginning. `storage_path`
    is Ray Train's (in the store, or the head's home)."""

    storage_path: str
    max_retries: int = 1
    storage_fs: Any = None  # a pyarrow filesystem; None: the head's home, which workers do not see
    autoscaling: bool = False  # a node may have to be added for the retry: wait longer for it

    @property
    def checkpoints(self) -> bool:
        return self.storage_fs is not None


def lower_priority() -> None:
    """Trainings run at the lowest CPU priority (nice 19; Ray starts every worker at 15), so that
    the API, the catalog and the scheduler, which run beside them, answer while they train."""
    try:
        os.nice(19 - os.nice(0))
    except OSError:
        pass


def bundle_threads() -> None:
    """A training's threads are its bundle's CPUs (torch's, and a Spark trainer's cores read
    OMP_NUM_THREADS), whatever the service's own environment says."""
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))
    if cpus < 1:
        return
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(cpus)
    if "torch" in sys.modules:  # imported already (Ray Train's worker): it read the variable before
        sys.modules["torch"].set_num_threads(cpus)


def forwarder(job_id: int, start: dict | None = None):
    """Sends a training's events to the job manager: progress about once a second and at every
    epoch (it comes every batch), everything else as it comes; waits until the result or the error
    is taken. Announces this worker first (with `start`: what it resumes from)."""
    manager = ray.get_actor(JOB_MANAGER, namespace=NAMESPACE)
    node = ray.get_runtime_context().get_node_id()
    manager.event.remote(job_id, {"kind": "worker", "pid": os.getpid(), "node": node, **(start or {})})
    sender = f"{node}:{os.getpid()}"
    last, lines = [0.0], [0]

    def forward(event: dict) -> None:
        if event["kind"] == "progress":
            if event["progress"] < 100 and not event["epoch"] and time.monotonic() - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = time.monotonic()
        if event["kind"] == "log":  # numbered: the manager writes them in this order
            event = {**event, "seq": lines[0], "sender": sender}
            lines[0] += 1
        sent = manager.event.remote(job_id, event)
        if event["kind"] in ("result", "error"):  # recorded before the task ends and the manager looks
            ray.get(sent)

    return forward


def ray_failure(exc: Exception) -> str:
    """A short reason from Ray's wrapped exceptions (a dead worker, a failed run)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ray.exceptions.OutOfMemoryError) or re.search(
        r"out of memory|OutOfMemory|low on memory", text, re.I
    ):
        return (
            "out of memory: Ray's memory monitor or the kernel stopped the training (give it more memory, a "
            "smaller batch_size or max_length)"
        )
    died = re.search(r"worker process has died|actor is dead|node .* died", text, re.IGNORECASE)
    if died or isinstance(
        exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.ActorDiedError, ray.exceptions.NodeDiedError)
    ):
        detail = re.search(r"Worker exit detail: (.*?\.)(?: |$)", text)
        return "the training process died" + (f": {detail.group(1)}" if detail else "")
    return f"{type(exc).__name__}: {last_line(exc)[:300]}"


def last_line(error: BaseException) -> str:
    """What Ray's wrapped error says last (its own traceback and colours left out)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
