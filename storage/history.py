"""Trainings, their jobs and the models they register: the history a project keeps, the
versioning rule for model names, and deploying a model into the labeling config."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError as PydanticError

from labtrain.encoders import BUILT_IN
from labtrain.errors import Conflict, NotFound, SelectionError, ValidationError
from labtrain.training_plan import ScriptPlan, TrainingPlan
from storage.labeling_config import deploy_model, parse_labeling_config
from storage.selection import SelectionParams

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
SCOPES = {
    "ner": "training:ner",
    "assertion": "training:assertion",
    "classification": "training:classification",
    "relation": "training:relation",
    "visual_ner": "ocr:training",
}
JOB_FIELDS = (
    "job_id",
    "training_id",
    "type",
    "embeddings",
    "scope",
    "gpu",
    "status",
    "reason",
    "progress",
    "epoch",
    "metrics",
    "license",
    "output_dir",
    "model_name",
    "ray_job_id",
    "started_at",
    "ended_at",
)
JSON_FIELDS = {"metrics"}
UPDATABLE = {
    "status",
    "reason",
    "progress",
    "epoch",
    "metrics",
    "license",
    "model_name",
    "ray_job_id",
    "started_at",
    "ended_at",
}
ACTIVE_LEARNING_EVERY = (50, 100, 200)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def training_status(jobs: list[dict]) -> str:
    """One word for a training from its jobs: queued while all wait, running while any still
    runs or waits, then failed if any failed, cancelled if any was cancelled, else succeeded."""
    states = {j["status"] for j in jobs}
    if states == {"queued"}:
        return "queued"
    if states & set(ACTIVE):
        return "running"
    for state in ("failed", "cancelled"):
        if state in states:
            return state
    return "succeeded"


def model_family(training_type: str, project: str, choices_name: str | None) -> str:
    return f"{training_type}_{project}" + (
        f"_{choices_name}" if training_type == "classification" and choices_name else ""
    )


class TrainingHistory:
    """Mixed into `Catalog` (which owns `con`, `home`, `project_id`, `config`, `snapshot` and
    `data_check`)."""

    # --- settings --------------------------------------------------------------------------

    def training_settings(self, name: str) -> dict:
        pid = self.project_id(name)
        row = self.con.execute(
            "SELECT versioning, active_learning FROM training_settings WHERE project_id = ?", [pid]
        ).fetchone()
        if not row:
            return {"versioning": False, "active_learning": {"enabled": False, "every": 50, "deploy": False}}
        return {"versioning": row[0], "active_learning": json.loads(row[1])}

    def set_training_settings(
        self, name: str, versioning: bool | None = None, active_learning: dict | None = None
    ) -> dict:
        """Versioning cannot change while a training of the project is queued or running (the
        name its model gets would change under it)."""
        pid = self.project_id(name)
        current = self.training_settings(name)
        if versioning is not None and versioning != current["versioning"] and self._active_jobs(pid):
            raise Conflict(f"project {name!r} has a training queued or running; change versioning after it ends")
        if active_learning is not None:
            every = active_learning.get("every", current["active_learning"]["every"])
            if not isinstance(every, int) or isinstance(every, bool) or every < 1:
                raise ValidationError(
                    f"active_learning.every={every!r} must be an integer >= 1 "
                    f"(the page offers {', '.join(map(str, ACTIVE_LEARNING_EVERY))})"
                )
            active_learning = {**current["active_learning"], **active_learning, "every": every}
            if active_learning.get("enabled") and not current["active_learning"].get("enabled"):
                # counting starts now: completions submitted before active learning was on do not count
                active_learning["baseline"] = self._submitted_completions(pid)
        settings = {
            "versioning": current["versioning"] if versioning is None else bool(versioning),
            "active_learning": active_learning or current["active_learning"],
        }
        self.con.execute(
            "INSERT INTO training_settings VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
            "versioning = excluded.versioning, active_learning = excluded.active_learning",
            [pid, settings["versioning"], json.dumps(settings["active_learning"])],
        )
        return settings

    def _submitted_completions(self, pid: int) -> int:
        (n,) = self.con.execute("SELECT count(*) FROM completions WHERE project_id = ? AND submitted", [pid]).fetchone()
        return n

    def active_learning_due(self, name: str) -> dict | None:
        """If active learning is on and `every` submitted completions have arrived since it last
        fired (or was switched on), and no active-learning training of the project is queued or
        running: move the count on and return the request to start, else None. The request is
        the project's last manual training's (types, embeddings, parameters, backend), else every
        type the config offers with its defaults; it deploys as the settings say, and tests on the
        tasks tagged `Test` when there are any, so that versions compare on the same test set."""
        pid = self.project_id(name)
        settings = self.training_settings(name)
        al = settings["active_learning"]
        submitted = self._submitted_completions(pid)
        if not al.get("enabled") or submitted - al.get("baseline", 0) < al["every"]:
            return None
        (running,) = self.con.execute(
            "SELECT count(*) FROM trainings t JOIN jobs j USING (training_id) WHERE t.project_id = ? "
            "AND t.source = 'active learning' AND j.status IN ('queued', 'running')",
            [pid],
        ).fetchone()
        if running:
            return None
        request = self.saved_request(name, deploy=bool(al.get("deploy")))
        self.con.execute(
            "UPDATE training_settings SET active_learning = ? WHERE project_id = ?",
            [json.dumps({**al, "baseline": submitted}), pid],
        )
        return request

    def saved_request(self, name: str, deploy: bool) -> dict:
        """What a training that nobody configured trains (active learning, Label Studio's Start
        Training): the project's last manual training (types, embeddings, parameters, backend,
        selection), else every type its config offers with the defaults; on the tasks tagged `Test`
        when there are any, so that versions compare on the same test set."""
        pid = self.project_id(name)
        last = self.con.execute(
            "SELECT request FROM trainings WHERE project_id = ? AND source IN ('manual', 'ray job') "
            "ORDER BY training_id DESC LIMIT 1",
            [pid],
        ).fetchone()
        request = (
            json.loads(last[0])
            if last
            else {
                "types": self.config(name).training_types(),
                "embeddings": {},
                "params": {},
                "gpu": False,
                "backend": "pytorch",
            }
        )
        (tagged,) = self.con.execute(
            "SELECT count(*) FROM tasks WHERE project_id = ? AND list_contains(tags, 'Test')", [pid]
        ).fetchone()
        selection = dict(request.get("selection") or {})
        if tagged:
            selection.update(test_tag="Test", validation_split=None)
        request.update(selection=selection, deploy=deploy, runner="ray_train")
        return request

    def _active_jobs(self, pid: int) -> int:
        (n,) = self.con.execute(
            "SELECT count(*) FROM jobs j JOIN trainings t USING (training_id) "
            "WHERE t.project_id = ? AND j.status IN ('queued', 'running')",
            [pid],
        ).fetchone()
        return n

    # --- trainings and jobs -------------------------------------------------------------------

    def create_training(
        self, name: str, request: dict | TrainingPlan, requested_by: str | None, source: str = "manual"
    ) -> dict:
        """Snapshot the selection and record the training with one queued job per type, all or
        nothing. The catalog keeps the request as the JSON of its `TrainingPlan`."""
        pid = self.project_id(name)
        config = self.config(name)
        plan = training_plan(request)
        types = list(dict.fromkeys(plan.types))
        offered = config.training_types()
        for t in types:
            if t not in offered:
                raise ValidationError(
                    f"training type {t!r} is not offered by project {name!r} "
                    f"(its config offers: {', '.join(offered) or 'none'})"
                )
        if plan.script:
            plan = plan.model_copy(update={"script": self._script_for(name, types, plan.script)})
        (tid,) = self.con.execute("SELECT nextval('training_ids')").fetchone()
        folder = self.home / "trainings" / str(tid)
        try:
            manifest = self.snapshot(
                name, SelectionParams.from_dict(plan.selection), types, out_dir=folder / "snapshot"
            )
            empty = [t for t in types if manifest["files"][t]["rows"] == 0]
            if empty:
                raise SelectionError(
                    f"no task qualifies for {', '.join(empty)}: check the tags, the review filter "
                    "and that completions are submitted"
                )
            manifest["checks"] = self._check_data(config, manifest, types)
            with self.transaction():
                self.con.execute(
                    "INSERT INTO trainings (training_id, project_id, source, requested_by, request, "
                    "data) VALUES (?, ?, ?, ?, ?, ?)",
                    [tid, pid, source, requested_by, plan.model_dump_json(), json.dumps(manifest)],
                )
                for t in types:
                    self.con.execute(
                        "INSERT INTO jobs (training_id, type, embeddings, scope, gpu, status, reason, output_dir) "
                        "VALUES (?, ?, ?, ?, ?, 'queued', 'waiting to be scheduled', ?)",
                        [tid, t, plan.embeddings[t], SCOPES[t], plan.gpu, str(folder / t)],
                    )
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self.training(tid)

    def _check_data(self, config, manifest: dict, types: list[str]) -> dict:
        """Each type's training part checked before any job exists, by the catalog's `data_check`
        (the service's is `trainers.data_check.check_snapshot`, which raises on a refusal); a catalog
        made without one records no checks."""
        if self.data_check is None:
            return {}
        multiple = bool(config.classification_group and config.classification_group.multiple)
        return self.data_check({t: manifest["files"][t] for t in types}, multiple)

    def _script_for(self, project: str, types: list[str], wanted: ScriptPlan) -> ScriptPlan:
        """The script version a training runs, as its request keeps it (name, version, sha256, limits)."""
        if types != ["ner"]:
            raise ValidationError(
                f"a custom training script trains NER only; this training asks for "
                f"{', '.join(types)} (train the other types without a script)"
            )
        script = self.script(project, wanted.name, wanted.version)
        return wanted.model_copy(
            update={"name": script["name"], "version": script["version"], "sha256": script["sha256"]}
        )

    def training(self, training_id: int) -> dict:
        row = self.con.execute(
            "SELECT t.training_id, p.name, t.source, t.requested_by, t.created_at, t.request, t.data "
            "FROM trainings t JOIN projects p USING (project_id) WHERE t.training_id = ?",
            [training_id],
        ).fetchone()
        if not row:
            raise NotFound(f"training {training_id} does not exist")
        return self._training_dict(row)

    def _training_dict(self, row: tuple) -> dict:
        tid, project, source, by, created, request, data = row
        jobs = self.jobs_of(tid)
        manifest = json.loads(data)
        return {
            "id": tid,
            "project": project,
            "source": source,
            "requested_by": by,
            "created_at": str(created),
            "status": training_status(jobs),
            "progress": round(sum(j["progress"] for j in jobs) / max(1, len(jobs)), 1),
            "request": TrainingPlan.model_validate_json(request).model_dump(),
            "data": {
                "selection": manifest["params"],
                "snapshot": str(Path(next(iter(manifest["files"].values()))["path"]).parent)
                if manifest["files"]
                else None,
                "rows": {t: f["rows"] for t, f in manifest["files"].items()},
                "checks": manifest.get("checks", {}),
            },
            "jobs": jobs,
        }

    def trainings(self, name: str, limit: int = 100) -> list[dict]:
        rows = self.con.execute(
            "SELECT t.training_id, p.name, t.source, t.requested_by, t.created_at, t.request, t.data "
            "FROM trainings t JOIN projects p USING (project_id) WHERE t.project_id = ? "
            "ORDER BY t.training_id DESC LIMIT ?",
            [self.project_id(name), limit],
        ).fetchall()
        return [self._training_dict(r) for r in rows]

    def jobs_of(self, training_id: int) -> list[dict]:
        rows = self.con.execute(
            f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE training_id = ? ORDER BY job_id", [training_id]
        ).fetchall()
        return [self._job_dict(r) for r in rows]

    def job(self, job_id: int) -> dict:
        row = self.con.execute(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE job_id = ?", [job_id]).fetchone()
        if not row:
            raise NotFound(f"job {job_id} does not exist")
        return self._job_dict(row)

    @staticmethod
    def _job_dict(row: tuple) -> dict:
        job = dict(zip(JOB_FIELDS, row))
        for key in JSON_FIELDS:
            job[key] = json.loads(job[key]) if job[key] else None
        for key in ("started_at", "ended_at"):
            job[key] = str(job[key]) if job[key] else None
        return job

    def active_jobs(self) -> list[dict]:
        rows = self.con.execute(
            f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE status IN ('queued', 'running') ORDER BY job_id"
        ).fetchall()
        return [self._job_dict(r) for r in rows]

    def update_job(self, job_id: int, **changes) -> dict:
        """Set some of a job's fields; a job that has ended keeps its end (late progress from a
        cancelled worker changes nothing)."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValidationError(f"job fields {sorted(unknown)} cannot be updated")
        if changes.get("status") and changes["status"] not in JOB_STATES:
            raise ValidationError(f"job status {changes['status']!r} is not one of {', '.join(JOB_STATES)}")
        if not changes:
            return self.job(job_id)
        values = [json.dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in changes.items()]
        sets = ", ".join(f"{k} = ?" for k in changes)
        self.con.execute(
            f"UPDATE jobs SET {sets} WHERE job_id = ? AND status IN ('queued', 'running')", [*values, job_id]
        )
        return self.job(job_id)

    def end_job(self, job_id: int, status: str, reason: str | None = None) -> dict:
        """Failed or cancelled, with the reason (its first line: the log keeps the rest); a job
        already ended stays as it ended."""
        first = next((line.strip() for line in (reason or "").splitlines() if line.strip()), None)
        return self.update_job(job_id, status=status, reason=first, ended_at=now())

    def fail_interrupted_jobs(self, reason: str) -> list[int]:
        """At service start: jobs a previous service left queued or running can no longer end."""
        ids = [j["job_id"] for j in self.active_jobs()]
        for job_id in ids:
            self.end_job(job_id, "failed", reason)
        return ids

    def job_spec(self, job_id: int) -> dict:
        """The trainer's spec (see `trainers.spec.TrainSpec`) for a job."""
        job = self.job(job_id)
        (project, language, stored, data) = self.con.execute(
            "SELECT p.name, p.language, t.request, t.data FROM trainings t JOIN projects p USING (project_id) "
            "WHERE t.training_id = ?",
            [job["training_id"]],
        ).fetchone()
        plan, file = TrainingPlan.model_validate_json(stored), json.loads(data)["files"][job["type"]]
        config = self.config(project)
        from_name, to_name, multiple, result_type = "label", "text", False, "labels"
        if job["type"] == "classification":
            group = config.classification_group
            from_name, to_name, multiple = group.name, group.to_name, group.multiple
        elif job["type"] == "visual_ner":
            group = next(g for g in config.label_groups if g.on_image)
            from_name, to_name = group.name, group.to_name
            result_type = "rectanglelabels" if group.tag == "RectangleLabels" else "labels"
        elif config.text_groups:
            from_name, to_name = config.text_groups[0].name, config.text_groups[0].to_name
        return {
            "type": job["type"],
            "snapshot": file["path"],
            "output_dir": job["output_dir"],
            "labels": file["labels"],
            "embeddings": job["embeddings"],
            "encoder": None if job["embeddings"] in BUILT_IN else self.encoder(job["embeddings"]).model_dump(),
            "backend": plan.backend,
            "params": plan.params,
            "device": "cuda" if job["gpu"] else "cpu",
            "multiple": multiple,
            "language": language,
            "from_name": from_name,
            "to_name": to_name,
            "result_type": result_type,
            "script": {**plan.script.model_dump(), "path": str(self.script_blobs.path(f"{plan.script.sha256}.py"))}
            if plan.script
            else None,
            **_sweep(plan),
        }

    # --- models --------------------------------------------------------------------------------

    def complete_job(self, job_id: int, metrics: dict, artifact_uri: str | None = None) -> dict:
        """A job succeeded: register its model under the project's naming rule (with where the
        artifact store keeps it, if there is one) and, if the training asked for it, deploy it into
        the labeling config; all in one transaction."""
        job = self.job(job_id)
        if job["status"] != "running":
            return job
        project, pid, request, source = self.con.execute(
            "SELECT p.name, p.project_id, t.request, t.source FROM trainings t JOIN projects p USING (project_id) "
            "WHERE t.training_id = ?",
            [job["training_id"]],
        ).fetchone()
        request = json.loads(request)
        if source == "curve":  # its points' models are only measured, never registered
            self.con.execute(
                "UPDATE jobs SET status = 'succeeded', progress = 100, reason = NULL, metrics = ?, "
                "ended_at = ? WHERE job_id = ?",
                [json.dumps(metrics), now(), job_id],
            )
            return self.job(job_id)
        config = self.config(project)
        group = config.classification_group
        family = model_family(job["type"], project, group.name if group else None)
        versioning = self.training_settings(project)["versioning"]
        with self.transaction():
            if versioning:
                (latest,) = self.con.execute("SELECT max(version) FROM models WHERE family = ?", [family]).fetchone()
                version = (latest or 0) + 1
                name = f"{family}_v{version}"
            else:
                version, name = None, family
            self.con.execute(
                "INSERT OR REPLACE INTO models (name, family, version, project_id, type, embeddings, job_id, path, "
                "metrics, created_at, artifact_uri) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    family,
                    version,
                    pid,
                    job["type"],
                    job["embeddings"],
                    job_id,
                    job["output_dir"],
                    json.dumps(metrics),
                    now(),
                    artifact_uri,
                ],
            )
            self.con.execute(
                "UPDATE jobs SET status = 'succeeded', progress = 100, reason = NULL, model_name = ?, "
                "metrics = ?, ended_at = ? WHERE job_id = ?",
                [name, json.dumps(metrics), now(), job_id],
            )
            if request.get("deploy"):
                xml = deploy_model(config.xml, job["type"], name)
                self.con.execute("UPDATE projects SET config_xml = ? WHERE project_id = ?", [xml, pid])
        return self.job(job_id)

    def models(self, user=None) -> list[dict]:
        rows = self.con.execute(
            "SELECT m.name FROM models m JOIN projects p USING (project_id) WHERE $admin OR EXISTS (SELECT 1 FROM "
            "members x WHERE x.project_id = m.project_id AND x.username = $user) ORDER BY m.family, m.version",
            {"admin": user is None or user.is_admin, "user": user.name if user else None},
        ).fetchall()
        return [self.model(n) for (n,) in rows]

    def model(self, name: str, with_versions: bool = False) -> dict:
        row = self.con.execute(
            "SELECT m.name, m.family, m.version, p.name, m.type, m.embeddings, m.job_id, j.training_id, m.path, "
            "m.metrics, m.created_at, m.artifact_uri, p.config_xml FROM models m JOIN projects p USING (project_id) "
            "JOIN jobs j USING (job_id) WHERE m.name = ? OR (m.family = ? AND m.version IS NOT NULL) "
            "ORDER BY m.name = ? DESC, m.version DESC LIMIT 1",
            [name, name, name],
        ).fetchone()
        if not row:
            raise NotFound(f"model {name!r} does not exist")
        keys = (
            "name",
            "family",
            "version",
            "project",
            "type",
            "embeddings",
            "job_id",
            "training_id",
            "path",
            "metrics",
            "trained_at",
            "artifact_uri",
        )
        model = dict(zip(keys, row[:-1]))
        model["metrics"] = json.loads(model["metrics"])
        model["trained_at"] = str(model["trained_at"])
        model["deployed"] = model["name"] in parse_labeling_config(row[-1]).summary()["models"]
        if with_versions:
            names = self.con.execute(
                "SELECT name FROM models WHERE family = ? ORDER BY version NULLS FIRST", [model["family"]]
            ).fetchall()
            model["versions"] = [self.model(n) for (n,) in names]
        return model

    def model_benchmark(self, name: str) -> dict:
        model = self.model(name)
        folder = Path(model["path"])
        metrics = json.loads((folder / "metrics.json").read_text())
        confusion = folder / "confusion_matrix.json"
        return {
            "model": model["name"],
            "type": model["type"],
            "metrics": metrics,
            "confusion_matrix": json.loads(confusion.read_text()) if confusion.exists() else None,
            "confusion_matrix_png": str(folder / "confusion_matrix.png")
            if (folder / "confusion_matrix.png").exists()
            else None,
        }


def _sweep(plan: TrainingPlan) -> dict:
    """A search's or a curve's part of the spec (ray_app.sweep_run reads it), or nothing."""
    if plan.tune:
        return {"sweep": {"kind": "tune", **plan.tune}}
    if plan.curve:
        return {"sweep": {"kind": "curve", **plan.curve}}
    return {}


def training_plan(request: dict | TrainingPlan) -> TrainingPlan:
    """The request as a `TrainingPlan`; a wrong one is refused naming its field."""
    try:
        return TrainingPlan.model_validate(request)
    except PydanticError as exc:
        error = exc.errors()[0]
        raise ValidationError(f"training request: {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
