"""A small HTTP client for the labtrain API (what the CLI uses)."""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any

import httpx

from labtrain.errors import LabtrainError
from storage.importers import find_image_file


class ApiError(LabtrainError):
    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code


class ApiClient:
    def __init__(self, url: str, token: str | None, timeout: float = 300):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise LabtrainError(
                f"no labtrain service answers at {self.url}; start one with `labtrain serve` or set LABTRAIN_URL"
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            if not isinstance(detail, str):
                detail = json.dumps(detail)
            raise ApiError(response.status_code, f"{response.status_code}: {detail}")
        return response.json() if response.content else None

    def stream_lines(self, path: str, method: str = "GET", **kwargs: Any):
        """The lines of a streamed text answer, as they come."""
        try:
            with self.http.stream(method, path, timeout=None, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        detail = response.json().get("detail", response.text)
                    except ValueError:
                        detail = response.text
                    raise ApiError(response.status_code, f"{response.status_code}: {detail}")
                yield from response.iter_lines()
        except httpx.ConnectError:
            raise LabtrainError(f"no labtrain service answers at {self.url}") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


def export_with_inlined_images(path: Path, images_dir: Path | None = None) -> bytes:
    """The export file's bytes; task images that are files next to it (or in `images_dir`)
    are inlined as data URIs so that a remote service receives them too."""
    raw = path.read_bytes()
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw  # the service names the error
    tasks = payload if isinstance(payload, list) else [payload]
    bases = [d for d in (images_dir, path.parent) if d is not None]
    changed = False
    for task in tasks:
        data = task.get("data") if isinstance(task, dict) else None
        image = data.get("image") if isinstance(data, dict) else None
        if not isinstance(image, str) or image.startswith(("data:", "http://", "https://")):
            continue
        file = find_image_file(image, bases)
        if file is not None:
            mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            data["image"] = f"data:{mime};base64," + base64.b64encode(file.read_bytes()).decode()
            changed = True
    return json.dumps(payload).encode() if changed else raw
