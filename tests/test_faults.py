"""Faults in one service's life, on a home of its own: `labtrain serve` stopped, then killed
with SIGKILL, mid-training; then the disk of its home filling up. Each time the job ends with its
reason, the catalog stays consistent, no completion is lost, and the next training succeeds. (A
worker killed mid-epoch and a corrupt snapshot are in test_training_service.py.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_app.service import session_processes
from ray_app.settings import read_service
from tests.conftest import HANG_S, Service, _free_port, wait_until
from tests.test_training_service import BILSTM, start, toy_project, wait

LONG = {"epochs": 500, "batch_size": 4}


def serve(home, port) -> Service:
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
    return Service(home, info["url"], info["admin_token"])


def stop(home) -> None:
    subprocess.run([sys.executable, "-m", "ray_app.cli", "stop", "--home", str(home)], timeout=HANG_S, check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 300 MB tmpfs (needs root to mount); None where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None, done.stderr.decode().strip()
        return
    yield mount, None
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk (again, if something freed some since)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as out:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


def test_a_service_stopped_killed_or_out_of_disk_fails_its_job_keeps_the_catalog_and_recovers(small_disk, tmp_path):
    """One service's life: `labtrain stop` mid-training, SIGKILL mid-training, then its home's disk
    full while a training runs; the next training succeeds after all three."""
    disk, cannot_mount = small_disk
    home, port = (disk or tmp_path) / "home", _free_port()
    agent_port = held_port(52365)  # Ray's default agent port, taken (or already taken by someone else)
    service = serve(home, port)
    try:
        project = toy_project(service)
        with service.client() as http:  # 1. `labtrain stop` while a training runs
            stopped = start(http, project, types=["ner"], embeddings="bilstm", params=LONG)
            wait(http, stopped["id"], until=lambda t: t["jobs"][0]["progress"] > 1)
        stop(home)
        service = serve(home, port)
        with service.client() as http:
            after = http.get(f"/api/trainings/{stopped['id']}").json()
            assert after["status"] == "failed"
            assert after["jobs"][0]["reason"].startswith("interrupted: the labtrain service stopped")
            log = http.get(f"/api/trainings/{stopped['id']}/logs", params={"follow": False}).text
            assert "interrupted" in log.splitlines()[-1]
            killed = start(http, project, types=["ner"], embeddings="bilstm", params=LONG)  # 2. SIGKILL while it runs
            wait(http, killed["id"], until=lambda t: t["jobs"][0]["progress"] > 1)
        pid = read_service(home)["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)
        service = serve(home, port)
        assert session_processes(pid) == []  # what Ray left of the killed service was stopped
        with service.client() as http:
            after = http.get(f"/api/trainings/{killed['id']}").json()
            # the job manager outlives the worker by a moment and may see it die first; either way it failed
            assert after["status"] == "failed"
            assert after["jobs"][0]["reason"].startswith(
                ("interrupted: the labtrain service stopped", "the training process died")
            ), after
            project_now = http.get(f"/api/projects/{project}").json()
            assert (project_now["tasks"], project_now["completions"]) == (60, 60)
            if disk is None:
                train_as_a_ray_job(service, project)
                pytest.skip(f"the full-disk part needs a tmpfs: {cannot_mount}")
            # 3. the disk of the restarted service's home fills up while a training runs
            running = start(http, project, types=["ner"], embeddings="bilstm", params={**BILSTM, **LONG})
            wait(http, running["id"], until=lambda t: (t["jobs"][0]["epoch"] or 0) >= 1)
            before = http.get(f"/api/projects/{project}").json()
            trainings_before = len(http.get(f"/api/projects/{project}/trainings").json())
            filler = fill(disk)

            extra = json.dumps(
                [
                    {
                        "id": 9000 + i,
                        "data": {"text": f"Ines lives in Rome {i} ."},
                        "completions": [
                            {
                                "id": 9000 + i,
                                "created_username": "a",
                                "submitted_at": "2024-01-01T00:00:00",
                                "result": [],
                            }
                        ],
                    }
                    for i in range(300)
                ]
            )  # more than any slack a file's last page may have
            fill(disk)
            answer = http.post(f"/api/projects/{project}/import", content=extra)
            assert answer.status_code == 507 and "is full" in answer.json()["detail"], answer.text
            fill(disk)
            answer = http.post(
                f"/api/projects/{project}/trainings", json={"types": ["ner"], "embeddings": "bilstm", "params": BILSTM}
            )
            assert answer.status_code == 507 and "nothing of this request was written" in answer.json()["detail"]
            assert http.post(f"/api/trainings/{running['id']}/cancel").status_code == 200
            wait_until(  # the cancel ends the job and frees its bundle; the catalog cannot record it yet
                lambda: not http.get("/api/cluster").json()["training_servers"], "the cancelled job to end"
            )
            assert http.get("/api/health").status_code == 200
            now = http.get(f"/api/projects/{project}").json()
            assert (now["tasks"], now["completions"]) == (before["tasks"], before["completions"])
            assert len(http.get(f"/api/projects/{project}/trainings").json()) == trainings_before
            assert not [
                p
                for p in (home / "trainings").iterdir()
                if not any(t["id"] == int(p.name) for t in http.get(f"/api/projects/{project}/trainings").json())
            ]

            filler.unlink()
            ended = wait(http, running["id"])  # recorded once there is room
            # cancelled, or failed first when its own log could no longer be written
            assert (ended["status"], ended["jobs"][0]["reason"]) == ("cancelled", "cancelled by admin") or (
                ended["status"] == "failed" and ended["jobs"][0]["reason"].startswith("disk full: ")
            ), ended
            assert http.get("/api/cluster").json()["training_servers"] == []
            assert http.post(f"/api/projects/{project}/import", content=extra).status_code == 200
            train_as_a_ray_job(service, project)
            assert http.get(f"/api/projects/{project}").json()["completions"] == before["completions"] + 300
    finally:
        stop(home)
        if agent_port:
            agent_port.close()


def held_port(number: int) -> socket.socket | None:
    """The port, bound by this process (None when something else holds it already)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", number))
    except OSError:
        sock.close()
        return None
    return sock


def train_as_a_ray_job(service: Service, project: str) -> None:
    """The next training succeeds, submitted from the CLI as a Ray job: the service's head took a
    free port for the dashboard agent that Ray job submission goes through (Ray's default was held)."""
    trained = service.cli(
        "train",
        project,
        "--type",
        "ner",
        "--embeddings",
        "bilstm",
        "--epochs",
        str(BILSTM["epochs"]),
        "--learning-rate",
        str(BILSTM["learning_rate"]),
        "--batch-size",
        str(BILSTM["batch_size"]),
        "--submit",
        "--follow",
        token=service.token,
    )
    assert trained.returncode == 0, trained.stderr
    training = json.loads(service.cli("history", project, "--json", token=service.token).stdout)[0]
    assert training["source"] == "ray job" and training["status"] == "succeeded", training
