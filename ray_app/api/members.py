"""Project members: roles (owner, manager, reviewer, annotator) and priorities."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ray_app.api.deps import ProjectManager, ProjectMember, StorageDep
from ray_app.api.models import MemberPublic, MembersUpdate
from storage.members import Member

router = APIRouter(prefix="/api/projects/{name}/members", tags=["members"])


@router.get("", response_model=list[MemberPublic])
async def list_members(name: str, user: ProjectMember, storage: StorageDep):
    """Members by priority, highest first."""
    return await storage.members(name)


@router.put("", response_model=list[MemberPublic])
async def update_members(name: str, body: MembersUpdate, user: ProjectManager, storage: StorageDep):
    """Add or change members (`set`) and remove others (`remove`), all at once."""
    members = [Member(m.username, m.role.lower(), m.priority) for m in body.set]
    current = {m["username"]: m["role"] for m in await storage.members(name)}
    touches_owner = any(m.role == "owner" or current.get(m.username) == "owner" for m in members) or any(
        current.get(u) == "owner" for u in body.remove
    )
    if touches_owner and await storage.role_of(name, user) != "owner":
        raise HTTPException(403, f"only an owner of project {name!r} may grant or take the owner role")
    return await storage.set_members(name, members, body.remove)
