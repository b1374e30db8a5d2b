"""Typed clients of labtrain's two actors, the storage actor (the catalog) and the job manager: real
methods with the catalog's and the manager's signatures, awaited; a domain error raised in the actor
(`labtrain.errors`) is raised again here as itself, and a full disk as `StorageFull`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from labtrain.encoders import Encoder
from labtrain.errors import LabtrainError, ServiceUnavailable, StorageFull, disk_full
from storage.importers import ParsedExport
from storage.labeling_config import LabelingConfig
from storage.members import Member, User
from storage.selection import SelectionParams


async def _call(method, *args: Any, **kwargs: Any) -> Any:
    """One actor call; Ray's wrapper of an error in the actor is taken off again."""
    try:
        return await method.remote(*args, **kwargs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LabtrainError):
            raise cause from None
        if cause is not None and disk_full(cause):
            raise StorageFull(
                f"the disk of labtrain's home is full ({' '.join(str(cause).split())[:300]}); nothing of "
                "this request was written: free some space and try again"
            ) from None
        raise
    except ray.exceptions.RayActorError as exc:  # ActorDiedError, ActorUnavailableError
        # The actor's process ended (Ray restarts it: max_restarts=-1) while this call was in flight.
        raise ServiceUnavailable(
            "the catalog or the job manager of labtrain restarted while answering (Ray: "
            f"{_why(exc)}); try again in a few seconds"
        ) from None


def _why(exc: BaseException) -> str:
    """The first sentence Ray gives for an actor that went away (killed for memory, exited, node lost)."""
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


class Storage:
    """The storage actor's client (see `storage.catalog.Catalog` for what each method does)."""

    def __init__(self, actor: ray.actor.ActorHandle):
        self.actor = actor

    async def active_learning_due(self, name: str) -> dict | None:
        return await _call(self.actor.active_learning_due, name)

    async def backend_allows(self, name: str, user: str, password: str) -> bool:
        return await _call(self.actor.backend_allows, name, user, password)

    async def add_encoder(self, encoder: Encoder, added_by: str | None) -> Encoder:
        return await _call(self.actor.add_encoder, encoder, added_by)

    async def check_encoder_name(self, name: str) -> None:
        return await _call(self.actor.check_encoder_name, name)

    async def encoder(self, name: str) -> Encoder:
        return await _call(self.actor.encoder, name)

    async def encoders(self) -> list[Encoder]:
        return await _call(self.actor.encoders)

    async def remove_encoder(self, name: str) -> Encoder:
        return await _call(self.actor.remove_encoder, name)

    async def require_encoder_manager(self, user: User) -> None:
        return await _call(self.actor.require_encoder_manager, user)

    async def complete_job(self, job_id: int, metrics: dict, artifact_uri: str | None = None) -> dict:
        return await _call(self.actor.complete_job, job_id, metrics, artifact_uri)

    async def config(self, name: str) -> LabelingConfig:
        return await _call(self.actor.config, name)

    async def create_project(self, name: str, config_xml: str, language: str, owner: str) -> dict:
        return await _call(self.actor.create_project, name, config_xml, language, owner)

    async def create_training(self, name: str, request: dict, requested_by: str | None, source: str = "manual") -> dict:
        return await _call(self.actor.create_training, name, request, requested_by, source)

    async def create_user(self, name: str, is_admin: bool = False) -> str:
        return await _call(self.actor.create_user, name, is_admin)

    async def delete_completions(self, name: str, completion_ids: list[int]) -> int:
        return await _call(self.actor.delete_completions, name, completion_ids)

    async def end_job(self, job_id: int, status: str, reason: str | None = None) -> dict:
        return await _call(self.actor.end_job, job_id, status, reason)

    async def ensure_admin_token(self) -> str:
        return await _call(self.actor.ensure_admin_token)

    async def fail_interrupted_jobs(self, reason: str) -> list[int]:
        return await _call(self.actor.fail_interrupted_jobs, reason)

    async def import_parsed(
        self, name: str, parsed: ParsedExport, sha256: str, imported_by: str | None, mirror: bool = False
    ) -> dict:
        return await _call(self.actor.import_parsed, name, parsed, sha256, imported_by, mirror)

    async def job(self, job_id: int) -> dict:
        return await _call(self.actor.job, job_id)

    async def job_spec(self, job_id: int) -> dict:
        return await _call(self.actor.job_spec, job_id)

    async def jobs_of(self, training_id: int) -> list[dict]:
        return await _call(self.actor.jobs_of, training_id)

    async def link(self, name: str) -> dict:
        return await _call(self.actor.link, name)

    async def link_project(
        self, name: str, url: str, ls_project: int, token: str, backend_url: str, linked_by: str | None
    ) -> dict:
        return await _call(self.actor.link_project, name, url, ls_project, token, backend_url, linked_by)

    async def link_token(self, name: str) -> str:
        return await _call(self.actor.link_token, name)

    async def list_projects(self, user: User) -> list[dict]:
        return await _call(self.actor.list_projects, user)

    async def list_users(self) -> list[dict]:
        return await _call(self.actor.list_users)

    async def members(self, name: str) -> list[dict]:
        return await _call(self.actor.members, name)

    async def model(self, name: str, with_versions: bool = False) -> dict:
        return await _call(self.actor.model, name, with_versions)

    async def model_benchmark(self, name: str) -> dict:
        return await _call(self.actor.model_benchmark, name)

    async def models(self, user=None) -> list[dict]:
        return await _call(self.actor.models, user)

    async def project(self, name: str) -> dict:
        return await _call(self.actor.project, name)

    async def project_id(self, name: str) -> int:
        return await _call(self.actor.project_id, name)

    async def require_role(self, name: str, user: User, least: str) -> str:
        return await _call(self.actor.require_role, name, user, least)

    async def role_of(self, name: str, user: User) -> str | None:
        return await _call(self.actor.role_of, name, user)

    async def saved_request(self, name: str, deploy: bool) -> dict:
        return await _call(self.actor.saved_request, name, deploy)

    async def script_source(self, project: str, name: str, version: int | None = None) -> dict:
        return await _call(self.actor.script_source, project, name, version)

    async def scripts(self, project: str) -> list[dict]:
        return await _call(self.actor.scripts, project)

    async def select(self, name: str, params: SelectionParams, limit: int | None = None) -> dict:
        return await _call(self.actor.select, name, params, limit)

    async def set_config(self, name: str, config_xml: str) -> LabelingConfig:
        return await _call(self.actor.set_config, name, config_xml)

    async def set_link_state(self, name: str, **changes) -> dict:
        return await _call(self.actor.set_link_state, name, **changes)

    async def set_members(self, name: str, members: list[Member], remove: list[str] = ()) -> list[dict]:
        return await _call(self.actor.set_members, name, members, remove)

    async def set_training_settings(
        self, name: str, versioning: bool | None = None, active_learning: dict | None = None
    ) -> dict:
        return await _call(self.actor.set_training_settings, name, versioning, active_learning)

    async def snapshot(
        self, name: str, params: SelectionParams, types: list[str] | None = None, out_dir: Path | None = None
    ) -> dict:
        return await _call(self.actor.snapshot, name, params, types, out_dir)

    async def synced(self, name: str, tasks: int) -> dict:
        return await _call(self.actor.synced, name, tasks)

    async def training(self, training_id: int) -> dict:
        return await _call(self.actor.training, training_id)

    async def training_settings(self, name: str) -> dict:
        return await _call(self.actor.training_settings, name)

    async def trainings(self, name: str, limit: int = 100) -> list[dict]:
        return await _call(self.actor.trainings, name, limit)

    async def unlink_project(self, name: str) -> None:
        return await _call(self.actor.unlink_project, name)

    async def update_job(self, job_id: int, **changes) -> dict:
        return await _call(self.actor.update_job, job_id, **changes)

    async def upload_script(self, project: str, name: str, source: str, uploaded_by: str | None) -> dict:
        return await _call(self.actor.upload_script, project, name, source, uploaded_by)

    async def user_for_token(self, token: str) -> User | None:
        return await _call(self.actor.user_for_token, token)


class Jobs:
    """The job manager's client (see `ray_app.jobs.JobManager`)."""

    def __init__(self, actor: ray.actor.ActorHandle):
        self.actor = actor

    async def start(self) -> list[int]:
        return await _call(self.actor.start)

    async def submit(self, project: str, request: dict, user: str | None, source: str = "manual") -> dict:
        return await _call(self.actor.submit, project, request, user, source)

    async def active_learning(self, project: str) -> dict | None:
        return await _call(self.actor.active_learning, project)

    async def label_studio_training(self, project: str) -> dict:
        return await _call(self.actor.label_studio_training, project)

    async def cancel(self, training_id: int, user: str | None) -> dict:
        return await _call(self.actor.cancel, training_id, user)

    async def add_encoder(self, name: str, source: str, languages: list[str], description: str, user: str) -> Encoder:
        return await _call(self.actor.add_encoder, name, source, languages, description, user)

    async def remove_encoder(self, name: str) -> Encoder:
        return await _call(self.actor.remove_encoder, name)

    async def cluster(self) -> dict:
        return await _call(self.actor.cluster)

    async def licensed(self, scope: str) -> bool:
        return await _call(self.actor.licensed, scope)
