"""Hostile input over HTTP against the running service: broken and fuzzed export files, configs
with a DTD (entity bombs, external entities), names and paths that try to lead out. Each gets a
4xx whose message says what is wrong, changes nothing, and never a 5xx."""

from __future__ import annotations

import copy
import json
import random
import uuid

import pytest

from tests.trainer_data import CONFIG, toy_tasks

VALID = toy_tasks(6)
BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<View><Labels name="label" toName="text"><Label value="&lol4;"/></Labels><Text name="text" value="$text"/></View>"""
XXE = """<?xml version="1.0"?><!DOCTYPE v [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<View><Labels name="label" toName="text"><Label value="&xxe;"/></Labels><Text name="text" value="$text"/></View>"""


def changed(edit) -> bytes:
    tasks = copy.deepcopy(VALID)
    edit(tasks)
    return json.dumps(tasks).encode()


def first_span(tasks: list) -> dict:
    return tasks[0]["completions"][0]["result"][0]


BAD_EXPORTS = [
    ("truncated", json.dumps(VALID).encode()[:200], "not valid JSON"),
    ("truncated at the last byte", json.dumps(VALID).encode()[:-1], "not valid JSON"),
    ("empty", b"", "not valid JSON"),
    ("not UTF-8", b"\xff\xfe\x00[", "not valid JSON"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("a number", b"42", "list of tasks"),
    ("data is a list", changed(lambda t: t[0].update(data=[])), "'data' is missing or not an object"),
    ("completions is an object", changed(lambda t: t[0].update(completions={})), "completions"),
    ("result is a string", changed(lambda t: t[0]["completions"][0].update(result="x")), "'result' must be a list"),
    ("task id is a float", changed(lambda t: t[0].update(id=1.5)), "task 'id'"),
    ("start is a string", changed(lambda t: first_span(t)["value"].update(start="0")), "start"),
    ("labels is a string", changed(lambda t: first_span(t)["value"].update(labels="PER")), "labels"),
    ("end past the text", changed(lambda t: first_span(t)["value"].update(end=10_000)), "past the end"),
    ("negative start", changed(lambda t: first_span(t)["value"].update(start=-3)), "start"),
    ("start after end", changed(lambda t: first_span(t)["value"].update(start=9, end=2)), "start"),
    (
        "unknown label",
        changed(lambda t: first_span(t)["value"].update(labels=["NOPE"])),
        "label 'NOPE' of 'label' is not in the labeling config",
    ),
    (
        "huge label",
        changed(lambda t: first_span(t)["value"].update(labels=["X" * 1_000_000])),
        "is not in the labeling config",
    ),
    (
        "huge text, span out of range",
        changed(
            lambda t: (
                t[0]["data"].update(text="a" * 3_000_000),
                first_span(t)["value"].update(start=3_000_001, end=3_000_005),
            )
        ),
        "past the end",
    ),
    ("image path", changed(lambda t: t[0]["data"].update(image="/etc/passwd")), "not a data URI"),
    (
        "image path leading out",
        changed(lambda t: t[0]["data"].update(image="../../../../etc/passwd")),
        "not a data URI",
    ),
]


@pytest.fixture(scope="module")
def project(service) -> str:
    name = "h" + uuid.uuid4().hex[:8]
    with service.client() as http:
        assert http.post("/api/projects", json={"name": name, "config": CONFIG}).status_code == 201
        assert http.post(f"/api/projects/{name}/import", content=json.dumps(VALID)).status_code == 200
    return name


def state(http, project: str) -> tuple:
    p = http.get(f"/api/projects/{project}").json()
    return p["tasks"], p["completions"], p["submitted_completions"], http.get(f"/api/projects/{project}/config").text


@pytest.mark.parametrize("name, payload, words", BAD_EXPORTS, ids=[b[0] for b in BAD_EXPORTS])
def test_a_broken_export_gets_422_naming_the_fault_and_changes_nothing(service, project, name, payload, words):
    with service.client() as http:
        before = state(http, project)
        answer = http.post(f"/api/projects/{project}/import", content=payload)
        assert answer.status_code == 422, (answer.status_code, answer.text[:300])
        assert words in answer.json()["detail"], answer.json()["detail"][:300]
        assert len(answer.content) < 20_000  # a huge input is not echoed back whole
        assert state(http, project) == before


def test_overlapping_spans_are_nested_annotations_and_import(service, project):
    """Label Studio allows nested entities; BIO tagging takes the longer span (see trainers.text)."""

    def overlap(tasks):
        text = tasks[0]["data"]["text"]
        tasks[0]["completions"][0]["result"].append(
            {
                "id": "o",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {"start": 0, "end": len(text.split()[0]) + 6, "labels": ["LOC"]},
            }
        )

    with service.client() as http:
        assert http.post(f"/api/projects/{project}/import", content=changed(overlap)).status_code == 200


def test_fuzzed_exports_get_200_or_422_never_a_5xx_and_a_422_changes_nothing(service, project):
    """200 seeded mutations of a valid export: bytes flipped, cut or repeated; values swapped for
    values of other types."""
    rng = random.Random(7)
    raw = json.dumps(VALID).encode()
    values = [None, True, -1, 2**70, 1.5, "", "x" * 10_000, [], {}, [1, "a"], {"start": "0"}]
    statuses: dict[int, int] = {}
    with service.client() as http:
        for _ in range(200):
            if rng.random() < 0.5:
                data = bytearray(raw)
                for _ in range(rng.randint(1, 5)):
                    i = rng.randrange(len(data))
                    choice = rng.random()
                    if choice < 0.4:
                        data[i] = rng.randrange(256)
                    elif choice < 0.7:
                        del data[i : i + rng.randint(1, 50)]
                    else:
                        data[i:i] = data[i : i + rng.randint(1, 50)]
                payload = bytes(data)
            else:
                tasks = copy.deepcopy(VALID)
                node, key = _random_slot(tasks, rng)
                node[key] = rng.choice(values)
                payload = json.dumps(tasks).encode()
            before = state(http, project)
            answer = http.post(f"/api/projects/{project}/import", content=payload)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code in (200, 422), (answer.status_code, answer.text[:300], payload[:300])
            if answer.status_code == 422:
                assert answer.json()["detail"] and state(http, project) == before
    assert statuses.get(422, 0) > 50, statuses


def _random_slot(tree, rng: random.Random):
    """A random (container, key) somewhere inside a JSON tree."""
    node = tree
    while True:
        keys = list(range(len(node))) if isinstance(node, list) else list(node)
        key = rng.choice(keys)
        child = node[key]
        if not isinstance(child, (list, dict)) or not child or rng.random() < 0.3:
            return node, key
        node = child


@pytest.mark.parametrize("xml, words", [(BOMB, "DOCTYPE"), (XXE, "DOCTYPE"), ("<View>" * 50_000, "not valid XML")])
def test_configs_with_entity_bombs_or_external_entities_are_refused(service, project, xml, words):
    with service.client() as http:
        name = "x" + uuid.uuid4().hex[:8]
        answer = http.post("/api/projects", json={"name": name, "config": xml})
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text[:300]
        assert http.get(f"/api/projects/{name}").status_code == 404
        before = state(http, project)
        answer = http.put(f"/api/projects/{project}/config", json={"config": xml})
        assert answer.status_code == 422 and words in answer.json()["detail"]
        assert state(http, project) == before and "root:" not in answer.text


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/api/projects", {"name": "../escape", "config": CONFIG}),
        ("POST", "/api/projects", {"name": "a/b", "config": CONFIG}),
        ("POST", "/api/projects/{p}/scripts", {"name": "../../x", "source": "print(1)"}),
        ("POST", "/api/projects/{p}/scripts", {"name": "x/..", "source": "print(1)"}),
        ("GET", "/api/models/..%2F..%2Fcatalog.duckdb", None),
        ("GET", "/api/projects/{p}/scripts/..%2F..%2Fadmin_token", None),
    ],
)
def test_names_that_lead_out_of_their_folder_are_refused(service, project, method, path, body):
    with service.client() as http:
        answer = http.request(method, path.format(p=project), json=body)
        assert answer.status_code in (404, 422), (answer.status_code, answer.text)
        assert service.token not in answer.text
