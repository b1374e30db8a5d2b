"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UserCreate(BaseModel):
    name: str
    is_admin: bool = False


class UserToken(BaseModel):
    name: str
    token: str


class ProjectCreate(BaseModel):
    name: str
    config: str = Field(description="labeling config, Label Studio XML")
    language: str = "en"


class ProjectPublic(BaseModel):
    name: str
    language: str
    created_by: str | None
    created_at: str
    tasks: int
    completions: int
    submitted_completions: int
    training_types: list[str]


class ConfigUpdate(BaseModel):
    config: str = Field(description="labeling config, Label Studio XML")


class ConfigPublic(BaseModel):
    config: str
    summary: dict


class MemberIn(BaseModel):
    username: str
    role: str
    priority: int = 0


class MembersUpdate(BaseModel):
    set: list[MemberIn] = []
    remove: list[str] = []


class MemberPublic(BaseModel):
    username: str
    role: str
    priority: int


class ImportPublic(BaseModel):
    project: str
    formats: list[str]
    tasks: int
    completions: int
    inserted: int
    updated: int
    unchanged: int
    images: int


class SelectionRequest(BaseModel):
    tags: list[str] | None = None
    reviewed_only: bool = False
    validation_split: float | None = None
    seed: int = 0
    test_tag: str | None = None
    train_tag: str | None = None
    limit: int | None = Field(None, ge=1, description="list at most this many tasks (counts cover all)")


class SnapshotRequest(SelectionRequest):
    types: list[str] | None = None
