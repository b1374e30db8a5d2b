"""Trainings through the running service: real Ray (2 CPUs), Ray Train runs, real models on a
tiny separable project, the HTTP API and the `labtrain` CLI."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.conftest import HANG_S
from tests.ray_cluster import AnotherRayCluster
from tests.test_service import new_user
from tests.trainer_data import CONFIG, toy_tasks
from trainers.recipes import MULTIPLE, RECIPES

# Nothing set: the trainings take the path and the recipe a user gets (on the toy project, MiniLM
# NER in seconds and, for classification, the few-shot path its few examples choose)
DEFAULTS: dict = {}
BILSTM = {"epochs": 8, "learning_rate": 1e-2, "batch_size": 4}
ENDED = ("succeeded", "failed", "cancelled")


def toy_project(service, n: int = 60) -> str:
    name = "t" + uuid.uuid4().hex[:8]
    with service.client() as http:
        assert http.post("/api/projects", json={"name": name, "config": CONFIG}).status_code == 201
        answer = http.post(f"/api/projects/{name}/import", content=json.dumps(toy_tasks(n)))
        assert answer.status_code == 200, answer.text
    return name


def start(http, project: str, **body) -> dict:
    answer = http.post(f"/api/projects/{project}/trainings", json={"params": DEFAULTS, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def wait(http, training_id: int, until=lambda t: t["status"] in ENDED, timeout_s: float = HANG_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        training = http.get(f"/api/trainings/{training_id}").json()
        if until(training):
            return training
        time.sleep(0.25)
    raise AssertionError(f"training {training_id} did not get there in {timeout_s} s: {training}")


def test_two_jobs_run_at_once_then_versions_deploy_benchmark_and_predict(service):
    project = toy_project(service)
    with service.client() as http:
        assert http.put(f"/api/projects/{project}/training/settings", json={"versioning": True}).status_code == 200
        first = start(http, project, types=["ner", "classification"])
        assert first["status"] in ("queued", "running") and len(first["jobs"]) == 2
        assert http.put(f"/api/projects/{project}/training/settings", json={"versioning": False}).status_code == 409
        first = wait(http, first["id"])
        assert first["status"] == "succeeded", first
        ner, classification = first["jobs"]
        # both ran at the same time, one CPU bundle each
        assert max(ner["started_at"], classification["started_at"]) < min(ner["ended_at"], classification["ended_at"])
        assert ner["model_name"] == f"ner_{project}_v1"
        assert classification["model_name"] == f"classification_{project}_topic_v1"
        assert ner["metrics"]["micro"]["f1"] > 0.9 and classification["metrics"]["micro"]["f1"] > 0.9
        assert ner["license"] == "embedded:training:ner"

        second = wait(http, start(http, project, types=["ner"], embeddings="bilstm", deploy=True, params=BILSTM)["id"])
        assert second["jobs"][0]["model_name"] == f"ner_{project}_v2"
        config = http.get(f"/api/projects/{project}/config").json()["config"]
        assert f'model="ner_{project}_v2"' in config and f"ner_{project}_v1" not in config

        model = http.get(f"/api/models/ner_{project}_v2").json()
        assert model["deployed"] and [v["name"] for v in model["versions"]] == [
            f"ner_{project}_v1",
            f"ner_{project}_v2",
        ]
        assert http.get(f"/api/models/classification_{project}_topic").json()["confusion_matrix"]["labels"] == [
            "travel",
            "health",
        ]
        bench = http.get(f"/api/models/classification_{project}_topic_v1/benchmark").json()
        assert set(bench["metrics"]["per_label"]) == {"travel", "health"}
        assert bench["confusion_matrix"]["labels"] == ["travel", "health"]
        png = http.get(f"/api/models/classification_{project}_topic_v1/confusion_matrix.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

        predicted = http.post(
            f"/api/models/ner_{project}_v2/predict", json={"texts": ["Greta lives in Oslo and travels often ."]}
        ).json()
        labels = {(r["value"]["text"], r["value"]["labels"][0]) for r in predicted["results"][0]}
        assert labels == {("Greta", "PER"), ("Oslo", "LOC")}

        history = http.get(f"/api/projects/{project}/trainings").json()
        assert [t["id"] for t in history] == [second["id"], first["id"]]
        assert history[1]["data"]["rows"] == {"ner": 60, "classification": 60}
        archive = zipfile.ZipFile(io.BytesIO(http.get(f"/api/trainings/{first['id']}/logs/download").content))
        names = set(archive.namelist())
        assert {
            "training.json",
            "ner/job.log",
            "ner/training.log",
            "ner/metrics.json",
            "classification/labtrain.json",
            "classification/confusion_matrix.png",
        } <= names
        log = archive.read("classification/job.log").decode()
        assert "started on 1 CPU" in log and "TEST LABEL" in log and "succeeded: model" in log


def test_jobs_beyond_the_cpus_wait_and_cancel_frees_their_bundles(service):
    project = toy_project(service)
    long = {
        "epochs": 500,
        "learning_rate": 1e-4,
        "batch_size": 4,
        "few_shot": "off",
    }  # the fine-tuned head: steps of seconds
    with service.client() as http:
        # one CPU each (--cpus 1): without it the first, alone on the idle service, would take both
        trainings = [start(http, project, types=["classification"], params=long, cpus=1) for _ in range(3)]
        third = wait(
            http,
            trainings[2]["id"],
            until=lambda t: t["jobs"][0]["reason"] == "waiting for 1 CPU",
        )
        assert third["status"] == "queued"
        for training in trainings[:2]:
            wait(http, training["id"], until=lambda t: t["jobs"][0]["progress"] > 0)
        assert len(http.get("/api/cluster").json()["training_servers"]) == 2
        for training in trainings:
            assert http.post(f"/api/trainings/{training['id']}/cancel").status_code == 200
        for training in trainings:
            done = wait(http, training["id"])
            assert done["status"] == "cancelled", done
            assert done["jobs"][0]["reason"].startswith("cancelled by admin")
        cluster = wait_for_free_cpus(http, 2)
        assert cluster["training_servers"] == []
        assert http.get("/api/health").status_code == 200


def test_a_worker_that_dies_is_started_again_then_fails_its_job_when_no_retry_is_left(service):
    project = toy_project(service)
    with service.client() as http:  # max_retries: 1 by default
        training = start(http, project, types=["ner"], embeddings="bilstm", params={**BILSTM, "epochs": 400})
        wait(http, training["id"], until=lambda t: t["jobs"][0]["progress"] > 1)
        (server,) = http.get("/api/cluster").json()["training_servers"]
        os.kill(server["worker_pid"], signal.SIGKILL)
        again = wait_for_worker(http, other_than=server["worker_pid"])  # Ray Train started it again
        log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
        assert re.search(
            r"the training process on node \w+ lost at epoch \d+ of 400; started again from the "
            r"beginning \(checkpoints need a place every node reaches: labtrain serve --artifacts\) "
            r"on node \w+",
            log,
        ), log
        os.kill(again["worker_pid"], signal.SIGKILL)
        done = wait(http, training["id"])
        assert done["status"] == "failed", done
        assert done["jobs"][0]["reason"].startswith("the training process died"), done["jobs"][0]
        wait_for_free_cpus(http, 2)
        retry = wait(http, start(http, project, types=["ner"], embeddings="bilstm", params=BILSTM)["id"])
        assert retry["status"] == "succeeded"


def wait_for_worker(http, other_than: int, timeout_s: float = HANG_S) -> dict:
    """The running job's training server once its worker is another process than `other_than`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        servers = http.get("/api/cluster").json()["training_servers"]
        if servers and servers[0]["worker_pid"] not in (None, other_than):
            return servers[0]
        time.sleep(0.3)
    raise AssertionError(f"no new worker in {timeout_s} s")


def wait_for_free_cpus(http, n: float, timeout_s: float = HANG_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cluster = http.get("/api/cluster").json()
        if cluster["available"]["CPU"] >= n and not cluster["training_servers"]:
            return cluster
        time.sleep(0.5)
    raise AssertionError(f"CPUs not freed: {cluster}")


def test_data_that_cannot_train_is_refused_before_any_job_over_http_and_the_cli(service):
    project = "t" + uuid.uuid4().hex[:8]
    travel_only = [t for i, t in enumerate(toy_tasks(20)) if i % 2]  # one topic, no assertion label anywhere
    with service.client() as http:
        http.post("/api/projects", json={"name": project, "config": CONFIG})
        assert http.post(f"/api/projects/{project}/import", content=json.dumps(travel_only)).status_code == 200
        answer = http.post(f"/api/projects/{project}/trainings", json={"types": ["ner", "assertion", "classification"]})
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("cannot train: assertion: no entity in the training part"), detail
        assert "Present, Absent" in detail
        assert "classification (single choice): the training part has one class, 'travel'" in detail
        assert http.get(f"/api/projects/{project}/trainings").json() == []
    cli = service.cli("train", project, "--type", "classification")
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr.startswith("labtrain: error: 422: cannot train: classification (single choice): the training"), (
        cli.stderr
    )
    with service.client() as http:
        assert http.get(f"/api/projects/{project}/trainings").json() == []


def only_ner_licensed(service) -> Path:
    """A license file that grants training:ner only: other text jobs wait. The caller unlinks it."""
    license_file = service.home / "licenses.yaml"
    license_file.write_text("licenses:\n- {id: ner-only, scopes: [training:ner], max_jobs: 1}\n")
    return license_file


def wait_for_license(http, training_id: int) -> dict:
    return wait(http, training_id, until=lambda t: (t["jobs"][0]["reason"] or "").startswith("waiting for a license"))


def test_a_job_without_a_license_waits_and_says_for_which_scope(service):
    project = toy_project(service)
    license_file = only_ner_licensed(service)
    try:
        with service.client() as http:
            training = start(http, project, types=["classification"])
            waiting = wait_for_license(http, training["id"])
            assert waiting["status"] == "queued"
            assert waiting["jobs"][0]["reason"] == "waiting for a license with scope training:classification"
            queue = http.get("/api/cluster").json()["queue"]
            assert any(q["training_id"] == training["id"] for q in queue)
            assert http.post(f"/api/trainings/{training['id']}/cancel").json()["status"] == "cancelled"
    finally:
        license_file.unlink()


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"types": ["sentiment"]}, 422, "'sentiment' is not one of"),
        ({"types": ["classification"], "embeddings": "bilstm"}, 422, "cannot train 'classification'"),
        ({"types": ["ner"], "params": {"epochs": 0}}, 422, "epochs=0"),
        ({"types": ["ner"], "params": {"dropout": 1.5}}, 422, "dropout"),
        ({"types": ["ner"], "gpu": True}, 422, "fits no node of this cluster (it has 0 GPU)"),
        ({"types": ["ner"], "cpus": 3}, 422, "cpus: a 3 CPU bundle fits no node of this cluster (it has 2 CPU)"),
        ({"types": ["ner"], "cpus": 0}, 422, "cpus"),
        ({"types": ["ner"], "selection": {"validation_split": 0.2, "test_tag": "test"}}, 422, "not both"),
        ({"types": ["ner"], "backend": "tensorflow"}, 422, "backend 'tensorflow'"),
    ],
)
def test_bad_training_requests_are_refused_naming_the_field(service, body, status, words):
    project = toy_project(service, 10)
    with service.client() as http:
        answer = http.post(f"/api/projects/{project}/trainings", json=body)
        assert answer.status_code == status, answer.text
        assert words in str(answer.json()["detail"])  # a field FastAPI checks gives a list naming it
        assert http.get(f"/api/projects/{project}/trainings").json() == []


def test_only_owners_and_managers_train_and_members_read(service):
    project = toy_project(service, 10)
    user, token = new_user(service)
    with service.client() as http:
        http.put(f"/api/projects/{project}/members", json={"set": [{"username": user, "role": "reviewer"}]})
    with service.client(token) as http:
        answer = http.post(f"/api/projects/{project}/trainings", json={"types": ["ner"]})
        assert answer.status_code == 403 and "needs manager" in answer.json()["detail"]
        options = http.get(f"/api/projects/{project}/training/options").json()
        assert [t["type"] for t in options["types"]] == ["ner", "assertion", "classification", "relation"]
        own = [e["name"] for e in options["types"][0]["embeddings"] if not e.get("registered")]
        assert own == ["minilm", "bilstm"]  # then any encoder another test registered on the shared service
        assert options["gpu_available"] is False and options["defaults"]["validation_split"] == 0.2
        minilm = options["types"][2]["embeddings"][0]  # classification: multiple choice has a recipe of its own
        assert (
            minilm["multiple_choice"]["defaults"]["learning_rate"]
            == RECIPES[("classification", "minilm", MULTIPLE)]["learning_rate"]
        )
        assert minilm["defaults"]["learning_rate"] == RECIPES[("classification", "minilm")]["learning_rate"]
    with service.client() as http:
        assert http.get("/api/trainings/999999").status_code == 404


def test_cli_trains_with_a_progress_bar_and_reads_history_models_logs_cluster(service):
    project = toy_project(service)
    trained = service.cli(
        "train",
        project,
        "--type",
        "ner",
        "--embeddings",
        "bilstm",
        "--epochs",
        "8",
        "--learning-rate",
        "0.01",
        "--batch-size",
        "4",
        "--follow",
        token=service.token,
    )
    assert trained.returncode == 0, trained.stderr
    assert "ner [####################] 100.0%" in trained.stderr and "succeeded" in trained.stdout
    training_id = int(trained.stdout.split()[1])
    history = service.cli("history", project, "--json", token=service.token)
    assert json.loads(history.stdout)[0]["id"] == training_id
    models = service.cli("models", f"ner_{project}", token=service.token)
    assert f"ner_{project}" in models.stdout
    logs = service.cli("logs", str(training_id), "-f", token=service.token)
    assert "epoch" in logs.stdout.lower() and "TEST ENTITY" in logs.stdout
    # alone on the idle service, asking for no CPU count: it took both CPUs, and trained on both
    assert "started on 2 CPU with license" in logs.stdout and "(2 threads)" in logs.stdout, logs.stdout
    cluster = json.loads(service.cli("cluster", "--json", token=service.token).stdout)
    assert cluster["total"]["CPU"] == 2 and cluster["dashboard_url"].startswith("http")
    status = service.cli("status", str(training_id), token=service.token)
    assert "succeeded" in status.stdout
    bad = service.cli("train", project, "--type", "ner", "--epochs", "0", token=service.token)
    assert bad.returncode == 1 and "epochs=0" in bad.stderr


def test_submit_runs_the_training_as_a_ray_job_recorded_in_the_history(service):
    # Another Ray cluster on the machine, recorded as its latest: Ray's job supervisor points a
    # driver at "auto", which names it; the driver must still join the service's own cluster.
    other = AnotherRayCluster(latest=True)
    try:
        _submit_a_training(service)
    finally:
        other.stop()


def _submit_a_training(service) -> None:
    project = toy_project(service)
    trained = service.cli(
        "train",
        project,
        "--type",
        "ner",
        "--embeddings",
        "bilstm",
        "--epochs",
        "2",
        "--submit",
        "--follow",
        token=service.token,
    )
    assert trained.returncode == 0, trained.stderr
    assert "as Ray job labtrain-job-" in trained.stderr
    training = json.loads(service.cli("history", project, "--json", token=service.token).stdout)[0]
    assert training["source"] == "ray job" and training["status"] == "succeeded"
    assert training["jobs"][0]["ray_job_id"].startswith("labtrain-job-")
    assert training["jobs"][0]["model_name"] == f"ner_{project}"


def test_active_learning_retrains_every_n_completions_once_at_a_time_on_the_test_tag(service):
    project = toy_project(service, 40)
    tasks = toy_tasks(100)
    for t in tasks[40:50]:
        t["tags"] = ["Test"]
    with service.client() as http:
        # the settings active learning reuses: the last manual training's request, however it ended
        manual = start(http, project, types=["classification"], params={**DEFAULTS, "epochs": 1})
        assert http.post(f"/api/trainings/{manual['id']}/cancel").status_code == 200
        assert wait(http, manual["id"])["status"] == "cancelled"
        bad = http.put(f"/api/projects/{project}/training/settings", json={"active_learning": {"every": 0}})
        assert bad.status_code == 422 and "every=0" in bad.json()["detail"]
        settings = http.put(
            f"/api/projects/{project}/training/settings",
            json={"active_learning": {"enabled": True, "every": 10, "deploy": True}},
        ).json()
        assert settings["active_learning"]["baseline"] == 40  # completions before it was on do not count

        first = http.post(f"/api/projects/{project}/import", content=json.dumps(tasks[40:49])).json()
        assert first["active_learning_training"] is None  # 9 new: not yet
        second = http.post(f"/api/projects/{project}/import", content=json.dumps(tasks[49:60])).json()
        started = second["active_learning_training"]
        assert started is not None
        third = http.post(f"/api/projects/{project}/import", content=json.dumps(tasks[60:75])).json()
        assert third["active_learning_training"] is None  # one active-learning training at a time

        done = wait(http, started)
        assert done["status"] == "succeeded" and done["source"] == "active learning"
        request = done["request"]
        assert request["types"] == ["classification"] and request["params"] == {**DEFAULTS, "epochs": 1}
        assert request["selection"]["test_tag"] == "Test" and request["deploy"] is True
        assert http.get(f"/api/models/{done['jobs'][0]['model_name']}").json()["deployed"]
        history = http.get(f"/api/projects/{project}/trainings").json()
        assert [t["source"] for t in history] == ["active learning", "manual"]
        fourth = http.post(f"/api/projects/{project}/import", content=json.dumps(tasks[75:76])).json()
        assert fourth["active_learning_training"] is not None  # 16 new since it fired: due again
        assert http.post(f"/api/trainings/{fourth['active_learning_training']}/cancel").status_code == 200


def test_a_corrupt_snapshot_fails_its_job_with_the_reason_and_the_next_training_succeeds(service):
    project = toy_project(service)
    license_file = only_ner_licensed(service)
    try:
        with service.client() as http:
            training = start(http, project, types=["classification"])
            wait_for_license(http, training["id"])
            snapshot = service.home / "trainings" / str(training["id"]) / "snapshot" / "classification.parquet"
            snapshot.write_bytes(snapshot.read_bytes()[:200])  # cut short while the job waits
            license_file.unlink()
            done = wait(http, training["id"])
            assert done["status"] == "failed"
            assert done["jobs"][0]["reason"].startswith("corrupt snapshot: the snapshot "), done["jobs"][0]
            assert http.get(f"/api/projects/{project}").json()["completions"] == 60
            again = start(http, project, types=["classification"], params={**DEFAULTS, "epochs": 1})
            assert wait(http, again["id"])["status"] == "succeeded"
    finally:
        license_file.unlink(missing_ok=True)
