"""The cluster page: nodes, resources, running training servers, licenses, dashboard link."""

from __future__ import annotations

from fastapi import APIRouter

from ray_app.api.answers import ClusterPublic
from ray_app.api.deps import CurrentUser, JobsDep

router = APIRouter(prefix="/api/cluster", tags=["cluster"])


@router.get("", response_model=ClusterPublic)
async def cluster(user: CurrentUser, jobs: JobsDep):
    """Nodes, total and free CPU/GPU/memory, GPU availability, running jobs, queue, licenses."""
    return await jobs.cluster()
