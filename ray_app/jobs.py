"""The job manager: a named Ray actor that queues training jobs, binds each to a resource
bundle and a license slot, runs it as a Ray Train run (`ray_app.train_run`), streams its events
into the job log and the catalog, and ends it however it ends."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from cluster.licenses import LicensePool, describe, license_file
from cluster.resources import Ledger, bundle_for, cluster_view, describe_bundle, scaled, sweep_size
from ray_app.settings import JOB_MANAGER, NAMESPACE, read_service
from ray_app.storage_actor import StorageClient
from ray_app.train_run import ray_failure, start_job
from storage.errors import Conflict, LabtrainError, NotFound, ValidationError
from storage.history import now

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted: the labtrain service stopped while this job was queued or running"


@dataclass
class RunningJob:
    job_id: int
    training_id: int
    project: str
    type: str
    bundle: dict
    license: str
    started_by: str | None
    started_at: str
    output_dir: str
    ref: Any = None
    submission_id: str | None = None  # run by a Ray job (`--submit`), not by the manager
    worker_pid: int | None = None
    worker_node: str | None = None
    cancelled_by: str | None = None
    slots: int = 1  # a search or a curve: how many of `bundle` it holds, one per concurrent trial


@ray.remote(num_cpus=0, max_restarts=0)
class JobManager:
    """One per service. Async: its methods interleave on one event loop, never in parallel."""

    def __init__(self, home: str, storage: "ray.actor.ActorHandle"):
        self.home = Path(home)
        self.storage = StorageClient(storage)
        self.ledger = Ledger()
        self.licenses = LicensePool(self.home, 1)
        self.queue: list[int] = []
        self.running: dict[int, RunningJob] = {}
        self.results: dict[int, dict] = {}
        self.errors: dict[int, str] = {}
        self.submissions: dict[int, str] = {}  # job id -> Ray job submission id (--submit)
        self.unrecorded: dict[int, tuple] = {}  # job id -> how it ended, when the catalog could not record it
        self.log_lines: dict[int, dict[int, str]] = {}  # job id -> log lines that came before their turn
        self.log_next: dict[int, int] = {}  # job id -> the sequence number of the next log line
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        self.started = False

    async def start(self) -> list[int]:
        """Mark what an earlier service left unfinished as interrupted; start scheduling."""
        if self.started:
            return []
        self.started = True
        interrupted = await self.storage("fail_interrupted_jobs", INTERRUPTED)
        for job_id in interrupted:
            job = await self.storage("job", job_id)
            self._log(job, INTERRUPTED)
        self._refresh_totals()
        self._background(self._tick())
        return interrupted

    def _background(self, coroutine) -> None:
        """Run a coroutine on the actor's loop, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        """Like `StorageActor.call`: domain errors come back as values."""
        try:
            return "ok", await getattr(self, method)(*args, **kwargs)
        except LabtrainError as exc:
            return "error", (getattr(exc, "kind", type(exc).__name__), exc.status_code, str(exc))

    # --- requests ----------------------------------------------------------------------------

    async def submit(self, project: str, request: dict, user: str | None, source: str = "manual") -> dict:
        self._refresh_totals()
        impossible = self.ledger.possible(bundle_for(request.get("gpu", False)))
        if impossible:
            raise ValidationError(f"--gpu asks for a GPU bundle but {impossible}; train without --gpu "
                                  "or add a GPU node")
        submitted = request.get("runner") == "ray_job"
        training = await self.storage("create_training", project, request, user, "ray job" if submitted else source)
        for job in training["jobs"]:
            self._log(job, f"queued by {user or 'unknown'} ({source}): {job['type']} with {job['embeddings']} "
                           f"embeddings on a {describe_bundle(bundle_for(job['gpu']))} bundle, "
                           f"license scope {job['scope']}")
            if submitted:
                await self.storage("update_job", job["job_id"], reason="waiting for its Ray job to start")
            else:
                self.queue.append(job["job_id"])
        await self._schedule()
        training = await self.storage("training", training["id"])
        if submitted:
            for job in training["jobs"]:
                job["submission_id"] = f"labtrain-job-{job['job_id']}-{uuid.uuid4().hex[:6]}"
                job["entrypoint"] = f"{sys.executable} -m ray_app.job_entry {job['job_id']} {job['submission_id']}"
        return training

    async def active_learning(self, project: str) -> dict | None:
        """After an import: start the project's active-learning training if it is due (see
        `TrainingHistory.active_learning_due`); its failure to start is logged, never raised."""
        request = await self.storage("active_learning_due", project)
        if request is None:
            return None
        from trainers.embeddings import embeddings_for

        request["embeddings"] = {t: (request.get("embeddings") or {}).get(t)
                                 or embeddings_for(t, request.get("backend", "pytorch"))[0] for t in request["types"]}
        try:
            return await self.submit(project, request, None, source="active learning")
        except LabtrainError as exc:
            print(f"labtrain: active learning of {project} could not start: {exc}", file=sys.stderr, flush=True)
            return None

    # --- trainings submitted as Ray jobs (the entry point is ray_app.job_entry) ---------------

    async def attach_submission(self, job_id: int, submission_id: str) -> dict:
        job = await self.storage("job", job_id)
        training = await self.storage("training", job["training_id"])
        if training["request"].get("runner") != "ray_job" or job_id in self.submissions:
            raise Conflict(f"job {job_id} was not submitted as a Ray job, or its Ray job already started")
        if job["status"] != "queued":
            raise Conflict(f"job {job_id} is {job['status']}")
        self.submissions[job_id] = submission_id
        await self.storage("update_job", job_id, ray_job_id=submission_id, reason="waiting to be scheduled")
        self._log(job, f"Ray job {submission_id} started; waiting for a bundle and a license")
        self.queue.append(job_id)
        await self._schedule()
        return await self.storage("job", job_id)

    async def submission_grant(self, job_id: int) -> dict:
        """What the Ray job's driver may do now: run (with its spec, bundle and license), wait, or end."""
        running = self.running.get(job_id)
        if running is not None:
            return {"state": "run", "spec": await self.storage("job_spec", job_id), "bundle": describe_bundle(
                running.bundle), "bundle_resources": running.bundle, "license": running.license,
                "storage_path": str(self.home / "ray_results")}
        job = await self.storage("job", job_id)
        if job_id in self.queue:
            return {"state": "wait", "reason": job["reason"]}
        return {"state": "end", "reason": f"job {job_id} is {job['status']}: {job['reason']}"}

    async def submission_finished(self, job_id: int, error: str | None) -> dict:
        running = self.running.get(job_id)
        if running is not None and running.submission_id:
            await self._finish(running, self.errors.get(job_id) or error)
        return await self.storage("job", job_id)

    async def cancel(self, training_id: int, user: str | None) -> dict:
        for job in await self.storage("jobs_of", training_id):
            job_id = job["job_id"]
            if job_id in self.queue:
                self.queue.remove(job_id)
                try:
                    await self.storage("end_job", job_id, "cancelled", f"cancelled by {user} while queued")
                except LabtrainError:  # not recorded (a full disk): it stays queued, the cancel fails
                    self.queue.insert(0, job_id)
                    raise
                self._log(job, f"cancelled by {user} while queued")
            elif job_id in self.running:
                running = self.running[job_id]
                running.cancelled_by = user or "unknown"
                if running.submission_id:
                    await asyncio.to_thread(self._stop_ray_job, running.submission_id)
                    await self._finish(running, None)
                elif running.ref is not None:  # else it is being launched: _launch cancels it
                    ray.cancel(running.ref, force=True)  # kills the run's process; Ray frees its bundle
        return await self.storage("training", training_id)

    async def event(self, job_id: int, event: dict) -> None:
        """Events from a running trainer: log lines, progress, its result or its error."""
        running = self.running.get(job_id)
        if running is None or running.cancelled_by:
            return
        kind = event.get("kind")
        if kind == "log" and "seq" in event:
            # An async actor may run calls from one caller out of order: lines wait for the ones before.
            waiting = self.log_lines.setdefault(job_id, {})
            waiting[event["seq"]] = event["line"]
            while self.log_next.get(job_id, 0) in waiting:
                self._append(running.output_dir, waiting.pop(self.log_next.get(job_id, 0)))
                self.log_next[job_id] = self.log_next.get(job_id, 0) + 1
        elif kind == "log":
            self._append(running.output_dir, event["line"])
        elif kind == "progress":  # the worker sends about one a second (train_run.PROGRESS_EVERY_S)
            changes = {"progress": min(99.0, event["progress"])}
            if event.get("epoch"):
                changes.update(epoch=event["epoch"], metrics=event.get("metrics") or None)
            await self.storage("update_job", job_id, **changes)
        elif kind == "worker":
            running.worker_pid, running.worker_node = event["pid"], event["node"]
        elif kind == "result":
            self.results[job_id] = event["metrics"]
        elif kind == "error":
            self.errors[job_id] = event["error"]

    # --- views ----------------------------------------------------------------------------------

    async def cluster(self) -> dict:
        self._refresh_totals()
        view = cluster_view(ray)
        waiting = []
        for job_id in self.queue:
            job = await self.storage("job", job_id)
            waiting.append({"job_id": job_id, "training_id": job["training_id"], "type": job["type"],
                            "reason": job["reason"]})
        service = read_service(self.home) or {}
        return {**view, "dashboard_url": service.get("dashboard_url"), "free_for_training": self.ledger.free(),
                "training_servers": [{"job_id": r.job_id, "training_id": r.training_id, "project": r.project,
                                      "type": r.type, "bundle": describe_bundle(scaled(r.bundle, r.slots)), "license": r.license,
                                      "status": "cancelling" if r.cancelled_by else "running",
                                      "started_by": r.started_by, "started_at": r.started_at,
                                      "worker_pid": r.worker_pid, "worker_node": r.worker_node}
                                     for r in self.running.values()],
                "queue": waiting, "licenses": self.licenses.usage(),
                "license_file": describe(license_file(self.home))}

    async def licensed(self, scope: str) -> bool:
        """Whether a license of the license file grants `scope` (pre-annotation checks ocr:inference)."""
        self.licenses.reload()
        return any(scope in lic.scopes for lic in self.licenses.licenses)

    # --- scheduling ------------------------------------------------------------------------------

    def _refresh_totals(self) -> None:
        totals = ray.cluster_resources()
        self.ledger.totals = {k: totals.get(k, 0.0) for k in ("CPU", "GPU")}
        try:
            self.licenses.set_cpu_bundles(int(self.ledger.totals["CPU"]))
        except LabtrainError as exc:  # a broken license file: jobs wait and say so
            log.error("%s", exc)

    async def _tick(self) -> None:
        while True:  # resources can appear (autoscaling), license files change, Ray jobs end
            await asyncio.sleep(5)
            try:
                if self.unrecorded:
                    await self._record_unrecorded()
                if self.queue:
                    self._refresh_totals()
                    await self._schedule()
                for running in [r for r in self.running.values() if r.submission_id]:
                    state = await asyncio.to_thread(self._ray_job_status, running.submission_id)
                    if state in ("STOPPED", "FAILED", "SUCCEEDED") and running.job_id in self.running:
                        await self._finish(running, self.errors.get(running.job_id)
                                           or f"its Ray job {running.submission_id} ended {state} without reporting")
            except Exception:  # the next tick tries again
                log.exception("job manager tick failed")

    def _job_client(self):
        from ray.job_submission import JobSubmissionClient

        service = read_service(self.home) or {}
        return JobSubmissionClient(service.get("dashboard_url") or "http://127.0.0.1:8265")

    def _stop_ray_job(self, submission_id: str) -> None:
        try:
            self._job_client().stop_job(submission_id)
        except Exception as exc:  # already gone: nothing to stop
            log.warning("could not stop Ray job %s: %s", submission_id, exc)

    def _ray_job_status(self, submission_id: str) -> str | None:
        try:
            return str(self._job_client().get_job_status(submission_id)).split(".")[-1]
        except Exception:
            return None

    async def _schedule(self) -> None:
        async with self.lock:
            for job_id in list(self.queue):
                job = await self.storage("job", job_id)
                training = await self.storage("training", job["training_id"])
                if job_id not in self.queue:  # cancelled while we read it
                    continue
                bundle = bundle_for(job["gpu"])
                reason = self._wait_reason(job, bundle)
                if reason:
                    if reason != job["reason"]:
                        await self.storage("update_job", job_id, reason=reason)
                        self._log(job, reason)
                    continue
                # Off the queue and into `running` with no await between: a cancel always finds it.
                self.queue.remove(job_id)
                slots, license_id = self._take(job_id, job["scope"], bundle, sweep_size(training["request"]))
                self.running[job_id] = RunningJob(job_id, job["training_id"], training["project"], job["type"],
                                                  bundle, license_id, training["requested_by"], str(now()),
                                                  job["output_dir"], slots=slots)
                await self._launch(self.running[job_id], job)

    def _take(self, job_id: int, scope: str, bundle: dict, wanted: int) -> tuple[int, str]:
        """A bundle and a license for the job; a search or a curve takes more, one per trial it
        may run at once, as many as are free now (at most `wanted`). Returns (slots, license)."""
        held = [self.licenses.acquire(scope, job_id)]
        while len(held) < wanted and not self.ledger.missing(scaled(bundle, len(held) + 1)) \
                and self.licenses.available(scope):
            held.append(self.licenses.acquire(scope, job_id))
        self.ledger.take(job_id, scaled(bundle, len(held)))
        names = list(dict.fromkeys(held))
        return len(held), ", ".join(names) + (f" ({len(held)} slots)" if len(held) > 1 else "")

    def _wait_reason(self, job: dict, bundle: dict) -> str | None:
        missing = self.ledger.missing(bundle)
        if missing:
            return f"waiting for {missing}"
        try:
            if self.licenses.available(job["scope"]) is None:
                return f"waiting for a license with scope {job['scope']}"
        except LabtrainError as exc:
            return f"waiting for a valid license file: {exc}"
        return None

    async def _launch(self, running: RunningJob, job: dict) -> None:
        job_id, bundle, license_id = running.job_id, running.bundle, running.license
        try:
            spec = await self.storage("job_spec", job_id)
            await self.storage("update_job", job_id, status="running", reason=None, license=license_id,
                               started_at=running.started_at, progress=0.0)
            self._log(job, f"started on {describe_bundle(bundle)}"
                           + (f" x {running.slots} (trials at once)" if running.slots > 1 else "")
                           + f" with license {license_id}")
            if job_id in self.submissions:  # its Ray job's driver runs it (see submission_grant)
                running.submission_id = self.submissions[job_id]
                if running.cancelled_by:
                    await asyncio.to_thread(self._stop_ray_job, running.submission_id)
                    await self._finish(running, None, reschedule=False)
                return
            running.ref = start_job(job_id, spec, bundle, str(self.home / "ray_results"), running.slots)
        except Exception as exc:  # the catalog or Ray refused: the job fails, nothing stays held
            await self._finish(running, f"could not start: {exc}", reschedule=False)
            return
        if running.cancelled_by:  # cancelled while it was being launched
            ray.cancel(running.ref, force=True)
        self._background(self._watch(running))

    async def _watch(self, running: RunningJob) -> None:
        try:
            await running.ref
            error = None
        except ray.exceptions.TaskCancelledError:
            error = "cancelled"
        except Exception as exc:  # the trainer raised, or a worker or node died
            error = self.errors.get(running.job_id) or ray_failure(exc)
        await self._finish(running, error)

    async def _finish(self, running: RunningJob, error: str | None, reschedule: bool = True) -> None:
        """End a job however it ended; give back its bundle and license. `reschedule=False`
        from inside `_schedule` (its lock is held; the loop goes on with the freed bundle)."""
        job_id = running.job_id
        for seq in sorted(self.log_lines.pop(job_id, {}).items()):  # lines whose predecessors never came
            self._append(running.output_dir, seq[1])
        self.log_next.pop(job_id, None)
        if running.cancelled_by:
            end = ("cancelled", f"cancelled by {running.cancelled_by}")
        elif error:
            end = ("failed", error)
        else:
            end = ("succeeded", self.results.get(job_id) or {})
        try:
            await self._record_end(job_id, end)
        except LabtrainError as exc:
            if exc.status_code == 507:  # the catalog cannot be written now (a full disk): retried every tick
                self.unrecorded[job_id] = end
            print(f"labtrain: job {job_id} ended {end[0]} but the catalog could not record it ({exc})"
                  + ("; retrying" if exc.status_code == 507 else ""), file=sys.stderr, flush=True)
        finally:
            self.running.pop(job_id, None)
            self.ledger.give_back(job_id)
            self.licenses.release(job_id)
            for store in (self.results, self.errors, self.submissions):
                store.pop(job_id, None)
        if reschedule:
            await self._schedule()

    async def _record_end(self, job_id: int, end: tuple[str, Any]) -> None:
        """Write how a job ended into the catalog (a success registers its model) and its log."""
        status, detail = end
        job = await self.storage("job", job_id)
        if status != "succeeded":
            await self.storage("end_job", job_id, status, detail)
            self._log(job, detail if status == "cancelled" else f"failed: {detail}")
            return
        try:
            done = await self.storage("complete_job", job_id, detail)
        except LabtrainError as exc:
            if exc.status_code == 507:
                raise
            await self.storage("end_job", job_id, "failed", f"could not register the model: {exc}")
            self._log(job, f"failed: could not register the model: {exc}")  # e.g. the deploy no longer fits
            return
        training = await self.storage("training", job["training_id"])
        if not done["model_name"]:  # a curve: measured, nothing registered
            self._log(job, "succeeded: the curve is in the training's metrics and curve.png")
            return
        self._log(job, f"succeeded: model {done['model_name']}"
                       + (" deployed into the labeling config" if training["request"].get("deploy") else ""))

    async def _record_unrecorded(self) -> None:
        for job_id, end in list(self.unrecorded.items()):
            try:
                await self._record_end(job_id, end)
            except LabtrainError:
                continue  # still no room: the next tick tries again
            del self.unrecorded[job_id]

    # --- the job log -----------------------------------------------------------------------------

    @staticmethod
    def _log_path(output_dir: str) -> Path:
        path = Path(output_dir) / "job.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _log(self, job: dict, line: str) -> None:
        self._append(job["output_dir"], f"[labtrain {now().isoformat(timespec='seconds')}] {line}")

    def _append(self, output_dir: str, line: str) -> None:
        """A line of a job's log; when it cannot be written (a full disk), it goes to stderr."""
        try:
            with self._log_path(output_dir).open("a") as out:
                out.write(line + "\n")
        except OSError as exc:
            print(f"labtrain: could not write to the log of {output_dir} ({exc}): {line}", file=sys.stderr, flush=True)


def get_job_manager() -> "ray.actor.ActorHandle":
    try:
        return ray.get_actor(JOB_MANAGER, namespace=NAMESPACE)
    except ValueError:
        raise NotFound("the job manager is not running; restart `labtrain serve`") from None
