"""One training job on one bundle: a Ray Train run (`TorchTrainer`, whose worker runs the
plain-PyTorch trainer) or, for the sparknlp backend, a Ray task holding the bundle that runs the
trainer in a process of its own (`python -m trainers.run --events`: Spark's JVM lives and dies
with it). Either way the trainer's events reach the job manager; and how a failure is told."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from ray_app.settings import JOB_MANAGER, NAMESPACE, ON_THE_HEAD
from ray_app.workspace import Home, job_files

PROGRESS_EVERY_S = 1.0
NODE_WAIT_S = 900  # on an autoscaling cluster, how long a retry waits for a node to take the lost one's place


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


def train_loop_per_worker(config: dict) -> None:
    """Runs in the Ray Train worker: the trainer, its events forwarded to the job manager. The
    trainer's own failure ends the run normally, with the failure sent as the job's reason: Ray
    Train starts a worker again only when it was lost (its process or node died)."""
    import ray.train

    from trainers.run import failure_reason, result_event, run

    job_id, checkpoints = config["job_id"], config.get("checkpoints")
    lower_priority()
    resumed = ray.train.get_checkpoint()
    epoch = (resumed.get_metadata() or {}).get("epoch") if resumed else None
    forward = forwarder(job_id, {"resumed_epoch": epoch, "checkpoints": bool(checkpoints)})
    with job_files(job_id, config["spec"], config["home"]) as spec, tempfile.TemporaryDirectory(
            prefix=f"labtrain-checkpoint-{job_id}-") as scratch:
        listeners = [forward]
        if checkpoints:
            resume = resumed.to_directory(str(Path(scratch) / "resume")) if resumed else None
            spec = {**spec, "checkpoint": {"folder": str(Path(scratch) / "epoch"), "resume": resume}}
            listeners.append(checkpoint_keeper(forward))
        try:
            ended = result_event(run(spec, listeners))
        except Exception as exc:
            ended = {"kind": "error", "error": failure_reason(exc)}
    forward(ended)  # after its files are in the home: the manager registers the model
    ray.train.report({"done": 1})


def checkpoint_keeper(forward):
    """Hands each epoch's state to Ray Train, which copies it into its storage (the artifact store),
    where a retry on another node finds it; the job's log says how big it was and how long it took."""
    def keep(event: dict) -> None:
        if event["kind"] != "checkpoint":
            return
        import ray.train

        started = time.monotonic()
        size = sum(f.stat().st_size for f in Path(event["path"]).rglob("*") if f.is_file())
        checkpoint = ray.train.Checkpoint.from_directory(event["path"])
        checkpoint.set_metadata({"epoch": event["epoch"]})
        ray.train.report({"epoch": event["epoch"]}, checkpoint=checkpoint)
        forward({"kind": "log", "line": f"checkpoint of epoch {event['epoch']}: {size / 2**20:.0f} MB kept in "
                                        f"{time.monotonic() - started:.1f} s"})
    return keep


def lower_priority() -> None:
    """Trainings run at the lowest CPU priority (nice 19; Ray starts every worker at 15), so that
    the API, the catalog and the scheduler, which run beside them, answer while they train."""
    try:
        os.nice(19 - os.nice(0))
    except OSError:
        pass


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


@ray.remote(num_cpus=0, max_retries=0, resources=ON_THE_HEAD)
def run_job(job_id: int, spec: dict, bundle: dict, home: Home, resilience: Resilience) -> None:
    """One Ray Train run on one bundle; it raises when the training fails. On the head, as is its
    Train controller (Ray puts it beside the caller), so that losing a worker node loses neither."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if resilience.autoscaling:  # a retry may wait for the autoscaler to add a node (read by the controller)
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(NODE_WAIT_S))
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config={"job_id": job_id, "spec": spec, "home": home,
                                                  "checkpoints": resilience.checkpoints},
        scaling_config=ScalingConfig(num_workers=1, use_gpu="GPU" in bundle, resources_per_worker=bundle),
        # one worker, no collective operation: gloo even on a GPU (NCCL fails on a node whose GPU is not
        # usable, where the trainer itself falls back to the CPU and says so)
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name=f"labtrain-job-{job_id}", storage_path=resilience.storage_path,
                             storage_filesystem=resilience.storage_fs,
                             failure_config=FailureConfig(max_failures=resilience.max_retries, controller_failure_limit=0,
                                                          max_preemption_failures=resilience.max_retries)))
    trainer.fit()


@ray.remote
def run_process(job_id: int, spec: dict, home: Home) -> None:
    """Holds the job's bundle while the trainer runs in a child process; its events come back as
    JSON lines, its other output goes to `process.log` in the job's folder. The child dies with
    this worker (a cancelled job's JVM does not linger)."""
    lower_priority()
    forward = forwarder(job_id)
    with job_files(job_id, spec, home) as local:
        _run_child(local, forward)


def _run_child(spec: dict, forward) -> None:
    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRAIN_TOKEN")}
    with open(out / "process.log", "ab") as log_file:
        child = subprocess.Popen([sys.executable, "-m", "trainers.run", "--events", str(out / "spec.json")],
                                 stdout=subprocess.PIPE,
                                 stderr=log_file, env=env, cwd=str(Path(__file__).resolve().parents[1]),
                                 preexec_fn=_die_with_parent, text=True)
        ended = None
        for line in child.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            ended = event if event.get("kind") in ("result", "error") else ended
            forward(event)
        code = child.wait()
    if code != 0:
        reason = ended["error"] if ended and ended.get("kind") == "error" else \
            f"the training process exited with code {code} (see process.log)"
        raise RuntimeError(reason)


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_job(job_id: int, spec: dict, bundle: dict, slots: int, home: Home, resilience: Resilience) -> "ray.ObjectRef":
    """The job's Ray task: a Ray Train run, a search or curve (Ray Tune, up to `slots` trials at once,
    each on one `bundle`), or (sparknlp) a process task that takes the bundle itself. Its files
    live in `home` (see ray_app.workspace)."""
    if spec.get("sweep"):
        from ray_app.sweep_run import run_sweep

        return run_sweep.remote(job_id, spec, bundle, slots, home, resilience)
    if spec.get("backend") == "sparknlp":  # Ray runs the task again when its worker or node is lost
        extra = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
        return run_process.options(num_cpus=bundle.get("CPU", 1), num_gpus=bundle.get("GPU", 0), resources=extra or None,
                                   max_retries=resilience.max_retries, retry_exceptions=False).remote(job_id, spec, home)
    return run_job.remote(job_id, spec, bundle, home, resilience)


def ray_failure(exc: Exception) -> str:
    """A short reason from Ray's wrapped exceptions (a dead worker, a failed run)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ray.exceptions.OutOfMemoryError) or re.search(r"out of memory|OutOfMemory|low on memory", text, re.I):
        return "out of memory: Ray's memory monitor or the kernel stopped the training (give it more memory, a " \
               "smaller batch_size or max_length)"
    died = re.search(r"worker process has died|actor is dead|node .* died", text, re.IGNORECASE)
    if died or isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.ActorDiedError,
                                ray.exceptions.NodeDiedError)):
        detail = re.search(r"Worker exit detail: (.*?\.)(?: |$)", text)
        return "the training process died" + (f": {detail.group(1)}" if detail else "")
    return f"{type(exc).__name__}: {last_line(exc)[:300]}"


def last_line(error: BaseException) -> str:
    """What Ray's wrapped error says last (its own traceback and colours left out)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
