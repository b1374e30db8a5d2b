"""Projects and their labeling configs."""

from __future__ import annotations

from fastapi import APIRouter

from ray_app.api.deps import CurrentUser, ProjectManager, ProjectMember, StorageDep
from ray_app.api.models import ConfigPublic, ConfigUpdate, ProjectCreate, ProjectPublic

router = APIRouter(prefix="/api/projects", tags=["projects"])


@router.get("", response_model=list[ProjectPublic])
async def list_projects(user: CurrentUser, storage: StorageDep):
    """The projects the caller is a member of (all of them for an admin)."""
    return await storage.list_projects(user)


@router.post("", response_model=ProjectPublic, status_code=201)
async def create_project(body: ProjectCreate, user: CurrentUser, storage: StorageDep):
    """Create a project from a labeling config; the caller becomes its owner."""
    return await storage.create_project(body.name, body.config, body.language, user.name)


@router.get("/{name}", response_model=ProjectPublic)
async def get_project(name: str, user: ProjectMember, storage: StorageDep):
    """One project with its task and completion counts and the training types it offers."""
    return await storage.project(name)


@router.get("/{name}/config", response_model=ConfigPublic)
async def get_config(name: str, user: ProjectMember, storage: StorageDep):
    """The labeling config (XML) and what it means for training."""
    config = await storage.config(name)
    return ConfigPublic(config=config.xml, summary=config.summary())


@router.put("/{name}/config", response_model=ConfigPublic)
async def set_config(name: str, body: ConfigUpdate, user: ProjectManager, storage: StorageDep):
    """Replace the labeling config; an invalid one is rejected and the old one kept."""
    config = await storage.set_config(name, body.config)
    return ConfigPublic(config=config.xml, summary=config.summary())
