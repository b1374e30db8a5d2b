"""Custom NER training scripts of a project (owners and managers only); the contract a script
follows is `trainers.custom`'s, and a training names its script (`TrainingRequest.script`)."""

from __future__ import annotations

from fastapi import APIRouter

from ray_app.api.answers import ScriptPublic, ScriptSource
from ray_app.api.deps import ProjectManager, StorageDep
from ray_app.api.models import ScriptUpload

router = APIRouter(prefix="/api/projects/{name}/scripts", tags=["scripts"])


def public(script: dict) -> dict:
    return {k: v for k, v in script.items() if k != "path"}  # where the service keeps it is its own business


@router.post("", response_model=ScriptPublic, status_code=201)
async def upload_script(name: str, body: ScriptUpload, user: ProjectManager, storage: StorageDep):
    """Keep a script (Python source) for the project's NER trainings: a new version when the
    source changed, the same version when it did not. 422 for a project without NER, a bad name
    or source that does not compile."""
    return public(await storage.upload_script(name, body.name, body.source, user.name))


@router.get("", response_model=list[ScriptPublic])
async def list_scripts(name: str, user: ProjectManager, storage: StorageDep):
    """Every version of every script of the project, newest version first."""
    return [public(s) for s in await storage.scripts(name)]


@router.get("/{script}", response_model=ScriptSource)
async def get_script(name: str, script: str, user: ProjectManager, storage: StorageDep, version: int | None = None):
    """One version (default: the latest) with its source."""
    return public(await storage.script_source(name, script, version))
