"""Dependencies shared by the routes: the storage client, the caller, project roles."""

from __future__ import annotations

from typing import Annotated

import ray
from fastapi import Depends, Header, HTTPException, Request

from ray_app.clients import Jobs, Storage
from ray_app.settings import JOB_MANAGER, NAMESPACE, STORAGE_ACTOR
from storage.members import User


def get_storage(request: Request) -> Storage:
    """The storage actor's client, looked up once per replica (Serve runs its own copy of
    the app, so it is attached to the app that serves the request)."""
    state = request.app.state
    if not hasattr(state, "storage"):
        state.storage = Storage(ray.get_actor(STORAGE_ACTOR, namespace=NAMESPACE))
    return state.storage


StorageDep = Annotated[Storage, Depends(get_storage)]


def get_jobs(request: Request) -> Jobs:
    """The job manager's client."""
    state = request.app.state
    if not hasattr(state, "jobs"):
        state.jobs = Jobs(ray.get_actor(JOB_MANAGER, namespace=NAMESPACE))
    return state.jobs


JobsDep = Annotated[Jobs, Depends(get_jobs)]


async def current_user(storage: StorageDep, authorization: Annotated[str | None, Header()] = None) -> User:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "missing bearer token (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"}
        )
    user = await storage.user_for_token(token.strip())
    if user is None:
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(403, f"user {user.name!r} is not an administrator")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def require_role(least: str):
    """The caller, if their role in the project `{name}` is at least `least` (admins pass)."""

    async def check(name: str, user: CurrentUser, storage: StorageDep) -> User:
        await storage.require_role(name, user, least)
        return user

    return Depends(check)


ProjectMember = Annotated[User, require_role("annotator")]
ProjectManager = Annotated[User, require_role("manager")]


async def encoder_manager(user: CurrentUser, storage: StorageDep) -> User:
    """The caller, if an administrator or an owner or manager of some project (who registers encoders)."""
    await storage.require_encoder_manager(user)
    return user


EncoderManager = Annotated[User, Depends(encoder_manager)]
