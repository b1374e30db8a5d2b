"""Label Studio as labtrain talks to it, through its REST API with a project's token: read a project
and every task with its annotations (images too), register labtrain as the project's ML backend and
the webhook that reaches it, and write predictions. Its tasks become the export format labtrain
imports (`storage.importers`). Checked against Label Studio 1.23's source."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import AsyncIterator
from typing import Any

import httpx

from labtrain.errors import LabtrainError, ValidationError

PAGE = 100  # tasks per page when pulling a project


class LabelStudioUnreachable(LabtrainError):
    """Label Studio did not answer (down, wrong host or port): 502, nothing was changed."""

    status_code = 502


class LabelStudioRefused(ValidationError):
    """Label Studio answered with an error (a wrong token or project id): its own reason, 422."""


class LabelStudio:
    def __init__(self, url: str, token: str, timeout_s: float = 60):
        if not url.startswith(("http://", "https://")):
            raise ValidationError(f"label_studio: {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.url, timeout=timeout_s, headers={"Authorization": f"Token {token}"}
        )

    async def __aenter__(self) -> LabelStudio:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()

    async def call(self, method: str, path: str, **kwargs) -> Any:
        try:
            answer = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioUnreachable(
                f"Label Studio at {self.url} cannot be reached ({type(exc).__name__}: {exc}); nothing was changed"
            ) from None
        if answer.status_code >= 400:
            raise LabelStudioRefused(
                f"Label Studio at {self.url} refused {method} {path}: {answer.status_code} {_reason(answer)}"
            )
        if answer.status_code == 204 or not answer.content:
            return None
        if "json" not in answer.headers.get("content-type", ""):
            return answer.content
        return answer.json()

    # --- reading ---------------------------------------------------------------------------------

    async def project(self, project_id: int) -> dict:
        return await self.call("GET", f"/api/projects/{project_id}")

    async def user_names(self) -> dict[int, str]:
        """Label Studio user ids -> their e-mail (what labtrain's members and priorities name)."""
        users = await self.call("GET", "/api/users/")
        return {u["id"]: u.get("email") or u.get("username") or str(u["id"]) for u in users}

    async def tasks(self, project_id: int) -> AsyncIterator[dict]:
        """Every task of the project with its annotations, page after page."""
        page = 1
        while True:
            answer = await self.call(
                "GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": PAGE, "fields": "all"}
            )
            for task in answer["tasks"]:
                yield task
            if page * PAGE >= answer["total"] or not answer["tasks"]:
                return
            page += 1

    async def file(self, path: str) -> tuple[bytes, str]:
        """A file Label Studio serves (an uploaded image: /data/upload/...), with its media type."""
        answer = await self.client.get(path if path.startswith("http") else path)
        if answer.status_code >= 400:
            raise LabelStudioRefused(f"Label Studio at {self.url} refused GET {path}: {answer.status_code}")
        kind = answer.headers.get("content-type", "").split(";")[0] or mimetypes.guess_type(path)[0] or "image/png"
        return answer.content, kind

    async def export(self, project_id: int) -> list[dict]:
        """The project's tasks as Label Studio exports them (annotations with their author's e-mail),
        images as data URIs: what `storage.importers.parse_export` takes."""
        names = await self.user_names()
        tasks = []
        async for task in self.tasks(project_id):
            tasks.append(await self.as_export(task, names))
        return tasks

    async def as_export(self, task: dict, names: dict[int, str]) -> dict:
        data = dict(task["data"])
        for key in ("image", "ocr_image"):
            if isinstance(data.get(key), str) and data[key] and not data[key].startswith("data:"):
                content, kind = await self.file(data[key])
                data[key] = f"data:{kind};base64,{base64.b64encode(content).decode()}"
        return {
            "id": task["id"],
            "data": data,
            "annotations": [
                {
                    "id": a["id"],
                    "result": a.get("result") or [],
                    "was_cancelled": bool(a.get("was_cancelled")),
                    "completed_by": {"email": names.get(a.get("completed_by"), str(a.get("completed_by")))},
                    "created_at": a.get("created_at"),
                    "updated_at": a.get("updated_at"),
                }
                for a in task.get("annotations") or []
            ],
        }

    # --- the ML backend ------------------------------------------------------------------------

    async def ensure_webhook(self, project_id: int, url: str, headers: dict) -> int:
        """The project webhook that sends every event to labtrain's /webhook with its basic auth (made
        before the backend: Label Studio then skips making its own, which carries no header)."""
        for hook in await self.call("GET", "/api/webhooks/", params={"project": project_id}):
            if hook["url"] == url:
                await self.call(
                    "PATCH",
                    f"/api/webhooks/{hook['id']}/",
                    json={"headers": headers, "is_active": True, "send_for_all_actions": True},
                )
                return hook["id"]
        made = await self.call(
            "POST",
            "/api/webhooks/",
            json={
                "project": project_id,
                "url": url,
                "headers": headers,
                "send_payload": True,
                "send_for_all_actions": True,
                "is_active": True,
            },
        )
        return made["id"]

    async def ensure_backend(self, project_id: int, url: str, user: str, password: str) -> int:
        """Register labtrain as the project's ML backend (Label Studio calls /health and /setup now)."""
        body = {
            "url": url,
            "project": project_id,
            "title": "labtrain",
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": user,
            "basic_auth_pass": password,
            "is_interactive": False,
        }
        for backend in await self.call("GET", "/api/ml/", params={"project": project_id}):
            if backend["url"].rstrip("/") == url.rstrip("/"):
                await self.call("PATCH", f"/api/ml/{backend['id']}", json=body)
                return backend["id"]
        return (await self.call("POST", "/api/ml/", json=body))["id"]

    async def import_predictions(self, project_id: int, predictions: list[dict]) -> None:
        await self.call("POST", f"/api/projects/{project_id}/import/predictions", json=predictions)


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or ""
        errors = body.get("validation_errors")
        return f"{detail} {errors}".strip() if errors else str(detail)
    return str(body)[:300]


async def sync_project(storage, name: str) -> dict:
    """Pull the linked Label Studio project's every task and annotation into the catalog, as a mirror
    (what was deleted there is deleted here), in one transaction after the whole pull: a Label Studio
    that fails midway changes nothing. The link keeps the time, the count, or the error."""
    import hashlib
    import json

    from starlette.concurrency import run_in_threadpool

    from storage.importers import parse_export

    link = await storage.link(name)
    try:
        async with LabelStudio(link["url"], await storage.link_token(name)) as ls:
            tasks = await ls.export(link["ls_project"])
        raw = json.dumps(tasks).encode()
        parsed = await run_in_threadpool(parse_export, raw)
        answer = await storage.import_parsed(name, parsed, hashlib.sha256(raw).hexdigest(), "label studio", True)
    except LabtrainError as exc:
        await storage.set_link_state(name, last_error=str(exc)[:1000])
        raise
    await storage.synced(name, len(tasks))
    return answer
