"""Label Studio as a real client: a Label Studio 1.23.2 server on loopback, used through its own API as
its users would (create a project, import tasks with annotations, press Start Training, Retrieve
predictions, annotate, delete), with labtrain linked to it as the project's ML backend."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, DRIVER, wait_until
from tests.label_studio_server import LabelStudioServer, installed
from tests.test_train_page import until
from tests.test_training_service import BILSTM, wait
from tests.trainer_data import toy_tasks

NER_CONFIG = (
    '<View><Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>'
    '<Text name="text" value="$text"/></View>'
)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    venv = installed()
    if venv is None:
        pytest.skip("Label Studio is not installed (.ci/setup installs it into the cache)")
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"), venv).start()
    yield server
    server.stop()


def ls_project(label_studio: LabelStudioServer, n: int = 60) -> int:
    """A Label Studio project with `n` tasks, each with one annotation (PER and LOC spans)."""
    with label_studio.client() as ls:
        project = ls.post("/api/projects", json={"title": "toy " + uuid.uuid4().hex[:6], "label_config": NER_CONFIG})
        assert project.status_code == 201, project.text
        tasks = [
            {
                "data": t["data"],
                "annotations": [
                    {
                        "result": [
                            r
                            for r in c["result"]
                            if r["type"] == "labels" and r["value"]["labels"][0] in ("PER", "LOC")
                        ]
                    }
                    for c in t["completions"]
                ],
            }
            for t in toy_tasks(n)
        ]
        imported = ls.post(f"/api/projects/{project.json()['id']}/import", json=tasks)
        assert imported.status_code == 201 and imported.json()["annotation_count"] == n, imported.text
    return project.json()["id"]


def link(service, label_studio, project_id: int, name: str | None = None, connect: bool = False) -> dict:
    name = name or "ls" + uuid.uuid4().hex[:8]
    with service.client() as http:
        answer = http.post(
            f"/api/projects/{name}/link",
            json={
                "label_studio": label_studio.url,
                "ls_project": project_id,
                "ls_token": label_studio.token,
                "connect": connect,
            },
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


def basic(password: str, user: str = "labtrain") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def wait_for(check, what: str):
    return wait_until(check, what, every_s=0.5)


def test_start_training_in_label_studio_trains_deploys_and_predictions_come_back_into_it(service, label_studio):
    project_id = ls_project(label_studio)
    linked = link(service, label_studio, project_id, connect=True)
    name = linked["project"]
    assert (linked["imported"]["tasks"], linked["imported"]["completions"]) == (60, 60)
    assert linked["ml_backend_id"] and linked["backend_url"].endswith(f"/ml/{name}")
    with service.client() as http, label_studio.client() as ls:
        assert http.get(f"/api/projects/{name}/link").json()["backend_state"] == "CONNECTED"
        [backend] = ls.get("/api/ml", params={"project": project_id}).json()
        assert backend["state"] == "CO" and backend["model_version"] == "no model deployed"
        # a manual training first: it is what "Start Training" trains again (the project's saved settings,
        # kept however that training ended: this one is cancelled at once)
        manual = http.post(
            f"/api/projects/{name}/trainings", json={"types": ["ner"], "embeddings": "bilstm", "params": BILSTM}
        ).json()
        assert http.post(f"/api/trainings/{manual['id']}/cancel").status_code == 200
        assert wait(http, manual["id"])["status"] == "cancelled"

        assert ls.post(f"/api/ml/{backend['id']}/train").status_code == 200  # Label Studio's "Start Training"
        trained = wait_for(
            lambda: [
                t
                for t in http.get(f"/api/projects/{name}/trainings").json()
                if t["source"] == "label studio" and t["status"] in ("succeeded", "failed")
            ],
            "the training Label Studio started ended",
        )[0]
        assert trained["status"] == "succeeded", trained
        model = trained["jobs"][0]["model_name"]
        assert model == f"ner_{name}_v1" and trained["request"]["deploy"] is True  # versions count successes
        assert trained["request"]["params"] == BILSTM  # the manual training's settings
        # /setup names the new version at once; Label Studio's "Retrieve predictions" asks /predict
        answer = http.post(f"/ml/{name}/setup", headers=basic(linked["backend_password"]), json={})
        assert answer.json() == {"model_version": model}
        retrieved = ls.post(
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": True, "excluded": []}},
        )
        assert retrieved.status_code == 200 and retrieved.json()["processed_items"] == 60, retrieved.text
        tasks = ls.get("/api/tasks", params={"project": project_id, "fields": "all", "page_size": 100}).json()["tasks"]
        predictions = [p for t in tasks for p in t["predictions"]]
        assert len(predictions) == 60 and {p["model_version"] for p in predictions} == {model}
        found = {(r["value"]["text"], r["value"]["labels"][0]) for p in predictions for r in p["result"]}
        assert ("Anna", "PER") in found and ("Paris", "LOC") in found and predictions[0]["score"] > 0.5

        # an annotation submitted in Label Studio reaches the catalog and counts for active learning;
        # deleted, it leaves the next selection
        assert (
            http.put(
                f"/api/projects/{name}/training/settings", json={"active_learning": {"enabled": True, "every": 1}}
            ).status_code
            == 200
        )
        task = tasks[0]
        text = task["data"]["text"]
        made = ls.post(
            f"/api/tasks/{task['id']}/annotations",
            json={
                "result": [
                    {
                        "id": "n1",
                        "from_name": "label",
                        "to_name": "text",
                        "type": "labels",
                        "value": {"start": 0, "end": len(text.split()[0]), "text": text.split()[0], "labels": ["PER"]},
                    }
                ]
            },
        )
        assert made.status_code == 201, made.text
        wait_for(lambda: http.get(f"/api/projects/{name}").json()["completions"] == 61, "the new annotation arrived")
        relearning = wait_for(
            lambda: [t for t in http.get(f"/api/projects/{name}/trainings").json() if t["source"] == "active learning"],
            "active learning started a training",
        )
        assert http.post(f"/api/trainings/{relearning[0]['id']}/cancel").status_code == 200
        chosen = http.post(f"/api/projects/{name}/selection", json={}).json()
        assert made.json()["id"] in {r["completion_id"] for r in chosen["tasks"]}
        assert ls.delete(f"/api/annotations/{made.json()['id']}").status_code == 204
        wait_for(lambda: http.get(f"/api/projects/{name}").json()["completions"] == 60, "the deletion arrived")
        chosen = http.post(f"/api/projects/{name}/selection", json={}).json()
        assert made.json()["id"] not in {r["completion_id"] for r in chosen["tasks"]}

        # the Label Studio token is in no answer, log or catalog file
        seen = [
            http.get(f"/api/projects/{name}/link").text,
            json.dumps(linked),
            http.get(f"/api/projects/{name}/trainings").text,
            http.get(f"/api/trainings/{trained['id']}/logs", params={"follow": False}).text,
        ]
        assert not [text for text in seen if label_studio.token in text]
        for path in Path(service.home).rglob("*"):
            if path.is_file():
                assert label_studio.token.encode() not in path.read_bytes(), path


def test_the_backend_refuses_a_wrong_password_and_events_without_one(service, label_studio):
    linked = link(service, label_studio, ls_project(label_studio, 5))
    name = linked["project"]
    with service.client(token=None) as http:
        for headers in (
            {},
            basic("wrong"),
            basic(linked["backend_password"], user="admin"),
            {"Authorization": f"Bearer {service.token}"},
        ):
            answer = http.get(f"/ml/{name}/health", headers=headers)
            assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic"), answer.text
        refused = http.post(f"/ml/{name}/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}]})
        assert refused.status_code == 401
        assert http.get(f"/ml/{name}/health", headers=basic(linked["backend_password"])).json()["status"] == "UP"
        bad = http.post(
            f"/ml/{name}/webhook",
            headers=basic(linked["backend_password"]),
            json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": "x"}]},
        )
        assert bad.status_code == 422 and "integer ids" in bad.json()["detail"]
        other = http.post(
            f"/ml/{name}/webhook",
            headers=basic(linked["backend_password"]),
            json={"action": "START_TRAINING", "project": {"id": 999999}},
        )
        assert other.status_code == 422 and "project 999999" in other.json()["detail"]


def test_predict_without_a_deployed_model_answers_an_empty_result_per_task(service, label_studio):
    linked = link(service, label_studio, ls_project(label_studio, 5))
    with service.client(token=None) as http:
        answer = http.post(
            f"/ml/{linked['project']}/predict",
            headers=basic(linked["backend_password"]),
            json={
                "tasks": [
                    {"id": 1, "data": {"text": "Anna lives in Paris ."}},
                    {"id": 2, "data": {"text": "Boris lives in Rome ."}},
                ]
            },
        )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"results": [{"result": [], "score": None, "model_version": "no model deployed"}] * 2}


def test_a_bad_url_token_or_project_is_refused_with_label_studios_reason_and_nothing_recorded(service, label_studio):
    project_id = ls_project(label_studio, 5)
    from tests.ray_cluster import free_port

    name = "ls" + uuid.uuid4().hex[:8]
    cases = [
        ({"ls_token": "not-the-token"}, 422, "Invalid token"),
        ({"ls_project": 987654}, 422, "No Project matches"),
        ({"label_studio": f"http://127.0.0.1:{free_port()}"}, 502, "cannot be reached"),
        ({"label_studio": "ftp://x"}, 422, "not an http(s) URL"),
    ]
    with service.client() as http:
        for change, status, words in cases:
            body = {
                "label_studio": label_studio.url,
                "ls_project": project_id,
                "ls_token": label_studio.token,
                **change,
            }
            answer = http.post(f"/api/projects/{name}/link", json=body)
            assert answer.status_code == status and words in answer.json()["detail"], (change, answer.text)
            assert label_studio.token not in answer.text
        assert http.get(f"/api/projects/{name}").status_code == 404  # no project was made


def test_push_writes_a_models_predictions_into_label_studio_once(service, label_studio):
    project_id = ls_project(label_studio, 12)
    linked = link(service, label_studio, project_id)
    name = linked["project"]
    with service.client() as http:
        trained = wait(
            http,
            http.post(
                f"/api/projects/{name}/trainings",
                json={"types": ["ner"], "embeddings": "bilstm", "params": BILSTM, "deploy": True},
            ).json()["id"],
        )
        assert trained["status"] == "succeeded"
    model = trained["jobs"][0]["model_name"]
    pushed = service.cli("push", name, "--json", token=service.token)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout) == {"total": 12, "done": 12, "skipped": 0, "model_version": model}
    again = service.cli("push", name, token=service.token)
    assert (
        again.returncode == 0 and "wrote 0 predictions" in again.stdout and "12 tasks already had them" in again.stdout
    )
    with label_studio.client() as ls:
        tasks = ls.get("/api/tasks", params={"project": project_id, "fields": "all"}).json()["tasks"]
    assert [len(t["predictions"]) for t in tasks] == [1] * 12
    shown = service.cli("link", name, token=service.token)
    assert shown.returncode == 0 and f"Label Studio project {project_id}" in shown.stdout


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_train_page_shows_the_link(service, label_studio, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    project_id = ls_project(label_studio, 5)
    name = link(service, label_studio, project_id)["project"]
    browser.get(service.url + "/")
    browser.find_element(By.ID, "token").send_keys(service.token)
    browser.find_element(By.ID, "login-form").submit()
    until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#project-picker option[value="{name}"]'),
        what="the project in the picker",
    )
    Select(browser.find_element(By.ID, "project-picker")).select_by_value(name)
    expected = f"Linked to Label Studio project {project_id} at {label_studio.url}"
    shown = until(  # the page may show the previously picked project's link until this one's arrives
        browser,
        lambda d: (
            d.find_element(By.ID, "link").is_displayed()
            and expected in d.find_element(By.ID, "link").text
            and d.find_element(By.ID, "link").text
        ),
        what=f"the link to Label Studio project {project_id}",
    )
    assert "ML backend not connected" in shown and "(5 tasks)" in shown


def test_a_label_studio_that_is_down_during_a_sync_changes_nothing(service, label_studio):
    """Last in this module: it stops Label Studio."""
    linked = link(service, label_studio, ls_project(label_studio, 8))
    name = linked["project"]
    label_studio.stop()
    with service.client() as http:
        before = http.get(f"/api/projects/{name}").json()
        answer = http.post(f"/api/projects/{name}/link/sync")
        assert answer.status_code == 502 and "cannot be reached" in answer.json()["detail"], answer.text
        assert http.get(f"/api/projects/{name}").json() == before
        assert "cannot be reached" in http.get(f"/api/projects/{name}/link").json()["last_error"]
    cli = service.cli("link", name, "--sync", token=service.token)
    assert cli.returncode == 1 and "cannot be reached" in cli.stderr
