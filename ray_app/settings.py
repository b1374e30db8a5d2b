"""Where the service keeps its state and how clients find it."""

from __future__ import annotations

import json
import os
from pathlib import Path

NAMESPACE = "labtrain"
STORAGE_ACTOR = "labtrain-storage"
JOB_MANAGER = "labtrain-jobs"
APP_NAME = "labtrain"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
ON_THE_HEAD = {"node:__internal_head__": 0.001}  # Ray's own resource of the head node (Serve's controller uses it)


def home_dir(explicit: str | Path | None = None) -> Path:
    """`--home`, else `LABTRAIN_HOME`, else `~/.labtrain`."""
    return Path(explicit or os.environ.get("LABTRAIN_HOME") or "~/.labtrain").expanduser().resolve()


def service_file(home: Path) -> Path:
    """Written by a running `labtrain serve`: its pid, API URL and dashboard URL."""
    return home / "service.json"


def read_service(home: Path) -> dict | None:
    try:
        return json.loads(service_file(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def api_url(home: Path) -> str:
    if os.environ.get("LABTRAIN_URL"):
        return os.environ["LABTRAIN_URL"].rstrip("/")
    service = read_service(home)
    return service["url"] if service else f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def api_token(home: Path) -> str | None:
    if os.environ.get("LABTRAIN_TOKEN"):
        return os.environ["LABTRAIN_TOKEN"]
    try:
        return (home / "admin_token").read_text().strip()
    except FileNotFoundError:
        return None
