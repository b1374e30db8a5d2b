"""A project linked to Label Studio: link (and connect labtrain as its ML backend), the link's
state, a sync now, and pushing a model's predictions into Label Studio."""

from __future__ import annotations

import base64
import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from labtrain.errors import Conflict, LabtrainError, NotFound
from ray_app.api.answers import NDJSON_STREAM, LinkCreated, LinkShown, SyncPublic
from ray_app.api.deps import CurrentUser, JobsDep, ProjectManager, ProjectMember, StorageDep
from ray_app.api.ml_backend import model_version, predictions_for
from ray_app.api.models import LinkRequest, PushRequest
from ray_app.labelstudio import LabelStudio, sync_project
from storage.links import BACKEND_USER

router = APIRouter(prefix="/api/projects/{name}/link", tags=["label studio"])


@router.post("", response_model=LinkCreated, status_code=201)
async def link(name: str, body: LinkRequest, request: Request, user: CurrentUser, storage: StorageDep, jobs: JobsDep):
    """Link the project to a Label Studio project (created from its labeling config when it does not
    exist; else owners and managers only), pull every task and annotation, and with `connect`
    register labtrain as its ML backend with the webhook that keeps the two in sync. The answer
    holds `backend_password` (the basic-auth password Label Studio uses) this once."""
    async with LabelStudio(body.label_studio, body.ls_token) as ls:
        project = await ls.project(body.ls_project)  # a bad URL, token or id: Label Studio's own reason
        try:
            await storage.project_id(name)
        except LabtrainError as exc:  # (the storage client raises domain errors by their status)
            if exc.status_code != 404:
                raise
            await storage.create_project(name, project["label_config"], body.language, user.name)
        await storage.require_role(name, user, "manager")
        backend_url = (body.backend_url or str(request.base_url).rstrip("/") + f"/ml/{name}").rstrip("/")
        linked = await storage.link_project(name, ls.url, body.ls_project, body.ls_token, backend_url, user.name)
        try:  # each deploy a new model name: Label Studio asks again for tasks an older model predicted
            await storage.set_training_settings(name, True)
        except Conflict:  # a training of the project runs: versioning stays as it is
            pass
        imported = await sync_project(storage, name)
        if body.connect:
            password = linked["backend_password"]
            basic = "Basic " + base64.b64encode(f"{BACKEND_USER}:{password}".encode()).decode()
            webhook = await ls.ensure_webhook(body.ls_project, backend_url + "/webhook", {"Authorization": basic})
            backend = await ls.ensure_backend(body.ls_project, backend_url, BACKEND_USER, password)
            await storage.set_link_state(name, ml_backend_id=backend, webhook_id=webhook)
    training = await jobs.active_learning(name)
    return {
        **await storage.link(name),
        "backend_password": linked["backend_password"],
        "imported": imported,
        "label_studio_title": project.get("title"),
        "active_learning_training": training["id"] if training else None,
    }


@router.get("", response_model=LinkShown)
async def show_link(name: str, user: ProjectMember, storage: StorageDep):
    """The link: Label Studio's URL and project, the last sync, and the backend's state as Label
    Studio reports it (`backend_state`: CONNECTED, ERROR, ... or why it cannot be read)."""
    shown = await storage.link(name)
    shown["backend_state"] = None
    if shown["ml_backend_id"]:
        try:
            async with LabelStudio(shown["url"], await storage.link_token(name), timeout_s=10) as ls:
                backend = await ls.call("GET", f"/api/ml/{shown['ml_backend_id']}")
            shown["backend_state"] = {
                "CO": "CONNECTED",
                "DI": "DISCONNECTED",
                "ER": "ERROR",
                "TR": "TRAINING",
                "PR": "PREDICTING",
            }.get(backend.get("state"), backend.get("state"))
        except LabtrainError as exc:
            shown["backend_state"] = f"unknown: {exc}"
    return shown


@router.post("/sync", response_model=SyncPublic)
async def sync(name: str, user: ProjectManager, storage: StorageDep, jobs: JobsDep):
    """Pull the Label Studio project again (a mirror: annotations deleted there go here too)."""
    imported = await sync_project(storage, name)
    training = await jobs.active_learning(name)
    return {**imported, "active_learning_training": training["id"] if training else None}


@router.delete("", response_class=Response, status_code=204)
async def unlink(name: str, user: ProjectManager, storage: StorageDep):
    """Forget the link (Label Studio keeps the backend registered until it is removed there)."""
    await storage.unlink_project(name)


@router.post("/push", response_class=StreamingResponse, responses={**NDJSON_STREAM})
async def push(
    name: str, body: PushRequest, request: Request, user: ProjectManager, storage: StorageDep, jobs: JobsDep
):
    """Write predictions for every task of the linked project into Label Studio, skipping tasks that
    already hold one of that model version; streams one JSON line of progress per page."""
    link = await storage.link(name)
    token = await storage.link_token(name)
    models = [await storage.model(body.model)] if body.model else None
    if models and models[0]["project"] != name:
        raise NotFound(f"model {body.model!r} is not a model of project {name!r}")
    version = models[0]["name"] if models else await model_version(storage, name)

    async def progress():
        done = skipped = 0
        async with LabelStudio(link["url"], token) as ls:
            tasks = [t async for t in ls.tasks(link["ls_project"])]
            todo = [
                t
                for t in tasks
                if not any(p.get("model_version") == version for p in t.get("predictions") or [] if isinstance(p, dict))
            ]
            skipped = len(tasks) - len(todo)
            yield json.dumps({"total": len(tasks), "done": 0, "skipped": skipped, "model_version": version}) + "\n"
            for start in range(0, len(todo), 50):
                page = todo[start : start + 50]
                try:
                    results = await predictions_for(request.app.state, storage, jobs, name, page, ls, models)
                    await ls.import_predictions(
                        link["ls_project"],
                        [
                            {"task": task["id"], "result": r["result"], "score": r["score"], "model_version": version}
                            for task, r in zip(page, results)
                        ],
                    )
                except LabtrainError as exc:  # the answer has started: the error is its last line
                    yield json.dumps({"error": str(exc), "done": done, "total": len(tasks)}) + "\n"
                    return
                done += len(page)
                yield (
                    json.dumps({"total": len(tasks), "done": done, "skipped": skipped, "model_version": version}) + "\n"
                )

    return StreamingResponse(progress(), media_type="application/x-ndjson")
