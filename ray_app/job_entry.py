"""The entry point of a training submitted as a Ray job (`labtrain train ... --submit`):

    python -m ray_app.job_entry JOB_ID SUBMISSION_ID GCS_ADDRESS

It runs as the Ray job's driver on the cluster where `labtrain serve` runs: it waits until the
job manager grants the job its bundle and license (the same queue as every other job), runs
the same Ray Train run, and reports how it ended. It connects to GCS_ADDRESS, the cluster of the
service that queued the job: Ray's job supervisor gives a driver the address "auto" resolves to,
the latest cluster `ray start` recorded on the machine or else any Ray cluster running there, not
necessarily the one that runs this job."""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray  # noqa: E402

from ray_app.settings import JOB_MANAGER, NAMESPACE  # noqa: E402


def call(method, *args):
    """One call of the job manager; its domain error ends this driver with its message."""
    try:
        return ray.get(method.remote(*args))
    except ray.exceptions.RayTaskError as exc:
        raise SystemExit(f"labtrain: {getattr(exc, 'cause', None) or exc}") from None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m ray_app.job_entry JOB_ID SUBMISSION_ID GCS_ADDRESS", file=sys.stderr)
        return 2
    job_id, submission_id, address = int(argv[0]), argv[1], argv[2]
    # what the run starts (Ray Train's controller and placement-group cleaner) inherits the address,
    # as everything the service's job manager starts does (ray_app.service)
    ray.init(
        address=address,
        namespace=NAMESPACE,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_ADDRESS": address}},
    )
    manager = ray.get_actor(JOB_MANAGER, namespace=NAMESPACE)
    call(manager.attach_submission, job_id, submission_id)
    shown = None
    while True:  # the job manager decides when a bundle and a license are free
        grant = call(manager.submission_grant, job_id)
        if grant["state"] != "wait":
            break
        if grant["reason"] != shown:
            print(f"job {job_id}: {grant['reason']}", flush=True)
            shown = grant["reason"]
        time.sleep(1)
    if grant["state"] != "run":
        print(f"job {job_id}: {grant['reason']}", flush=True)
        return 1
    print(f"job {job_id}: running on {grant['bundle']} with license {grant['license']}", flush=True)
    from ray_app.train_run import start_job

    error = None
    try:
        ray.get(start_job(job_id, grant["spec"], grant["bundle_resources"], 1, grant["home"], grant["resilience"]))
    except Exception as exc:  # the trainer's own reason reaches the manager as an event
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    job = call(manager.submission_finished, job_id, error)
    print(f"job {job_id}: {job['status']}" + (f" ({job['reason']})" if job.get("reason") else ""), flush=True)
    return 0 if job["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
