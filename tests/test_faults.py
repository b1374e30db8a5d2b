"""Faults, each on a service of its own: `labtrain serve` killed with SIGKILL mid-training, and
the disk of its home filling up. Each time the job ends with its reason, the catalog stays
consistent, no completion is lost, and the next training succeeds. (A worker killed mid-epoch
and a corrupt snapshot are in test_training_service.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ray_app.settings import read_service
from tests.conftest import _free_port
from tests.test_service_restart import serve, stop
from tests.test_training_service import BILSTM, start, toy_project, wait

LONG = {"epochs": 500, "batch_size": 4}


def session_processes(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_a_service_killed_mid_training_restarts_with_the_job_interrupted_and_nothing_lost(tmp_path):
    home, port = tmp_path / "home", _free_port()
    service = serve(home, port)
    try:
        project = toy_project(service)
        with service.client() as http:
            training = start(http, project, types=["classification"], params=LONG)
            wait(http, training["id"], until=lambda t: t["jobs"][0]["progress"] > 1)
        killed = read_service(home)["pid"]
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{killed}").exists():
            time.sleep(0.2)
        service = serve(home, port)
        assert session_processes(killed) == []  # what Ray left of the killed service was stopped
        with service.client() as http:
            after = http.get(f"/api/trainings/{training['id']}").json()
            # the job manager outlives the worker by a moment and may see it die first; either way it failed
            assert after["status"] == "failed"
            assert after["jobs"][0]["reason"].startswith(("interrupted: the labtrain service stopped",
                                                          "the training process died")), after
            project_now = http.get(f"/api/projects/{project}").json()
            assert (project_now["tasks"], project_now["completions"]) == (60, 60)
            again = wait(http, start(http, project, types=["ner"], embeddings="bilstm", params=BILSTM)["id"])
            assert again["status"] == "succeeded", again
    finally:
        stop(home)


@pytest.fixture
def small_disk(tmp_path):
    """A 300 MB tmpfs (needs root to mount; skipped where it cannot be mounted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_refuses_writes_with_507_keeps_the_catalog_and_recovers(small_disk):
    home, port = small_disk / "home", _free_port()
    service = serve(home, port)
    try:
        project = toy_project(service)
        with service.client() as http:
            running = start(http, project, types=["ner"], embeddings="bilstm", params={**BILSTM, "epochs": 5000})
            wait(http, running["id"], until=lambda t: t["jobs"][0]["progress"] > 1)
            before = http.get(f"/api/projects/{project}").json()
            trainings_before = len(http.get(f"/api/projects/{project}/trainings").json())
            filler = fill(small_disk)

            extra = json.dumps([{"id": 9001, "data": {"text": "Ines lives in Rome ."}, "completions": [
                {"id": 9001, "created_username": "a", "submitted_at": "2024-01-01T00:00:00", "result": []}]}])
            answer = http.post(f"/api/projects/{project}/import", content=extra)
            assert answer.status_code == 507 and "is full" in answer.json()["detail"], answer.text
            answer = http.post(f"/api/projects/{project}/trainings", json={"types": ["ner"], "embeddings": "bilstm",
                                                                          "params": BILSTM})
            assert answer.status_code == 507 and "nothing of this request was written" in answer.json()["detail"]
            assert http.post(f"/api/trainings/{running['id']}/cancel").status_code == 200
            time.sleep(3)  # the cancel ends the job; the catalog cannot record it yet
            assert http.get("/api/health").status_code == 200
            now = http.get(f"/api/projects/{project}").json()
            assert (now["tasks"], now["completions"]) == (before["tasks"], before["completions"])
            assert len(http.get(f"/api/projects/{project}/trainings").json()) == trainings_before
            assert not [p for p in (home / "trainings").iterdir() if not any(
                t["id"] == int(p.name) for t in http.get(f"/api/projects/{project}/trainings").json())]

            filler.unlink()
            ended = wait(http, running["id"], timeout_s=60)  # recorded once there is room
            # cancelled, or failed first when its own log could no longer be written
            assert (ended["status"], ended["jobs"][0]["reason"]) == ("cancelled", "cancelled by admin") or (
                ended["status"] == "failed" and ended["jobs"][0]["reason"].startswith("disk full: ")), ended
            assert http.get("/api/cluster").json()["training_servers"] == []
            assert http.post(f"/api/projects/{project}/import", content=extra).status_code == 200
            again = wait(http, start(http, project, types=["ner"], embeddings="bilstm", params=BILSTM)["id"])
            assert again["status"] == "succeeded", again
            assert http.get(f"/api/projects/{project}").json()["completions"] == before["completions"] + 1
    finally:
        stop(home)
