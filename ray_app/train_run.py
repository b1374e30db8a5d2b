"""One training job as a Ray Train run: `TorchTrainer` on one bundle, whose worker runs the
plain-PyTorch trainer and forwards its events to the job manager; and how a failure is told."""

from __future__ import annotations

import os
import re
import time

import ray

from ray_app.settings import JOB_MANAGER, NAMESPACE

PROGRESS_EVERY_S = 1.0


def train_loop_per_worker(config: dict) -> None:
    """Runs in the Ray Train worker: the trainer, its events forwarded to the job manager."""
    import ray.train

    from trainers.run import failure_reason, run

    manager = ray.get_actor(JOB_MANAGER, namespace=NAMESPACE)
    job_id, last = config["job_id"], [0.0]
    manager.event.remote(job_id, {"kind": "worker", "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()})

    def forward(event: dict) -> None:
        if (event["kind"] == "progress" and event["progress"] < 100 and not event["epoch"]
                and time.monotonic() - last[0] < PROGRESS_EVERY_S):
            return  # progress comes every batch; the page needs about one a second, and every epoch
        last[0] = time.monotonic()
        manager.event.remote(job_id, event)

    try:
        result = run(config["spec"], [forward])
    except BaseException as exc:
        manager.event.remote(job_id, {"kind": "error", "error": failure_reason(exc)})
        raise
    metrics = result.metrics.get("entity", result.metrics)
    manager.event.remote(job_id, {"kind": "result", "metrics": {
        "micro": metrics.get("micro"), "macro": metrics.get("macro"), "seconds": round(result.seconds, 1)}})
    ray.train.report({"done": 1})


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


def ray_failure(exc: Exception) -> str:
    """A short reason from Ray's wrapped exceptions (a dead worker, a failed run)."""
    text = " ".join(str(exc).split())
    died = re.search(r"worker process has died|actor is dead|node .* died", text, re.IGNORECASE)
    if died or isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.ActorDiedError,
                                ray.exceptions.NodeDiedError)):
        detail = re.search(r"Worker exit detail: (.*?\.)(?: |$)", text)
        return "the training process died" + (f": {detail.group(1)}" if detail else "")
    return f"{type(exc).__name__}: {text[:300]}"
