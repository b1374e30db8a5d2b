"""One training job on one bundle: a Ray Train run (`TorchTrainer`, whose worker runs the
plain-PyTorch trainer) or, for the sparknlp backend, a Ray task holding the bundle that runs the
trainer in a process of its own (`python -m trainers.run --events`: Spark's JVM lives and dies
with it). Either way the trainer's events reach the job manager; and how a failure is told."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray

from ray_app.job_worker import Resilience, bundle_threads, forwarder, lower_priority, one_worker_trainer
from ray_app.settings import ON_THE_HEAD
from ray_app.workspace import Home, job_files

NODE_WAIT_S = 900  # on an autoscaling cluster, how long a retry waits for a node to take the lost one's place


def train_loop_per_worker(config: dict) -> None:
    """Runs in the Ray Train worker: the trainer, its events forwarded to the job manager. The
    trainer's own failure ends the run normally, with the failure sent as the job's reason: Ray
    Train starts a worker again only when it was lost (its process or node died)."""
    import ray.train

    from trainers.run import failure_reason, result_event, run

    job_id, checkpoints = config["job_id"], config.get("checkpoints")
    lower_priority()
    bundle_threads()
    resumed = ray.train.get_checkpoint()
    epoch = (resumed.get_metadata() or {}).get("epoch") if resumed else None
    forward = forwarder(job_id, {"resumed_epoch": epoch, "checkpoints": bool(checkpoints)})
    with (
        job_files(job_id, config["spec"], config["home"]) as spec,
        tempfile.TemporaryDirectory(prefix=f"labtrain-checkpoint-{job_id}-") as scratch,
    ):
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
        forward(
            {
                "kind": "log",
                "line": f"checkpoint of epoch {event['epoch']}: {size / 2**20:.0f} MB kept in "
                f"{time.monotonic() - started:.1f} s",
            }
        )

    return keep


@ray.remote(num_cpus=0, max_retries=0, resources=ON_THE_HEAD)
def run_job(job_id: int, spec: dict, bundle: dict, home: Home, resilience: Resilience) -> None:
    """One Ray Train run on one bundle; it raises when the training fails. On the head, as is its
    Train controller (Ray puts it beside the caller), so that losing a worker node loses neither."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    if resilience.autoscaling:  # a retry may wait for the autoscaler to add a node (read by the controller)
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(NODE_WAIT_S))
    trainer = one_worker_trainer(
        train_loop_per_worker,
        train_loop_config={"job_id": job_id, "spec": spec, "home": home, "checkpoints": resilience.checkpoints},
        scaling_config=ScalingConfig(num_workers=1, use_gpu="GPU" in bundle, resources_per_worker=bundle),
        # one worker, no collective operation: gloo even on a GPU (NCCL fails on a node whose GPU is not
        # usable, where the trainer itself falls back to the CPU and says so)
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(
            name=f"labtrain-job-{job_id}",
            storage_path=resilience.storage_path,
            storage_filesystem=resilience.storage_fs,
            failure_config=FailureConfig(
                max_failures=resilience.max_retries,
                controller_failure_limit=0,
                max_preemption_failures=resilience.max_retries,
            ),
        ),
    )
    trainer.fit()


@ray.remote
def run_process(job_id: int, spec: dict, home: Home) -> None:
    """Holds the job's bundle while the trainer runs in a child process; its events come back as
    JSON lines, its other output goes to `process.log` in the job's folder. The child dies with
    this worker (a cancelled job's JVM does not linger)."""
    lower_priority()
    bundle_threads()
    forward = forwarder(job_id)
    with job_files(job_id, spec, home) as local:
        _run_child(local, forward)


def _run_child(spec: dict, forward) -> None:
    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRAIN_TOKEN")}
    with open(out / "process.log", "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "trainers.run", "--events", str(out / "spec.json")],
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
            cwd=str(Path(__file__).resolve().parents[1]),
            preexec_fn=_die_with_parent,
            text=True,
        )
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
        reason = (
            ended["error"]
            if ended and ended.get("kind") == "error"
            else f"the training process exited with code {code} (see process.log)"
        )
        raise RuntimeError(reason)


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_job(job_id: int, spec: dict, bundle: dict, slots: int, home: Home, resilience: Resilience) -> ray.ObjectRef:
    """The job's Ray task: a Ray Train run, a search or curve (Ray Tune, up to `slots` trials at once,
    each on one `bundle`), or (sparknlp) a process task that takes the bundle itself. Its files
    live in `home` (see ray_app.workspace)."""
    if spec.get("sweep"):
        from ray_app.sweep_run import run_sweep

        return run_sweep.remote(job_id, spec, bundle, slots, home, resilience)
    if spec.get("backend") == "sparknlp":  # Ray runs the task again when its worker or node is lost
        extra = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
        return run_process.options(
            num_cpus=bundle.get("CPU", 1),
            num_gpus=bundle.get("GPU", 0),
            resources=extra or None,
            max_retries=resilience.max_retries,
            retry_exceptions=False,
        ).remote(job_id, spec, home)
    return run_job.remote(job_id, spec, bundle, home, resilience)
