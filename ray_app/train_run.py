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
import time
from pathlib import Path

import ray

from ray_app.settings import JOB_MANAGER, NAMESPACE

PROGRESS_EVERY_S = 1.0


def train_loop_per_worker(config: dict) -> None:
    """Runs in the Ray Train worker: the trainer, its events forwarded to the job manager."""
    import ray.train

    from trainers.run import failure_reason, result_event, run

    job_id = config["job_id"]
    lower_priority()
    forward = forwarder(job_id)
    try:
        result = run(config["spec"], [forward])
    except BaseException as exc:
        forward({"kind": "error", "error": failure_reason(exc)})
        raise
    forward(result_event(result))
    ray.train.report({"done": 1})


def lower_priority() -> None:
    """Trainings run at the lowest CPU priority (nice 19; Ray starts every worker at 15), so that
    the API, the catalog and the scheduler, which run beside them, answer while they train."""
    try:
        os.nice(19 - os.nice(0))
    except OSError:
        pass


def forwarder(job_id: int):
    """Sends a training's events to the job manager: progress about once a second and at every
    epoch (it comes every batch), everything else as it comes; waits until the result or the error
    is taken. Announces this worker first."""
    manager = ray.get_actor(JOB_MANAGER, namespace=NAMESPACE)
    node = ray.get_runtime_context().get_node_id()
    manager.event.remote(job_id, {"kind": "worker", "pid": os.getpid(), "node": node})
    last, lines = [0.0], [0]

    def forward(event: dict) -> None:
        if event["kind"] == "progress":
            if event["progress"] < 100 and not event["epoch"] and time.monotonic() - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = time.monotonic()
        if event["kind"] == "log":  # numbered: the manager writes them in this order
            event = {**event, "seq": lines[0]}
            lines[0] += 1
        sent = manager.event.remote(job_id, event)
        if event["kind"] in ("result", "error"):  # recorded before the task ends and the manager looks
            ray.get(sent)
    return forward


@ray.remote(num_cpus=0, max_retries=0)
def run_job(job_id: int, spec: dict, bundle: dict, storage_path: str) -> None:
    """One Ray Train run on one bundle; it raises when the training fails."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config={"job_id": job_id, "spec": spec},
        scaling_config=ScalingConfig(num_workers=1, use_gpu="GPU" in bundle, resources_per_worker=bundle),
        run_config=RunConfig(name=f"labtrain-job-{job_id}", storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=0, controller_failure_limit=0)))
    trainer.fit()


@ray.remote(max_retries=0)
def run_process(job_id: int, spec: dict) -> None:
    """Holds the job's bundle while the trainer runs in a child process; its events come back as
    JSON lines, its other output goes to `process.log` in the job's folder. The child dies with
    this worker (a cancelled job's JVM does not linger)."""
    lower_priority()
    forward = forwarder(job_id)
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


def start_job(job_id: int, spec: dict, bundle: dict, storage_path: str, slots: int = 1) -> "ray.ObjectRef":
    """The job's Ray task: a Ray Train run, a search or curve (Ray Tune, up to `slots` trials at once,
    each on one `bundle`), or (sparknlp) a process task that takes the bundle itself."""
    if spec.get("sweep"):
        from ray_app.sweep_run import run_sweep

        return run_sweep.remote(job_id, spec, bundle, slots, storage_path)
    if spec.get("backend") == "sparknlp":
        extra = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
        return run_process.options(num_cpus=bundle.get("CPU", 1), num_gpus=bundle.get("GPU", 0),
                                   resources=extra or None).remote(job_id, spec)
    return run_job.remote(job_id, spec, bundle, storage_path)


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
    return f"{type(exc).__name__}: {text[:300]}"
