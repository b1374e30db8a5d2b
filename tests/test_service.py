"""The running service: real Ray head, Ray Serve, storage actor, HTTP and the `labtrain` CLI."""

import json
import os
import subprocess
import sys
import uuid

import httpx
import pyarrow.parquet as pq
import pytest

from tests.conftest import HANG_S, NER_CONFIG, genai_completion, genai_task, shared_file, span

TEXT = "Rita lives in Paris"


def new_project(service, config: str = NER_CONFIG) -> str:
    name = "p" + uuid.uuid4().hex[:8]
    with service.client() as http:
        assert http.post("/api/projects", json={"name": name, "config": config}).status_code == 201
    return name


def new_user(service, name: str | None = None) -> tuple[str, str]:
    name = name or "u" + uuid.uuid4().hex[:8]
    with service.client() as http:
        answer = http.post("/api/users", json={"name": name})
    assert answer.status_code == 201, answer.text
    return name, answer.json()["token"]


def test_health_answers_without_a_token_and_docs_list_the_routes(service):
    with service.client(token=None) as http:
        assert http.get("/api/health").json()["status"] == "ok"
        paths = http.get("/openapi.json").json()["paths"]
    for path in (
        "/api/projects",
        "/api/projects/{name}/import",
        "/api/projects/{name}/members",
        "/api/projects/{name}/config",
        "/api/projects/{name}/selection",
        "/api/projects/{name}/snapshots",
    ):
        assert path in paths


@pytest.mark.parametrize("token", [None, "lt_not-a-token"])
def test_requests_without_a_valid_token_get_401(service, token):
    with service.client(token=token) as http:
        answer = http.get("/api/projects")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_roles_decide_who_may_import_configure_and_read(service):
    project = new_project(service)
    reviewer, reviewer_token = new_user(service)
    outsider, outsider_token = new_user(service)
    with service.client() as http:
        http.put(f"/api/projects/{project}/members", json={"set": [{"username": reviewer, "role": "reviewer"}]})
    export = json.dumps([genai_task(1, TEXT, [genai_completion(11, "a", [span(TEXT, "Rita", "PER")])])])
    with service.client(reviewer_token) as http:
        assert http.get(f"/api/projects/{project}/config").status_code == 200
        denied = http.post(f"/api/projects/{project}/import", content=export)
        assert denied.status_code == 403 and "reviewer" in denied.json()["detail"]
        assert http.put(f"/api/projects/{project}/config", json={"config": NER_CONFIG}).status_code == 403
        assert http.put(f"/api/projects/{project}/members", json={"remove": ["admin"]}).status_code == 403
    with service.client(outsider_token) as http:
        assert http.get(f"/api/projects/{project}").status_code == 403
        assert project not in [p["name"] for p in http.get("/api/projects").json()]
        assert http.post("/api/users", json={"name": "x"}).status_code == 403
    with service.client() as http:
        assert http.get(f"/api/projects/{project}").json()["tasks"] == 0


def test_manager_cannot_grant_the_owner_role(service):
    project = new_project(service)
    manager, token = new_user(service)
    with service.client() as http:
        http.put(f"/api/projects/{project}/members", json={"set": [{"username": manager, "role": "manager"}]})
    with service.client(token) as http:
        answer = http.put(f"/api/projects/{project}/members", json={"set": [{"username": "z", "role": "owner"}]})
        assert answer.status_code == 403
        assert (
            http.put(
                f"/api/projects/{project}/members",
                json={"set": [{"username": "z", "role": "annotator", "priority": 2}]},
            ).status_code
            == 200
        )


def test_malformed_import_over_http_is_rejected_whole_with_the_task_index(service):
    project = new_project(service)
    bad = json.dumps([genai_task(1, TEXT, []), {"id": 2, "completions": []}])
    with service.client() as http:
        answer = http.post(f"/api/projects/{project}/import", content=bad)
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith("task #1 (id 2): 'data' is missing")
        assert http.get(f"/api/projects/{project}").json()["tasks"] == 0


def test_invalid_config_is_rejected_and_the_old_one_kept(service):
    project = new_project(service)
    bad = NER_CONFIG.replace(
        '<Label value="ABSENT" assertion="true"/>', '<Label value="ABSENT" assertion="true" model="ner_x"/>'
    )
    with service.client() as http:
        answer = http.put(f"/api/projects/{project}/config", json={"config": bad})
        assert answer.status_code == 422 and "'ABSENT'" in answer.json()["detail"]
        assert http.get(f"/api/projects/{project}/config").json()["config"] == NER_CONFIG
        assert http.get("/api/projects/nope").status_code == 404


def test_cli_walkthrough_create_import_members_select_snapshot(service, tmp_path):
    config = tmp_path / "config.xml"
    config.write_text(NER_CONFIG)
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            [
                genai_task(
                    i,
                    TEXT,
                    [
                        genai_completion(i * 10, "alice", [span(TEXT, "Rita", "PER")]),
                        genai_completion(i * 10 + 1, "bob", [span(TEXT, "Paris", "LOC")]),
                    ],
                )
                for i in range(1, 11)
            ]
        )
    )
    name = "cli" + uuid.uuid4().hex[:6]

    created = service.cli("project", "create", name, "--config", str(config), "--json", token=service.token)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["training_types"] == ["ner", "assertion", "classification"]
    imported = service.cli("import", name, str(export), "--json", token=service.token)
    assert json.loads(imported.stdout)["inserted"] == 20
    again = service.cli("import", name, str(export), "--json", token=service.token)
    assert json.loads(again.stdout)["unchanged"] == 20
    members = service.cli(
        "members", name, "--set", "alice:annotator:1", "--set", "bob:annotator:3", "--json", token=service.token
    )
    assert [m["username"] for m in json.loads(members.stdout)][:2] == ["bob", "alice"]

    split = ("--validation-split", "0.3", "--split-seed", "7")
    selected = service.cli("select", name, *split, "--json", token=service.token)
    answer = json.loads(selected.stdout)
    assert {t["author"] for t in answer["tasks"]} == {"bob"}
    assert (answer["train"], answer["test"]) == (7, 3)
    previewed = sorted(t["task_id"] for t in answer["tasks"] if t["split"] == "test")
    other = service.cli("select", name, "--validation-split", "0.3", "--split-seed", "8", "--json", token=service.token)
    assert sorted(t["task_id"] for t in json.loads(other.stdout)["tasks"] if t["split"] == "test") != previewed
    # the training takes the split the preview showed (its own --seed is the training's)
    trained = service.cli("train", name, "--type", "ner", *split, "--seed", "3", "--json", token=service.token)
    assert trained.returncode == 0, trained.stderr
    training = json.loads(trained.stdout)
    with service.client() as http:
        http.post(f"/api/trainings/{training['id']}/cancel")  # only its snapshot is looked at
    snapshot = pq.read_table(service.home / "trainings" / str(training["id"]) / "snapshot" / "ner.parquet")
    rows = snapshot.select(["task_id", "split"]).to_pylist()
    assert sorted(r["task_id"] for r in rows if r["split"] == "test") == previewed
    assert answer["label_counts"]["ner"]["LOC"]["train"] + answer["label_counts"]["ner"]["LOC"]["test"] == 10

    human = service.cli("select", name, token=service.token)
    assert human.returncode == 0 and "highest member priority (3)" in human.stdout
    assert "warning: ner label 'PER' has 0 examples" in human.stderr

    snap = service.cli("select", name, "--snapshot", "--type", "ner", "--json", token=service.token)
    manifest = json.loads(snap.stdout)
    assert list(manifest["files"]) == ["ner"] and manifest["files"]["ner"]["rows"] == 10

    shown = service.cli("config", name, "--show", token=service.token)
    assert shown.stdout.strip() == NER_CONFIG.strip()


def test_cli_errors_go_to_stderr_with_a_nonzero_exit(service, tmp_path):
    missing = service.cli("project", "show", "does-not-exist", token=service.token)
    assert missing.returncode == 1 and "project 'does-not-exist' does not exist" in missing.stderr
    assert missing.stdout == ""
    bad_member = service.cli("members", "x", "--set", "alice:boss", token=service.token)
    assert bad_member.returncode == 1 and "role 'boss'" in bad_member.stderr
    unauthorised = service.cli("project", "list", token="lt_wrong")
    assert unauthorised.returncode == 1 and "401" in unauthorised.stderr


def test_second_serve_on_the_same_home_is_refused(service):
    again = subprocess.run(
        [sys.executable, "-m", "ray_app.cli", "serve", "--home", str(service.home), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert again.returncode == 1 and "already serving" in again.stderr


def test_a_detached_serve_that_exits_while_starting_fails_at_once_with_its_log(tmp_path):
    """`serve --detach` waits for the service as long as its process lives, with no clock: a service
    that exits first (here: its port is taken) fails the command with the end of serve.log."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        detached = subprocess.run(
            [
                sys.executable,
                "-m",
                "ray_app.cli",
                "serve",
                "--detach",
                "--home",
                str(tmp_path / "home"),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=HANG_S,
        )
    assert detached.returncode == 1, detached.stdout + detached.stderr
    assert "labtrain serve exited with code" in detached.stderr, detached.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in detached.stderr, detached.stderr
    assert "serve.log" in detached.stderr


# Ray's RAY_RAYLET_VALGRIND=1 starts the raylet as `valgrind <its flags> raylet ...`; this `valgrind`
# holds the first raylet stopped (as a starved machine would), and runs the raylet itself after that.
HOLD_THE_FIRST_RAYLET = """#!/bin/sh
while [ "${1#--}" != "$1" ]; do shift; done
if [ ! -e "$HELD" ]; then echo $$ > "$HELD"; kill -STOP $$; fi
exec "$@"
"""


@pytest.mark.slow  # a whole service, after Ray's 30 s
def test_a_detached_serve_that_ray_gives_up_starting_is_started_again(tmp_path):
    """Ray waits a fixed 30 s for a new node's raylet to register and then gives up; a loaded machine
    outlasts that. `serve --detach` starts such a service again: here the first raylet is held stopped
    past Ray's wait, the command still succeeds (on its second start), and the held raylet went with
    the process that gave up."""
    from ray_app.service import RAY_STARTUP_TIMED_OUT
    from tests.ray_cluster import ended, free_port

    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "valgrind").write_text(HOLD_THE_FIRST_RAYLET)
    (tools / "valgrind").chmod(0o755)
    held = tmp_path / "held_pid"
    home = tmp_path / "home"
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "RAY_RAYLET_VALGRIND": "1", "HELD": str(held)}
    cli = [sys.executable, "-m", "ray_app.cli"]
    try:
        detached = subprocess.run(
            [*cli, "serve", "--detach", "--home", str(home), "--port", str(free_port()), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=HANG_S,
        )
        assert detached.returncode == 0, detached.stdout + detached.stderr
        with httpx.Client(base_url=json.loads(detached.stdout)["url"]) as http:
            assert http.get("/api/health").json()["status"] == "ok"
    finally:
        subprocess.run([*cli, "stop", "--home", str(home)], capture_output=True, timeout=HANG_S)
    log = (home / "serve.log").read_text()
    assert RAY_STARTUP_TIMED_OUT in log and "starting again (2 of 3)" in log, log[-3000:]
    assert ended(int(held.read_text()))  # the held raylet went with the process that gave up


@pytest.mark.shared_data
def test_real_label_studio_export_through_the_cli(service, tmp_path):
    export = shared_file("labelstudio_export", "street_ninja_project-1-at-2025-01-24-22-16-54047e52.json")
    config = tmp_path / "c.xml"
    config.write_text(
        '<View><Labels name="label" toName="text"><Label value="RESOURCE"/><Label value="ADDRESS"/>'
        '</Labels><Text name="text" value="$text"/></View>'
    )
    name = "ls" + uuid.uuid4().hex[:6]
    service.cli("project", "create", name, "--config", str(config), token=service.token)
    service.cli("import", name, str(export), token=service.token)
    answer = json.loads(service.cli("select", name, "--json", token=service.token).stdout)
    counts = answer["label_counts"]["ner"]
    assert answer["tasks_selected"] == 102
    assert sum(counts["RESOURCE"].values()) == 103 and sum(counts["ADDRESS"].values()) == 102


def test_unknown_role_over_http_is_rejected_naming_the_member(service):
    project = new_project(service)
    with service.client() as http:
        answer = http.put(f"/api/projects/{project}/members", json={"set": [{"username": "zoe", "role": "boss"}]})
    assert answer.status_code == 422 and "member 'zoe': role 'boss'" in answer.json()["detail"]
