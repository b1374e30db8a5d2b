"""A real Label Studio (1.23.2, from the virtual environment `.ci/setup` makes) on a free loopback
port, with a user and an API token, for the tests of a linked project. Its first start migrates a
database (about a minute): that data folder is kept in the cache as a template, and each test run
starts from a copy of it. Stopped by the pids of its own session."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.ray_cluster import HANG_S, _kill_session, free_port

VERSION = "1.23.2"


def installed() -> Path | None:
    """Label Studio's virtual environment, when `.ci/setup` could make it."""
    pins = hashlib.sha256((Path(__file__).resolve().parents[1] / ".ci" / "label-studio-constraints.txt").read_bytes())
    cache = Path(os.environ.get("LABTRAIN_CACHE", "~/.cache/labtrain")).expanduser()
    folder = cache / f"label-studio-{VERSION}-{pins.hexdigest()[:12]}"
    return folder if (folder / ".complete").exists() else None


@dataclass
class LabelStudioServer:
    folder: Path
    venv: Path
    port: int = 0
    pid: int | None = None
    account: dict | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return self.account["token"]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=HANG_S)

    def start(self) -> LabelStudioServer:
        template = self.venv / "template"
        if not (template / "account.json").exists():
            self._make_template(template)
        data = self.folder / "data"
        if not data.exists():
            shutil.copytree(template, data)
        self.account = json.loads((data / "account.json").read_text())
        self._run(data)
        return self

    def _make_template(self, template: Path) -> None:
        """First start: migrate a fresh database with a user and token, stop, keep the folder."""
        fresh = self.venv / f"template.{os.getpid()}"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        self.account = {
            "email": "admin@example.com",
            "password": secrets.token_urlsafe(12),
            "token": secrets.token_hex(20),
        }
        self._run(fresh)
        self.stop()
        (fresh / "account.json").write_text(json.dumps(self.account))
        try:
            fresh.rename(template)
        except OSError:  # another run made it meanwhile
            shutil.rmtree(fresh, ignore_errors=True)

    def _run(self, data: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "LABEL_STUDIO_USERNAME": self.account["email"],
            "LABEL_STUDIO_PASSWORD": self.account["password"],
            "LABEL_STUDIO_USER_TOKEN": self.account["token"],
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            # labtrain is on loopback: Label Studio refuses ML backends and webhooks there unless told
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
        }
        for key in ("LABTRAIN_URL", "LABTRAIN_TOKEN", "RAY_ADDRESS"):
            env.pop(key, None)
        log = open(self.folder / "label-studio.log", "ab")
        process = subprocess.Popen(
            [
                str(self.venv / "bin" / "label-studio"),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=self.folder,
        )
        self.pid = process.pid
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            if process.poll() is not None:  # it died starting (a bad install): say so now, not at the limit
                self.pid = None
                raise AssertionError(
                    f"Label Studio exited ({process.returncode}) before it answered; see {self.folder / 'label-studio.log'}"
                )
            try:
                if httpx.get(self.url + "/health/", timeout=2).json().get("status") == "UP":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        raise AssertionError(f"Label Studio did not start; see {self.folder / 'label-studio.log'}")

    def stop(self) -> None:
        if self.pid:
            _kill_session(self.pid)
            self.pid = None
