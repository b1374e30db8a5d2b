"""The job manager: a named Ray actor that queues training jobs, binds each to a resource
bundle and a license slot, runs it as a Ray Train run (`ray_app.train_run`), streams its events
into the job log and the catalog, and ends it however it ends."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from cluster.licenses import LicensePool, describe, license_file
from cluster.resources import ALONE_MAX_CPUS, Ledger, bundle_for, cluster_view, describe_bundle, scaled, sweep_size
from cluster.scheduler import Plan, QueuedJob, plan
from labtrain.encoders import Encoder
from labtrain.errors import Conflict, LabtrainError, NotFound, StorageFull, ValidationError
from ray_app.autoscaling import Demand, capacity, find_node_types
from ray_app.clients import Storage
from ray_app.encoder_registry import forget_files, run_on_this_node
from ray_app.job_worker import Resilience, ray_failure
from ray_app.placement_groups import remove_leftovers
from ray_app.settings import JOB_MANAGER, NAMESPACE, read_service
from ray_app.train_run import start_job
from ray_app.workspace import Home
from storage.artifacts import ArtifactStore
from storage.history import now
from trainers.spec import TrainParams

log = logging.getLogger(__name__)
NODE_VERDICT_S = 90  # how long Ray may take to declare an unreachable node dead
TICK_S = 2  # how often the queue is looked at again besides when a job ends
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
    max_retries: int = 1  # how often Ray starts it again when its worker or node is lost
    epochs: int | None = None
    epoch: int = 0  # the last epoch it finished


@ray.remote(num_cpus=0, max_restarts=0)
class JobManager:
    """One per service. Async: its methods interleave on one event loop, never in parallel."""

    def __init__(
        self,
        home: str,
        storage: ray.actor.ActorHandle,
        autoscaling_config: str | None = None,
        artifacts: str | None = None,
    ):
        self.home = Path(home)
        self.store = ArtifactStore(artifacts) if artifacts else None
        self.storage = Storage(storage)
        self.ledger = Ledger()
        self.licenses = LicensePool(self.home, 1)
        self.node_types, self.node_types_source = find_node_types(autoscaling_config)
        self.capacity = capacity(self.node_types)
        self.demand = Demand(enabled=bool(self.node_types))
        self.where = Home(str(self.home), ray.get_runtime_context().get_node_id())  # trainings' files live here
        self.queue: list[int] = []
        self.running: dict[int, RunningJob] = {}
        self.results: dict[int, dict] = {}
        self.errors: dict[int, str] = {}
        self.submissions: dict[int, str] = {}  # job id -> Ray job submission id (--submit)
        self.unrecorded: dict[int, tuple] = {}  # job id -> how it ended, when the catalog could not record it
        # (job id, sending worker) -> log lines that came before their turn, and the next line's number;
        # a worker started again (a lost node) numbers its lines from 0
        self.log_lines: dict[tuple[int, str], dict[int, str]] = {}
        self.log_next: dict[tuple[int, str], int] = {}
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        self.started = False

    async def start(self) -> list[int]:
        """Mark what an earlier service left unfinished as interrupted; start scheduling."""
        if self.started:
            return []
        self.started = True
        interrupted = await self.storage.fail_interrupted_jobs(INTERRUPTED)
        for job_id in interrupted:
            job = await self.storage.job(job_id)
            self._log(job, INTERRUPTED)
        self._refresh_totals()
        self._background(self._tick())
        return interrupted

    def _background(self, coroutine) -> None:
        """Run a coroutine on the actor's loop, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- requests ----------------------------------------------------------------------------

    async def submit(self, project: str, request: dict, user: str | None, source: str = "manual") -> dict:
        self._refresh_totals()
        bundle = bundle_for(request.get("gpu", False), request.get("cpus"))
        impossible = self.capacity.impossible(bundle)
        if impossible and "GPU" in bundle:
            raise ValidationError(f"gpu: {impossible}; train without --gpu, or add a GPU node (or a GPU node type)")
        if impossible and request.get("cpus"):
            raise ValidationError(f"cpus: {impossible}; ask for fewer CPUs, or add a node with {request['cpus']} CPUs")
        if impossible:
            raise ValidationError(
                f"{impossible}; start a worker node with CPUs, or give the autoscaler a node type with CPUs"
            )
        submitted = request.get("runner") == "ray_job"
        grows = may_grow(request, bool(request.get("gpu"))) and not self.capacity.node_types
        training = await self.storage.create_training(project, request, user, "ray job" if submitted else source)
        for job in training["jobs"]:
            self._log(
                job,
                f"queued by {user or 'unknown'} ({source}): {job['type']} with {job['embeddings']} "
                f"embeddings on a {describe_bundle(bundle)} bundle"
                f"{' (every CPU of a node if it runs alone)' if grows else ''}, "
                f"license scope {job['scope']}",
            )
            for note in training["data"]["checks"].get(job["type"], {}).get("notes", []):
                self._log(job, f"data check: {note}")
            if (request.get("embeddings_notes") or {}).get(job["type"]):
                self._log(job, f"embeddings: {request['embeddings_notes'][job['type']]}")
            if submitted:
                await self.storage.update_job(job["job_id"], reason="waiting for its Ray job to start")
            else:
                self.queue.append(job["job_id"])
        await self._schedule()
        training = await self.storage.training(training["id"])
        if submitted:
            for job in training["jobs"]:
                job["submission_id"] = f"labtrain-job-{job['job_id']}-{uuid.uuid4().hex[:6]}"
                # this cluster's GCS: Ray's job supervisor points a driver at "auto", the latest
                # cluster `ray start` recorded on the machine or any running there, maybe not this one
                job["entrypoint"] = (
                    f"{sys.executable} -m ray_app.job_entry {job['job_id']} {job['submission_id']} "
                    f"{ray.get_runtime_context().gcs_address}"
                )
        return training

    async def active_learning(self, project: str) -> dict | None:
        """After an import: start the project's active-learning training if it is due (see
        `TrainingHistory.active_learning_due`); its failure to start is logged, never raised."""
        request = await self.storage.active_learning_due(project)
        if request is None:
            return None
        try:
            return await self.submit(
                project, await self._with_embeddings(project, request), None, source="active learning"
            )
        except LabtrainError as exc:
            print(f"labtrain: active learning of {project} could not start: {exc}", file=sys.stderr, flush=True)
            return None

    async def label_studio_training(self, project: str) -> dict:
        """Label Studio's "Start Training": the project's saved training (`TrainingHistory.saved_request`),
        deployed when it succeeds, so that the new model pre-annotates the next tasks."""
        request = await self.storage.saved_request(project, True)
        request = await self._with_embeddings(project, request)
        return await self.submit(project, request, "label studio", source="label studio")

    # --- trainings submitted as Ray jobs (the entry point is ray_app.job_entry) ---------------

    async def attach_submission(self, job_id: int, submission_id: str) -> dict:
        job = await self.storage.job(job_id)
        training = await self.storage.training(job["training_id"])
        if training["request"].get("runner") != "ray_job" or job_id in self.submissions:
            raise Conflict(f"job {job_id} was not submitted as a Ray job, or its Ray job already started")
        if job["status"] != "queued":
            raise Conflict(f"job {job_id} is {job['status']}")
        self.submissions[job_id] = submission_id
        await self.storage.update_job(job_id, ray_job_id=submission_id, reason="waiting to be scheduled")
        self._log(job, f"Ray job {submission_id} started; waiting for a bundle and a license")
        self.queue.append(job_id)
        await self._schedule()
        return await self.storage.job(job_id)

    async def submission_grant(self, job_id: int) -> dict:
        """What the Ray job's driver may do now: run (with its spec, bundle and license), wait, or end."""
        running = self.running.get(job_id)
        if running is not None:
            return {
                "state": "run",
                "spec": await self.storage.job_spec(job_id),
                "bundle": describe_bundle(running.bundle),
                "bundle_resources": running.bundle,
                "license": running.license,
                "home": self.where,
                "resilience": self._resilience(running.max_retries),
            }
        job = await self.storage.job(job_id)
        if job_id in self.queue:
            return {"state": "wait", "reason": job["reason"]}
        return {"state": "end", "reason": f"job {job_id} is {job['status']}: {job['reason']}"}

    async def submission_finished(self, job_id: int, error: str | None) -> dict:
        running = self.running.get(job_id)
        if running is not None and running.submission_id:
            await self._finish(running, self.errors.get(job_id) or error)
        return await self.storage.job(job_id)

    # --- a job's files, for worker nodes that do not see the home (ray_app.workspace) ----------

    async def job_inputs(self, job_id: int, paths: list[str]) -> dict[str, bytes]:
        """The contents of a job's input files (its snapshot, script, page images with their cached
        OCR words); only files inside the home are read."""
        return await asyncio.to_thread(self._read_inputs, paths)

    def _read_inputs(self, paths: list[str]) -> dict[str, bytes]:
        home, contents = self.home.resolve(), {}
        for path in paths:
            file = Path(path).resolve()
            if not file.is_relative_to(home):
                raise ValidationError(f"{path} is not in labtrain's home; a job reads its inputs from there only")
            contents[path] = file.read_bytes()
            for cached in file.parent.glob(f"{file.name}.ocr-*.json"):
                contents[str(Path(path).parent / cached.name)] = cached.read_bytes()
        return contents

    async def receive_output(
        self, job_id: int, target: str, relative: str, offset: int, data: bytes, last: bool
    ) -> None:
        """One chunk of a file a job wrote on a worker node, into its folder in the home."""
        folder = Path(target).resolve()
        file = (folder / relative).resolve()
        if not folder.is_relative_to(self.home.resolve() / "trainings") or not file.is_relative_to(folder):
            raise ValidationError(f"{target}/{relative} is not in a training's folder of labtrain's home")
        await asyncio.to_thread(_write_chunk, file, offset, data)

    async def _with_embeddings(self, project: str, request: dict) -> dict:
        """Each type's embeddings: the request's, else the default for the backend and the project's
        language (`trainers.embeddings.default_embeddings`)."""
        from trainers.embeddings import default_embeddings

        language = (await self.storage.project(project))["language"]
        registered = await self.storage.encoders()
        embeddings, notes = {}, dict(request.get("embeddings_notes") or {})
        for t in request["types"]:
            embeddings[t] = (request.get("embeddings") or {}).get(t)
            if not embeddings[t]:
                embeddings[t], note = default_embeddings(t, request.get("backend", "pytorch"), language, registered)
                if note:
                    notes[t] = note
        return {**request, "embeddings": embeddings, "embeddings_notes": notes}

    # --- encoders users register ----------------------------------------------------------------

    async def add_encoder(self, name: str, source: str, languages: list[str], description: str, user: str) -> Encoder:
        """Copy, check and keep an encoder (`ray_app.encoder_registry`), then record it in the catalog."""
        await self.storage.check_encoder_name(name)
        encoder = await run_on_this_node(
            name, source, str(self.home), self.store.uri if self.store else None, languages, description
        )
        try:
            return await self.storage.add_encoder(encoder, user)
        except Exception:
            await asyncio.to_thread(forget_files, encoder, str(self.home))
            raise

    async def remove_encoder(self, name: str) -> Encoder:
        encoder = await self.storage.remove_encoder(name)
        await asyncio.to_thread(forget_files, encoder, str(self.home))
        return encoder

    async def cancel(self, training_id: int, user: str | None) -> dict:
        for job in await self.storage.jobs_of(training_id):
            job_id = job["job_id"]
            if job_id in self.queue:
                self.queue.remove(job_id)
                try:
                    await self.storage.end_job(job_id, "cancelled", f"cancelled by {user} while queued")
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
        return await self.storage.training(training_id)

    async def event(self, job_id: int, event: dict) -> None:
        """Events from a running trainer: log lines, progress, its result or its error."""
        running = self.running.get(job_id)
        if running is None or running.cancelled_by:
            return
        kind = event.get("kind")
        if kind == "log" and "seq" in event:
            # An async actor may run calls from one caller out of order: lines wait for the ones before.
            sender = (job_id, event.get("sender", ""))
            waiting = self.log_lines.setdefault(sender, {})
            waiting[event["seq"]] = event["line"]
            while self.log_next.get(sender, 0) in waiting:
                self._append(running.output_dir, waiting.pop(self.log_next.get(sender, 0)))
                self.log_next[sender] = self.log_next.get(sender, 0) + 1
        elif kind == "log":
            self._append(running.output_dir, event["line"])
        elif kind == "progress":  # the worker sends about one a second (train_run.PROGRESS_EVERY_S)
            changes = {"progress": min(99.0, event["progress"])}
            if event.get("epoch"):
                running.epoch = event["epoch"]
                changes.update(epoch=event["epoch"], metrics=event.get("metrics") or None)
            await self.storage.update_job(job_id, **changes)
        elif kind == "worker":
            if running.worker_node is not None:  # Ray started it again: its worker or node was lost
                self._append(running.output_dir, self._restart_line(running, event))
            running.worker_pid, running.worker_node = event["pid"], event["node"]
        elif kind == "result":
            self.results[job_id] = event["metrics"]
        elif kind == "error":
            self.errors[job_id] = event["error"]

    def _restart_line(self, running: RunningJob, event: dict) -> str:
        lost = "alive" if any(n["NodeID"] == running.worker_node and n["Alive"] for n in ray.nodes()) else "lost"
        where = (
            f"node {running.worker_node[:12]} {lost}"
            if lost == "lost"
            else f"the training process on node {running.worker_node[:12]} lost"
        )
        done = f"at epoch {running.epoch} of {running.epochs}" if running.epochs else ""
        if event.get("resumed_epoch"):
            how = f"resumed from the epoch-{event['resumed_epoch']} checkpoint"
        elif event.get("checkpoints"):
            how = "started again from the beginning (no epoch had been checkpointed yet)"
        else:
            how = (
                "started again from the beginning (checkpoints need a place every node reaches: "
                "labtrain serve --artifacts)"
            )
        return (
            f"[labtrain {now().isoformat(timespec='seconds')}] {where} {done}; {how} on node {event['node'][:12]}"
        ).replace("  ", " ")

    # --- views ----------------------------------------------------------------------------------

    async def cluster(self) -> dict:
        self._refresh_totals()
        view = cluster_view(ray)
        waiting = []
        for job_id in self.queue:
            job = await self.storage.job(job_id)
            waiting.append(
                {"job_id": job_id, "training_id": job["training_id"], "type": job["type"], "reason": job["reason"]}
            )
        service = read_service(self.home) or {}
        return {
            **view,
            "dashboard_url": service.get("dashboard_url"),
            "free_for_training": self.ledger.free(),
            "training_servers": [
                {
                    "job_id": r.job_id,
                    "training_id": r.training_id,
                    "project": r.project,
                    "type": r.type,
                    "bundle": describe_bundle(scaled(r.bundle, r.slots)),
                    "license": r.license,
                    "status": "cancelling" if r.cancelled_by else "running",
                    "started_by": r.started_by,
                    "started_at": r.started_at,
                    "worker_pid": r.worker_pid,
                    "worker_node": r.worker_node,
                }
                for r in self.running.values()
            ],
            "queue": waiting,
            "licenses": self.licenses.usage(),
            "license_file": describe(license_file(self.home)),
            "artifacts": self.store.uri if self.store else None,
            "autoscaler": {
                "config": self.node_types_source,
                "demand": self.demand.shown,
                "node_types": [
                    {"name": t.name, "resources": dict(t.resources), "max_workers": t.max_workers}
                    for t in self.node_types
                ],
            },
        }

    async def licensed(self, scope: str) -> bool:
        """Whether a license of the license file grants `scope` (pre-annotation checks ocr:inference)."""
        self.licenses.reload()
        return any(scope in lic.scopes for lic in self.licenses.licenses)

    # --- scheduling ------------------------------------------------------------------------------

    def _refresh_totals(self) -> None:
        """Ray's view of the cluster now: the alive nodes and their totals (an autoscaler adds and
        retires nodes); the embedded license grows with the most CPUs the cluster may have."""
        self.capacity = capacity(self.node_types)
        self.ledger.totals = {k: sum(n.get(k, 0.0) for n in self.capacity.nodes) for k in ("CPU", "GPU")}
        try:
            self.licenses.set_cpu_bundles(int(self.capacity.max_resource("CPU")))
        except LabtrainError as exc:  # a broken license file: jobs wait and say so
            log.error("%s", exc)

    async def _tick(self) -> None:
        while True:  # nodes join and go (autoscaling), license files change, Ray jobs end
            await asyncio.sleep(TICK_S)
            try:
                if self.unrecorded:
                    await self._record_unrecorded()
                if self.queue:
                    self._refresh_totals()
                    await self._schedule()
                for running in [r for r in self.running.values() if r.submission_id]:
                    state = await asyncio.to_thread(self._ray_job_status, running.submission_id)
                    if state in ("STOPPED", "FAILED", "SUCCEEDED") and running.job_id in self.running:
                        await self._finish(
                            running,
                            self.errors.get(running.job_id)
                            or f"its Ray job {running.submission_id} ended {state} without reporting",
                        )
                await self._remove_leftover_placement_groups()
            except Exception:  # the next tick tries again
                log.exception("job manager tick failed")

    async def _remove_leftover_placement_groups(self) -> None:
        """Give back what a cancelled or dead run's placement groups still hold (see
        ray_app.placement_groups): a run's Ray actors die some seconds after its task, so every tick looks."""
        async with self.lock:  # no run starts between the look at what runs and the removal
            runs_going = any(not r.submission_id for r in self.running.values())  # a --submit run is its Ray job's
            removed = await asyncio.to_thread(remove_leftovers, runs_going)
        for group in removed:
            log.warning(
                "removed placement group %s (%s): its creator is gone",
                group.id,
                ", ".join(describe_bundle(b) for b in group.bundles),
            )

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
        """Carry out the scheduler's plan (`cluster.scheduler.plan`): start what fits, record why the
        others wait, and show the autoscaler the bundles they wait for."""
        async with self.lock:
            waiting = []
            for job_id in list(self.queue):
                job = await self.storage.job(job_id)
                waiting.append((job, await self.storage.training(job["training_id"])))
            waiting = [(job, training) for job, training in waiting if job["job_id"] in self.queue]
            self._refresh_totals()
            queued = [
                QueuedJob(
                    job["job_id"],
                    job["scope"],
                    bundle_for(job["gpu"], training["request"].get("cpus")),
                    sweep_size(training["request"]),
                    grows=may_grow(training["request"], bool(job["gpu"])),
                )
                for job, training in waiting
            ]
            try:
                self.licenses.reload()
                decided = plan(
                    queued, self.ledger.free(), self.capacity, self.licenses.slots(), self._alone_cpus(queued)
                )
            except LabtrainError as exc:  # a broken license file: every job waits and says so
                decided = Plan(waits={q.job_id: f"waiting for a valid license file: {exc}" for q in queued})
            self.demand.show([r.bundle for r in self.running.values() for _ in range(r.slots)], decided.demand)
            for job, _ in waiting:
                reason = decided.waits.get(job["job_id"])
                if reason and reason != job["reason"] and job["job_id"] in self.queue:
                    await self.storage.update_job(job["job_id"], reason=reason)
                    self._log(job, reason)
            starts = {s.job_id: s for s in decided.starts}
            for job, training in waiting:
                start = starts.get(job["job_id"])
                if start is None or job["job_id"] not in self.queue:  # waits, or was cancelled meanwhile
                    continue
                # Off the queue and into `running` with no await between: a cancel always finds it.
                self.queue.remove(job["job_id"])
                bundle = dict(start.bundle or bundle_for(job["gpu"], training["request"].get("cpus")))
                self.ledger.take(job["job_id"], scaled(bundle, start.slots))
                for license_id in start.licenses:
                    self.licenses.bind(license_id, job["job_id"])
                names = list(dict.fromkeys(start.licenses))
                license_text = ", ".join(names) + (f" ({start.slots} slots)" if start.slots > 1 else "")
                self.running[job["job_id"]] = RunningJob(
                    job["job_id"],
                    job["training_id"],
                    training["project"],
                    job["type"],
                    bundle,
                    license_text,
                    training["requested_by"],
                    str(now()),
                    job["output_dir"],
                    slots=start.slots,
                    max_retries=training["request"].get("max_retries", 1),
                )
                await self._launch(self.running[job["job_id"]], job)

    def _alone_cpus(self, queued: list[QueuedJob]) -> float:
        """The most CPUs a lone job may grow to (`cluster.scheduler.plan`): what Ray has free now
        (a job that just ended may still hold its CPUs for a moment). Ray is asked only when the
        queue is one job that may grow."""
        if len(queued) != 1 or not queued[0].grows:
            return 0.0
        try:
            return min(ALONE_MAX_CPUS, ray.available_resources().get("CPU", 0.0))
        except Exception:  # Ray's view unavailable: the job keeps its one CPU
            return 0.0

    async def _launch(self, running: RunningJob, job: dict) -> None:
        job_id, bundle, license_id = running.job_id, running.bundle, running.license
        try:
            spec = await self.storage.job_spec(job_id)
            await self.storage.update_job(
                job_id,
                status="running",
                reason=None,
                license=license_id,
                started_at=running.started_at,
                progress=0.0,
            )
            self._log(
                job,
                f"started on {describe_bundle(bundle)}"
                + (f" x {running.slots} (trials at once)" if running.slots > 1 else "")
                + f" with license {license_id}",
            )
            if job_id in self.submissions:  # its Ray job's driver runs it (see submission_grant)
                running.submission_id = self.submissions[job_id]
                if running.cancelled_by:
                    await asyncio.to_thread(self._stop_ray_job, running.submission_id)
                    await self._finish(running, None, reschedule=False)
                return
            running.epochs = spec["params"].get("epochs", TrainParams.model_fields["epochs"].default)
            running.ref = start_job(
                job_id, spec, bundle, running.slots, self.where, self._resilience(running.max_retries)
            )
        except Exception as exc:  # the catalog or Ray refused: the job fails, nothing stays held
            await self._finish(running, f"could not start: {exc}", reschedule=False)
            return
        if running.cancelled_by:  # cancelled while it was being launched
            ray.cancel(running.ref, force=True)
        self._background(self._watch(running))

    async def _watch(self, running: RunningJob) -> None:
        try:
            await running.ref
            error = self.errors.get(running.job_id)  # the trainer failed: it said why, and the run ended
        except ray.exceptions.TaskCancelledError:
            error = "cancelled"
        except Exception as exc:  # its worker or node died, and no retry was left
            error = self.errors.get(running.job_id) or await self._lost_node(running, exc) or ray_failure(exc)
        await self._finish(running, error)

    async def _lost_node(self, running: RunningJob, exc: Exception) -> str | None:
        """The reason of a job whose node is gone (its raylet killed, a spot instance reclaimed). Ray
        Train may give up on an unreachable worker before Ray has declared its node dead: then the
        node's fate is waited for (Ray's health checks take up to NODE_VERDICT_S)."""
        node = running.worker_node
        if node is None:
            return None
        unreachable = re.search(r"unavailable|failed to connect|node .*died", str(exc), re.IGNORECASE)
        deadline = time.monotonic() + (NODE_VERDICT_S if unreachable else 0)
        while True:
            info = next((n for n in ray.nodes() if n["NodeID"] == node), None)
            if info is None or not info["Alive"]:
                address = f" ({info['NodeManagerAddress']})" if info and info.get("NodeManagerAddress") else ""
                return (
                    f"node {node[:12]}{address} running it was lost at epoch {running.epoch} of "
                    f"{running.epochs}, and no retry was left (max_retries {running.max_retries})"
                )
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(1)

    async def _finish(self, running: RunningJob, error: str | None, reschedule: bool = True) -> None:
        """End a job however it ended; give back its bundle and license. `reschedule=False`
        from inside `_schedule` (its lock is held; the loop goes on with the freed bundle)."""
        job_id = running.job_id
        for sender in [k for k in self.log_lines if k[0] == job_id]:  # lines whose predecessors never came
            for _, line in sorted(self.log_lines.pop(sender).items()):
                self._append(running.output_dir, line)
        for sender in [k for k in self.log_next if k[0] == job_id]:
            del self.log_next[sender]
        if running.cancelled_by:
            end = ("cancelled", f"cancelled by {running.cancelled_by}")
        elif error:
            end = ("failed", error)
        else:
            end = ("succeeded", self.results.get(job_id) or {})
        try:
            await self._record_end(job_id, end)
        except StorageFull as exc:  # the catalog cannot be written now (a full disk): retried every tick
            self.unrecorded[job_id] = end
            print(
                f"labtrain: job {job_id} ended {end[0]} but the catalog could not record it ({exc}); retrying",
                file=sys.stderr,
                flush=True,
            )
        except LabtrainError as exc:
            print(
                f"labtrain: job {job_id} ended {end[0]} but the catalog could not record it ({exc})",
                file=sys.stderr,
                flush=True,
            )
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
        job = await self.storage.job(job_id)
        if status != "succeeded":
            await self.storage.end_job(job_id, status, detail)
            self._log(job, detail if status == "cancelled" else f"failed: {detail}")
            return
        try:
            kept = await asyncio.to_thread(self._keep_model, job) if self.store else None
        except Exception as exc:  # the store refused: the model is not registered, the job says why
            await self.storage.end_job(job_id, "failed", f"could not keep the model in the artifact store: {exc}")
            self._log(job, f"failed: could not keep the model in the artifact store {self.store.uri}: {exc}")
            return
        try:
            done = await self.storage.complete_job(job_id, detail, kept)
        except StorageFull:
            raise
        except LabtrainError as exc:
            await self.storage.end_job(job_id, "failed", f"could not register the model: {exc}")
            self._log(job, f"failed: could not register the model: {exc}")  # e.g. the deploy no longer fits
            return
        training = await self.storage.training(job["training_id"])
        if not done["model_name"]:  # a curve: measured, nothing registered
            self._log(job, "succeeded: the curve is in the training's metrics and curve.png")
            return
        self._log(
            job,
            f"succeeded: model {done['model_name']}"
            + (f" (kept in {kept})" if kept else "")
            + (" deployed into the labeling config" if training["request"].get("deploy") else ""),
        )

    def _keep_model(self, job: dict) -> str | None:
        """Copy a finished job's model into the artifact store (a curve registers none)."""
        folder = Path(job["output_dir"])
        if not (folder / "model").exists():
            return None
        return self.store.put_model(folder, "trainings", str(job["training_id"]), job["type"])

    async def _record_unrecorded(self) -> None:
        for job_id, end in list(self.unrecorded.items()):
            try:
                await self._record_end(job_id, end)
            except LabtrainError:
                continue  # still no room: the next tick tries again
            del self.unrecorded[job_id]

    def _resilience(self, max_retries: int) -> Resilience:
        """Ray Train's storage: the artifact store when there is one (epoch checkpoints go there and
        a retry on another node resumes from them), else the head's home (no checkpoints)."""
        if self.store:
            return Resilience(self.store.path("ray_results"), max_retries, self.store.fs, bool(self.node_types))
        return Resilience(str(self.home / "ray_results"), max_retries, None, bool(self.node_types))

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


def may_grow(request: dict, gpu: bool) -> bool:
    """Whether a job may take every CPU of a node when it runs alone (`cluster.scheduler.plan`): it
    asked for no CPU count and no GPU."""
    return not gpu and not request.get("cpus")


def _write_chunk(file: Path, offset: int, data: bytes) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("r+b" if offset else "wb") as out:
        out.seek(offset)
        out.write(data)


def get_job_manager() -> ray.actor.ActorHandle:
    try:
        return ray.get_actor(JOB_MANAGER, namespace=NAMESPACE)
    except ValueError:
        raise NotFound("the job manager is not running; restart `labtrain serve`") from None
