"""Which completions a training would use (preview) and their Parquet snapshot."""

from __future__ import annotations

from fastapi import APIRouter

from ray_app.api.answers import SelectionPreview, SnapshotPublic
from ray_app.api.deps import ProjectManager, ProjectMember, StorageDep
from ray_app.api.models import SelectionRequest, SnapshotRequest
from storage.selection import SelectionParams

router = APIRouter(prefix="/api/projects/{name}", tags=["selection"])


def _params(body: SelectionRequest) -> SelectionParams:
    return SelectionParams(**body.model_dump(exclude={"limit", "types"}))


@router.post("/selection", response_model=SelectionPreview)
async def preview_selection(name: str, body: SelectionRequest, user: ProjectMember, storage: StorageDep):
    """Per task the chosen completion and its split, counts per label, warnings."""
    return await storage.select(name, _params(body), body.limit)


@router.post("/snapshots", response_model=SnapshotPublic, status_code=201)
async def create_snapshot(name: str, body: SnapshotRequest, user: ProjectManager, storage: StorageDep):
    """Write the selection to Parquet, one file per training type; returns the manifest."""
    return await storage.snapshot(name, _params(body), body.types)
