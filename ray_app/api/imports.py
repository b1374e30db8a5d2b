"""Import of Generative AI Lab / Label Studio export files."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ray_app.api.deps import JobsDep, ProjectManager, StorageDep
from ray_app.api.models import ImportPublic
from storage.importers import parse_export

router = APIRouter(prefix="/api/projects/{name}/import", tags=["import"])


EXPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "the export file: a list of tasks (Generative AI Lab or Label Studio JSON), or one task object",
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
    }
}


@router.post("", response_model=ImportPublic, openapi_extra=EXPORT_BODY)
async def import_export(name: str, request: Request, user: ProjectManager, storage: StorageDep, jobs: JobsDep):
    """Import an export file (the request body, JSON): all or nothing, idempotent per
    (task id, completion id). Images must be data URIs or paths readable by the service. When
    the project's active learning is due, its training starts (`active_learning_training`)."""
    raw = await request.body()
    # Parsing happens here, in the replica, so that the storage actor only writes.
    parsed = await run_in_threadpool(parse_export, raw)
    answer = await storage.import_parsed(name, parsed, hashlib.sha256(raw).hexdigest(), user.name)
    training = await jobs.active_learning(name)
    return {**answer, "active_learning_training": training["id"] if training else None}
