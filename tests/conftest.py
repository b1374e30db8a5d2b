"""Fixtures: tiny real projects in a real DuckDB catalog, and one real labtrain service
(Ray head + Serve) for the whole session."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from storage.catalog import Catalog

if os.environ.get("PYTEST_XDIST_WORKER"):  # the fast tier's workers (-n 2) share the cores: a thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

HANG_S = 1800  # the limit of every wait in the suite: it only catches a hang (tests wait for states, not seconds)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NER_CONFIG = """
<View>
  <Labels name="label" toName="text">
    <Label value="PER"/><Label value="LOC"/>
    <Label value="ABSENT" assertion="true"/>
  </Labels>
  <Text name="text" value="$text"/>
  <Choices name="topic" toName="text" choice="single"><Choice value="sport"/><Choice value="news"/></Choices>
</View>
"""


def span(text: str, word: str, label: str, rid: str | None = None, from_name: str = "label") -> dict:
    start = text.index(word)
    return {
        "id": rid or f"{label}-{start}",
        "from_name": from_name,
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": start + len(word), "text": word, "labels": [label]},
    }


def choice(value: str, from_name: str = "topic") -> dict:
    return {
        "id": f"c-{value}",
        "from_name": from_name,
        "to_name": "text",
        "type": "choices",
        "value": {"choices": [value]},
    }


def genai_completion(
    cid: int, author: str, result: list, submitted_at: str | None = "2024-01-01T10:00:00", review: dict | None = None
) -> dict:
    completion = {
        "id": cid,
        "created_username": author,
        "result": result,
        "honeypot": False,
        "submitted_at": submitted_at,
        "updated_at": submitted_at,
    }
    if review is not None:
        completion["review_status"] = review
    return completion


def genai_task(tid: int, text: str, completions: list, tags: list[str] | None = None) -> dict:
    task = {"id": tid, "data": {"text": text}, "completions": completions, "predictions": []}
    if tags is not None:
        task["tags"] = tags
    return task


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "home")
    cat.create_project("p", NER_CONFIG, "en", "owner1")
    yield cat
    cat.close()


def wait_until(check, what: str, every_s: float = 0.25):
    """Poll `check` until it gives something true, and return it; fail only on a hang (HANG_S)."""
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"never happened in {HANG_S} s: {what}")


def import_tasks(catalog: Catalog, tasks: list[dict], project: str = "p") -> dict:
    return catalog.import_file(project, json.dumps(tasks).encode())


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (../shared/data is optional)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    def __init__(self, home: Path, url: str, token: str):
        self.home, self.url, self.token = home, url, token

    def client(self, token: str | None = "admin") -> httpx.Client:
        token = self.token if token == "admin" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # an answer may be slow on a loaded machine (the catalog answers one call at a time): only a hang fails
        return httpx.Client(base_url=self.url, headers=headers, timeout=HANG_S)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
        """Run the real `labtrain` command against this service."""
        env = {**os.environ, "LABTRAIN_URL": self.url}
        env.pop("LABTRAIN_TOKEN", None)
        if token:
            env["LABTRAIN_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "ray_app.cli", *args, "--home", str(self.home)],
            capture_output=True,
            text=True,
            env=env,
            timeout=HANG_S,
        )


# The fast tier (`pytest -m "not slow" -n 2`) leaves out what starts a labtrain service, a Ray cluster,
# Label Studio, a browser or Spark; it keeps every module's own logic.
SLOW_FIXTURES = {"service", "browser", "workers", "label_studio", "snapshots", "small_disk"}
SLOW_MODULES = {
    "test_faults",
    "test_cluster",
    "test_placement_groups",
    "test_label_studio",
    "test_spark_backend",
    "test_schemathesis",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.module.__name__.split(".")[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    # The session's service starts with the first test that asks for it and idles (a fifth of a
    # core) until the session ends: its tests go last, each module's in their order, so that the
    # clusters, fault services and trainers' tests before them have both cores.
    items.sort(key=uses_the_session_service)
    # On pytest-xdist workers (`-n 2 --dist loadgroup`, the README's command) a group runs on one
    # worker: every test that uses the session's service goes to "service" (one service, started
    # once), every other slow test to its module's group (its module's cluster, Label Studio or
    # Spark session, started once per worker at most); the fast tests go wherever a worker is free.
    for item in items:
        if uses_the_session_service(item):
            item.add_marker(pytest.mark.xdist_group("service"))
        elif item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def uses_the_session_service(item: pytest.Item) -> bool:
    defs = item._fixtureinfo.name2fixturedefs.get("service") if hasattr(item, "_fixtureinfo") else None
    return bool(defs) and defs[-1].scope == "session"


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    """`labtrain serve --detach` on a temporary home and a free port, stopped at the end."""
    home = tmp_path_factory.mktemp("labtrain-home")
    port = _free_port()
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_app.cli",
            "serve",
            "--detach",
            "--json",
            "--home",
            str(home),
            "--port",
            str(port),
            "--num-cpus",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert started.returncode == 0, started.stderr + started.stdout
    info = json.loads(started.stdout)
    yield Service(home, info["url"], info["admin_token"])
    subprocess.run([sys.executable, "-m", "ray_app.cli", "stop", "--home", str(home)], timeout=HANG_S)


# What a failed test that used the service shows beside its traceback: the service's own log and
# what Ray says it killed or lost (its memory monitor, an actor's death), so that a CI run that
# failed can be read from its output alone.
RAY_TROUBLE = ("kill", "memory monitor", "memory usage", "died", "oom", "unexpectedly", "disconnected")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "service" not in item.fixturenames:
        return
    home = getattr(item.funcargs.get("service"), "home", None)
    if home is None:
        return
    report.sections.append(("labtrain service log (end)", _tail(home / "serve.log", 40)))
    info = json.loads((home / "service.json").read_text()) if (home / "service.json").exists() else {}
    logs = Path(info.get("ray_logs") or "/nonexistent")
    said = []
    for name in ("raylet.out", "gcs_server.out"):
        path = logs / name
        if path.exists():
            said += [f"{name}: {line}" for line in _tail(path, 4000).splitlines() if _trouble(line)][-30:]
    report.sections.append(("what Ray said of killed or lost workers (end)", "\n".join(said) or "nothing"))


def _trouble(line: str) -> bool:
    lowered = line.lower()
    return any(word in lowered for word in RAY_TROUBLE)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({path}: {exc})"


@pytest.fixture(scope="session")
def trained_project(service) -> dict:
    """A 20-task toy project with a finished 1-epoch BiLSTM NER training, its model and a script
    's', built once: test_access adds its users to it, test_schemathesis (after it) fuzzes it."""
    from tests.test_training_service import BILSTM, start, toy_project, wait  # not at import: it imports this

    project = toy_project(service, 20)
    with service.client() as http:
        training = wait(
            http, start(http, project, types=["ner"], embeddings="bilstm", params={**BILSTM, "epochs": 1})["id"]
        )
        assert training["status"] == "succeeded", training
        assert (
            http.post(f"/api/projects/{project}/scripts", json={"name": "s", "source": "print(1)\n"}).status_code == 201
        )
    return {"project": project, "training": training, "model": training["jobs"][0]["model_name"]}


@pytest.fixture(autouse=True)
def _no_training_outlives_its_test(request):
    """The service is shared by the session: a test that fails midway must not leave trainings
    holding its CPUs, or every test after it fails waiting for a bundle and hides the first."""
    yield
    if "service" not in request.fixturenames:
        return
    service = request.getfixturevalue("service")
    with service.client() as http:

        def all_ended() -> bool:
            cluster = http.get("/api/cluster").json()
            left = {j["training_id"] for j in cluster["queue"] + cluster["training_servers"]}
            for training_id in left:
                http.post(f"/api/trainings/{training_id}/cancel")
            return not left

        wait_until(all_ended, "the test's trainings end after their cancel", every_s=1)


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    """Headless Debian Chromium through Selenium (the Train page's tests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
