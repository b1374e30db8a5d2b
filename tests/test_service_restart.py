"""A restart of `labtrain serve` mid-training: the interrupted job is marked failed, not lost,
and the next training runs. Its own service on its own home (the session's stays up)."""

import json
import subprocess
import sys

from tests.conftest import Service, _free_port
from tests.test_training_service import BILSTM, start, toy_project, wait


def serve(home, port) -> Service:
    started = subprocess.run([sys.executable, "-m", "ray_app.cli", "serve", "--detach", "--json", "--home", str(home),
                              "--port", str(port), "--num-cpus", "2"], capture_output=True, text=True, timeout=400)
    assert started.returncode == 0, started.stderr + started.stdout
    info = json.loads(started.stdout)
    return Service(home, info["url"], info["admin_token"])


def stop(home) -> None:
    subprocess.run([sys.executable, "-m", "ray_app.cli", "stop", "--home", str(home)], timeout=120, check=True)


def test_a_restart_marks_running_jobs_interrupted_and_the_next_training_succeeds(tmp_path):
    home, port = tmp_path / "home", _free_port()
    service = serve(home, port)
    try:
        project = toy_project(service)
        with service.client() as http:
            training = start(http, project, types=["classification"], params={"epochs": 500, "batch_size": 4})
            wait(http, training["id"], until=lambda t: t["jobs"][0]["progress"] > 1)
        stop(home)
        service = serve(home, port)
        with service.client() as http:
            after = http.get(f"/api/trainings/{training['id']}").json()
            assert after["status"] == "failed"
            assert after["jobs"][0]["reason"].startswith("interrupted: the labtrain service stopped")
            log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
            assert "interrupted" in log.splitlines()[-1]
            again = wait(http, start(http, project, types=["ner"], embeddings="bilstm", params=BILSTM)["id"])
            assert again["status"] == "succeeded"
            assert http.get(f"/api/projects/{project}").json()["completions"] == 60
    finally:
        stop(home)
