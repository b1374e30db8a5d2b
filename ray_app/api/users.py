"""Users and their bearer tokens."""

from __future__ import annotations

from fastapi import APIRouter

from ray_app.api.answers import Caller, UserPublic
from ray_app.api.deps import AdminUser, CurrentUser, StorageDep
from ray_app.api.models import UserCreate, UserToken

router = APIRouter(prefix="/api", tags=["users"])


@router.get("/me", response_model=Caller)
async def me(user: CurrentUser):
    """Who the token belongs to."""
    return {"name": user.name, "is_admin": user.is_admin}


@router.get("/users", response_model=list[UserPublic])
async def list_users(user: AdminUser, storage: StorageDep):
    """Every user (admin only)."""
    return await storage.list_users()


@router.post("/users", response_model=UserToken, status_code=201)
async def create_user(body: UserCreate, user: AdminUser, storage: StorageDep):
    """Create a user and return its token, shown this once (admin only)."""
    return UserToken(name=body.name, token=await storage.create_user(body.name, body.is_admin))
