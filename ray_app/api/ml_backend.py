"""labtrain as a linked project's ML backend, in Label Studio's protocol (1.23): `/ml/{project}/health`,
`/setup`, `/predict`, `/webhook` and `/versions`, behind HTTP basic auth (user `labtrain`, the
password `labtrain link` gave). `/predict` answers with the project's deployed models; `/webhook`
starts a training on "Start Training" and keeps the catalog in step with annotation events, and
answers at once: the work is done after the answer, one event of a project at a time."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from labtrain.errors import LabtrainError, ValidationError
from ray_app.api.answers import (
    BackendEventAnswer,
    BackendHealth,
    BackendPredictions,
    BackendSetup,
    BackendVersions,
)
from ray_app.api.deps import JobsDep, StorageDep
from ray_app.api.registry import _loaded
from ray_app.labelstudio import LabelStudio, sync_project

router = APIRouter(prefix="/ml/{name}", tags=["label studio ml backend"])
log = logging.getLogger(__name__)
NO_MODEL = "no model deployed"  # the version Label Studio sees before a first deploy (it must be a string)
TEXT_TYPES = ("ner", "assertion", "relation", "classification")


async def backend_caller(name: str, storage: StorageDep, authorization: Annotated[str | None, Header()] = None) -> str:
    """Label Studio, by the basic auth of the project's link; 401 for anyone else."""
    scheme, _, encoded = (authorization or "").partition(" ")
    challenge = {"WWW-Authenticate": f'Basic realm="labtrain ML backend of {name}"'}
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user = password = ""
    if scheme.lower() != "basic" or not user:
        raise HTTPException(
            401,
            "the ML backend takes HTTP basic auth (user 'labtrain' and the backend password that `labtrain link` gave)",
            headers=challenge,
        )
    if not await storage.backend_allows(name, user, password):
        raise HTTPException(401, f"wrong ML backend credentials for project {name!r}", headers=challenge)
    return name


LabelStudioCaller = Annotated[str, Depends(backend_caller)]


async def deployed_models(storage, name: str) -> list[dict]:
    """The project's models its labeling config names (what a deploy wrote), that labtrain has."""
    models = []
    for model in (await storage.config(name)).summary()["models"]:
        try:
            found = await storage.model(model)
        except LabtrainError as exc:  # a model attribute of the config that names no labtrain model: 404
            if exc.status_code != 404:
                raise
            continue
        if found["project"] == name:
            models.append(found)
    return models


async def model_version(storage, name: str) -> str:
    """What Label Studio records as the predictions' model_version: the deployed models' names (a
    new deploy is a new name, so Label Studio asks again for tasks it predicted with the old one)."""
    return "+".join(sorted(m["name"] for m in await deployed_models(storage, name))) or NO_MODEL


@router.get("/health", response_model=BackendHealth)
async def health(name: LabelStudioCaller, storage: StorageDep):
    """Label Studio's health check of the backend."""
    return {
        "status": "UP",
        "model_class": "labtrain",
        "project": name,
        "model_version": await model_version(storage, name),
    }


@router.post("/setup", response_model=BackendSetup)
async def setup(name: LabelStudioCaller, storage: StorageDep, body: Annotated[dict, Body()] = None):
    """Label Studio's setup call: answers the model version its predictions will carry."""
    return {"model_version": await model_version(storage, name)}


@router.get("/versions", response_model=BackendVersions)
async def versions(name: LabelStudioCaller, storage: StorageDep):
    """Every model of the project, newest last (Label Studio's version list)."""
    models = [m for m in await storage.models(None) if m["project"] == name]
    return {"versions": [m["name"] for m in sorted(models, key=lambda m: m["trained_at"])]}


@router.post("/predict", response_model=BackendPredictions)
async def predict(
    name: LabelStudioCaller, request: Request, storage: StorageDep, jobs: JobsDep, body: Annotated[dict, Body()]
):
    """One prediction per task, in order, from the project's deployed models (NER with assertion
    status and relations on its entities, classification, Visual NER); an empty result per task when
    none is deployed."""
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise ValidationError("predict: 'tasks' must be a list of tasks with 'data'")
    link = await storage.link(name)
    async with LabelStudio(link["url"], await storage.link_token(name)) as ls:
        results = await predictions_for(request.app.state, storage, jobs, name, tasks, ls)
    version = await model_version(storage, name)
    return {"results": [{**r, "model_version": version} for r in results]}


async def predictions_for(
    state, storage, jobs, name: str, tasks: list[dict], ls: LabelStudio, models: list[dict] | None = None
) -> list[dict]:
    """{"result": [...], "score": ...} per task. The score is the mean test F1 of the models that
    predicted (labtrain does not score each prediction yet)."""
    models = models if models is not None else await deployed_models(storage, name)
    by_type = {m["type"]: m for m in models}
    config = await storage.config(name)
    results: list[list[dict]] = [[] for _ in tasks]
    used: list[dict] = []

    async def run(model: dict, inputs: list) -> list[list[dict]]:
        predictor = await run_in_threadpool(_loaded, state, model)
        used.append(model)
        return await run_in_threadpool(predictor.predict, inputs)

    texts = []
    for task in tasks:
        key = next(iter(config.texts.values()), "text")
        texts.append(task["data"].get(key) if isinstance(task["data"].get(key), str) else None)
    present = [i for i, t in enumerate(texts) if t]
    if present and "ner" in by_type:
        spans = await run(by_type["ner"], [texts[i] for i in present])
        for i, found in zip(present, spans):
            results[i] = [{**r, "id": f"lt{n}"} for n, r in enumerate(found)]
        entities = [
            {
                "text": texts[i],
                "entities": [
                    {
                        "id": r["id"],
                        "start": r["value"]["start"],
                        "end": r["value"]["end"],
                        "label": r["value"]["labels"][0],
                    }
                    for r in results[i]
                ],
            }
            for i in present
        ]
        for kind in ("assertion", "relation"):
            if kind in by_type and any(e["entities"] for e in entities):
                for i, extra in zip(present, await run(by_type[kind], entities)):
                    results[i] += [{**r, "id": f"lt{kind[0]}{n}"} if "value" in r else r for n, r in enumerate(extra)]
    if present and "classification" in by_type:
        for i, extra in zip(present, await run(by_type["classification"], [texts[i] for i in present])):
            results[i] += extra
    if "visual_ner" in by_type and await jobs.licensed("ocr:inference"):
        key = next(iter(config.images.values()), "image")
        pages = [(i, t["data"].get(key)) for i, t in enumerate(tasks) if isinstance(t["data"].get(key), str)]
        images = []
        for _, url in pages:
            content, kind = await ls.file(url) if not url.startswith("data:") else (None, None)
            images.append(url if content is None else f"data:{kind};base64,{base64.b64encode(content).decode()}")
        if images:
            for (i, _), regions in zip(pages, await run(by_type["visual_ner"], images)):
                results[i] += [{**r, "id": f"ltv{n}"} for n, r in enumerate(regions)]
    f1 = [((m.get("metrics") or {}).get("micro") or {}).get("f1") for m in {m["name"]: m for m in used}.values()]
    f1 = [x for x in f1 if x is not None]
    score = round(sum(f1) / len(f1), 4) if f1 else None
    return [{"result": r, "score": score if r else None} for r in results]


# --- events ----------------------------------------------------------------------------------------


@router.post("/webhook", response_model=BackendEventAnswer)
async def webhook(
    name: LabelStudioCaller, request: Request, storage: StorageDep, jobs: JobsDep, event: Annotated[dict, Body()]
):
    """Label Studio's events: START_TRAINING (its "Start Training" button) pulls the latest
    annotations and starts a training of the project's saved settings that deploys (source 'label
    studio'); ANNOTATION_CREATED / ANNOTATION_UPDATED import that task's annotation and count for
    active learning; ANNOTATIONS_DELETED deletes them. Answers at once."""
    action = event.get("action")
    link = await storage.link(name)
    project = event.get("project") or {}
    if isinstance(project, dict) and project.get("id") not in (None, link["ls_project"]):
        raise ValidationError(
            f"webhook: an event of Label Studio project {project.get('id')}, but {name!r} is linked "
            f"to project {link['ls_project']}"
        )
    if action == "START_TRAINING":
        work = _start_training(storage, jobs, name)
    elif action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        if not isinstance(event.get("annotation"), dict) or not isinstance(event.get("task"), dict):
            raise ValidationError(f"webhook: {action} without 'annotation' and 'task'")
        work = _annotation(storage, jobs, name, link, event["task"], event["annotation"])
    elif action == "ANNOTATIONS_DELETED":
        ids = [a.get("id") for a in event.get("annotations") or [] if isinstance(a, dict)]
        if not ids or not all(isinstance(i, int) for i in ids):
            raise ValidationError("webhook: ANNOTATIONS_DELETED without the annotations' integer ids")
        work = storage.delete_completions(name, ids)
    else:
        return {"status": "ignored", "action": action}
    _in_turn(request.app.state, storage, name, action, work)
    return {"status": "accepted", "action": action}


def _in_turn(state, storage, name: str, action: str, work) -> None:
    """Run an event's work after the answer, after the project's earlier events; a failure is kept in
    the link's last_error (and the log), never raised into Label Studio."""
    locks: dict[str, asyncio.Lock] = state.__dict__.setdefault("event_locks", {})
    running: set = state.__dict__.setdefault("event_tasks", set())

    async def in_turn() -> None:
        async with locks.setdefault(name, asyncio.Lock()):
            try:
                await work
            except Exception as exc:
                log.warning("Label Studio event %s of %s failed: %s", action, name, exc)
                try:
                    await storage.set_link_state(name, last_error=f"{action}: {exc}"[:1000])
                except LabtrainError:
                    pass

    task = asyncio.get_running_loop().create_task(in_turn())
    running.add(task)
    task.add_done_callback(running.discard)


async def _start_training(storage, jobs, name: str) -> Any:
    await sync_project(storage, name)
    return await jobs.label_studio_training(name)


async def _annotation(storage, jobs, name: str, link: dict, task: dict, annotation: dict) -> Any:
    import hashlib
    import json

    from storage.importers import parse_export

    async with LabelStudio(link["url"], await storage.link_token(name)) as ls:
        exported = await ls.as_export({**task, "annotations": [annotation]}, await ls.user_names())
    raw = json.dumps([exported]).encode()
    parsed = await run_in_threadpool(parse_export, raw)
    await storage.import_parsed(name, parsed, hashlib.sha256(raw).hexdigest(), "label studio")
    return await jobs.active_learning(name)
