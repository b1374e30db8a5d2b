"""Access, route by route, from the service's own OpenAPI document: 401 without a valid token,
403 for a role below the route's (another project's member is no member), and no token in an
answer, a log or the catalog's files. Tokens are kept as sha256 hashes."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from storage.catalog import Catalog
from tests.test_service import new_user
from tests.test_training_service import toy_project

# Who may call each route: anyone, any user, a member of the project (any role), a manager or
# owner of the project, an administrator. A route missing here fails the first test.
LEAST = {
    ("GET", "/api/health"): "anyone",
    ("GET", "/api/me"): "user",
    ("GET", "/api/users"): "admin",
    ("POST", "/api/users"): "admin",
    ("GET", "/api/projects"): "user",
    ("POST", "/api/projects"): "user",
    ("GET", "/api/projects/{name}"): "member",
    ("GET", "/api/projects/{name}/config"): "member",
    ("PUT", "/api/projects/{name}/config"): "manager",
    ("GET", "/api/projects/{name}/members"): "member",
    ("PUT", "/api/projects/{name}/members"): "manager",
    ("POST", "/api/projects/{name}/import"): "manager",
    ("POST", "/api/projects/{name}/selection"): "member",
    ("POST", "/api/projects/{name}/snapshots"): "manager",
    ("POST", "/api/projects/{name}/scripts"): "manager",
    ("GET", "/api/projects/{name}/scripts"): "manager",
    ("GET", "/api/projects/{name}/scripts/{script}"): "manager",
    ("GET", "/api/projects/{name}/training/options"): "member",
    ("GET", "/api/projects/{name}/training/settings"): "member",
    ("PUT", "/api/projects/{name}/training/settings"): "manager",
    ("POST", "/api/projects/{name}/trainings"): "manager",
    ("GET", "/api/projects/{name}/trainings"): "member",
    ("GET", "/api/trainings/{training_id}"): "member",
    ("POST", "/api/trainings/{training_id}/cancel"): "manager",
    ("GET", "/api/trainings/{training_id}/logs"): "member",
    ("GET", "/api/trainings/{training_id}/logs/download"): "member",
    ("GET", "/api/trainings/{training_id}/curve.png"): "member",
    ("GET", "/api/models"): "user",
    ("GET", "/api/models/{name}"): "member",
    ("GET", "/api/models/{name}/benchmark"): "member",
    ("GET", "/api/models/{name}/confusion_matrix.png"): "member",
    ("POST", "/api/models/{name}/predict"): "member",
    ("GET", "/api/cluster"): "user",
    ("GET", "/api/embeddings"): "user",
    ("GET", "/api/embeddings/{name}"): "user",
    ("POST", "/api/embeddings"): "any manager",  # an owner or manager of some project, or an admin
    ("DELETE", "/api/embeddings/{name}"): "any manager",
    ("POST", "/api/projects/{name}/link"): "user",  # a new project's creator; a manager of an existing one
    ("GET", "/api/projects/{name}/link"): "member",
    ("DELETE", "/api/projects/{name}/link"): "manager",
    ("POST", "/api/projects/{name}/link/sync"): "manager",
    ("POST", "/api/projects/{name}/link/push"): "manager",
    # Label Studio's calls: HTTP basic auth with the link's backend password, no bearer token
    ("GET", "/ml/{name}/health"): "backend",
    ("POST", "/ml/{name}/setup"): "backend",
    ("GET", "/ml/{name}/versions"): "backend",
    ("POST", "/ml/{name}/predict"): "backend",
    ("POST", "/ml/{name}/webhook"): "backend",
}
RANK = {"anyone": 0, "user": 1, "member": 2, "manager": 3, "admin": 4, "backend": 5}
ANY_MANAGER = ("outsider", "manager")  # who passes "any manager": the outsider owns another project


@pytest.fixture(scope="module")
def world(service, trained_project):
    """The trained project (a finished training, its model and a script); an annotator and a
    manager of it, and a user who manages another project only."""
    project, training = trained_project["project"], trained_project["training"]
    users = {role: new_user(service) for role in ("annotator", "manager", "outsider")}
    with service.client() as http:
        http.put(
            f"/api/projects/{project}/members",
            json={
                "set": [
                    {"username": users["annotator"][0], "role": "annotator"},
                    {"username": users["manager"][0], "role": "manager"},
                ]
            },
        )
    other = toy_project(service, 5)
    with service.client() as http:
        http.put(f"/api/projects/{other}/members", json={"set": [{"username": users["outsider"][0], "role": "owner"}]})
    values = {"name": project, "training_id": str(training["id"]), "script": "s"}
    return {
        "project": project,
        "training": training,
        "model": trained_project["model"],
        "users": users,
        "values": values,
    }


def routes(service) -> list[tuple[str, str]]:
    with service.client(token=None) as http:
        spec = http.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]


def call(http, method: str, path: str, world: dict):
    values = dict(world["values"], name=world["model"] if path.startswith("/api/models/") else world["project"])
    url = path.format(**values)
    if url.endswith("/logs"):
        url += "?follow=false"
    body = {"content": b"{}"} if method in ("POST", "PUT") else {}
    return http.request(method, url, headers={"Content-Type": "application/json"}, **body)


def test_every_route_of_the_openapi_document_has_an_expected_role(service):
    assert sorted(routes(service)) == sorted(LEAST), "a route was added or removed: say who may call it in LEAST"


def test_without_a_valid_token_every_route_but_health_answers_401(service, world):
    for token in (None, "not-a-token", world["users"]["manager"][1] + "x"):
        with service.client(token=token) as http:
            for method, path in routes(service):
                answer = call(http, method, path, world)
                if LEAST[(method, path)] == "anyone":
                    assert answer.status_code == 200
                elif LEAST[(method, path)] == "backend":
                    assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
                    assert answer.headers["www-authenticate"].startswith("Basic")
                else:
                    assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
                    assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("who, rank", [("outsider", 1), ("annotator", 2), ("manager", 3)])
def test_a_role_below_the_routes_gets_403_and_one_at_or_above_it_gets_through(service, world, who, rank):
    """rank: what the caller is in the project (the outsider is only a user: it owns another one)."""
    name, token = world["users"][who]
    with service.client(token) as http:
        for method, path in routes(service):
            least = LEAST[(method, path)]
            answer = call(http, method, path, world)
            if least == "backend":  # no bearer token of any role opens Label Studio's routes
                assert answer.status_code == 401, (who, method, path, answer.status_code, answer.text)
            elif least == "any manager":
                expected_403 = who not in ANY_MANAGER
                assert (answer.status_code == 403) == expected_403, (who, method, path, answer.status_code, answer.text)
                assert answer.status_code != 401 and answer.status_code < 500, (who, method, path, answer.text)
            elif RANK[least] > rank:
                assert answer.status_code == 403, (who, method, path, answer.status_code, answer.text)
                assert name in answer.json()["detail"] or "administrator" in answer.json()["detail"]
            else:
                assert answer.status_code not in (401, 403), (who, method, path, answer.status_code, answer.text)
                assert answer.status_code < 500, (who, method, path, answer.text)


def test_no_token_in_answers_logs_or_catalog_files(service, world):
    tokens = [service.token] + [token for _, token in world["users"].values()]
    with service.client() as http:
        seen = [
            http.get("/api/users").text,
            http.get("/api/me").text,
            http.get(f"/api/projects/{world['project']}/trainings").text,
            http.get(f"/api/trainings/{world['training']['id']}/logs", params={"follow": False}).text,
            http.get(f"/api/trainings/{world['training']['id']}/logs/download").content.decode("latin-1"),
            http.get("/api/cluster").text,
            http.get(f"/api/models/{world['model']}/benchmark").text,
        ]
        assert not [u for u in http.get("/api/users").json() if "token" in u or "token_hash" in u]
    for text in seen:
        assert not [t for t in tokens if t in text]
    for path in Path(service.home).rglob("*"):
        if path.is_file() and path.name != "admin_token":  # the admin's own credentials file, mode 0600
            data = path.read_bytes()
            assert not [t for t in tokens if t.encode() in data], path
    assert (Path(service.home) / "admin_token").stat().st_mode & 0o077 == 0


def test_tokens_are_stored_as_sha256_hashes(tmp_path):
    catalog = Catalog(tmp_path / "home")
    try:
        token = catalog.create_user("ada" + uuid.uuid4().hex[:4])
        rows = catalog.con.execute("SELECT * FROM users").fetchall()
        assert not [r for r in rows if token in map(str, r)]
        hashes = [r[0] for r in catalog.con.execute("SELECT token_hash FROM users").fetchall()]
        assert hashlib.sha256(token.encode()).hexdigest() in hashes
        assert catalog.user_for_token(token) is not None and catalog.user_for_token(hashes[-1]) is None
    finally:
        catalog.close()
