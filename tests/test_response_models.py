"""Every route documents its answer: a response model (a JSON schema), or the media type of an
answer that is not JSON. And the catalog's records fit their models without losing a field
(FastAPI filters an answer through its model: an undeclared field would vanish from it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from ray_app.api.answers import (
    Benchmark,
    LinkShown,
    ModelDetail,
    ModelPublic,
    ScriptPublic,
    ScriptSource,
    SelectionPreview,
    SnapshotPublic,
    SyncPublic,
    TrainingPublic,
    TrainingSettingsPublic,
    UserPublic,
)
from ray_app.api.models import ImportPublic, MemberPublic, ProjectPublic
from storage.selection import SelectionParams
from tests.trainer_data import CONFIG, toy_tasks


def openapi_document() -> dict:
    """The app's own document, built without starting Ray or Serve (importing them starts nothing)."""
    from ray_app.api.app import app

    return app.openapi()


def is_json(media_type: str) -> bool:
    main, _, sub = media_type.partition(";")[0].strip().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def test_every_route_documents_a_success_answer_with_its_schema_or_media_type():
    faults = []
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            route = f"{method.upper()} {path}"
            success = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
            if not success:
                faults.append(f"{route}: no 2xx answer documented")
            for code, response in success.items():
                content = response.get("content") or {}
                if code == "204":
                    if content:
                        faults.append(f"{route}: a 204 answer documents a body ({', '.join(content)})")
                    continue
                if not content:
                    faults.append(f"{route}: its {code} answer documents no media type")
                for media_type, entry in content.items():
                    if is_json(media_type) and not entry.get("schema"):
                        faults.append(
                            f"{route}: its {code} {media_type} answer has no schema (declare a response_model, "
                            "or the response_class and media type of an answer that is not JSON)"
                        )
    assert not faults, "\n".join(faults)


def test_every_documented_422_answer_admits_a_domain_error():
    """A domain error (`labtrain.errors`, 422) answers {"detail": "a sentence", "error": kind}: FastAPI's
    own 422 schema (a list of validation errors) would not fit it, so a route documents `REJECTED`."""
    faults = []
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            rejected = operation["responses"].get("422")
            if rejected is None:
                continue
            schema = rejected.get("content", {}).get("application/json", {}).get("schema", {})
            if not schema.get("$ref", "").endswith("/RejectedRequest"):
                faults.append(f"{method.upper()} {path}: its 422 answer is {schema} (declare responses=REJECTED)")
    assert not faults, "\n".join(faults)


def test_the_document_names_each_response_model_it_refers_to():
    document = openapi_document()
    named = set(document["components"]["schemas"])
    missing = sorted({ref.rsplit("/", 1)[-1] for ref in _refs(document)} - named)
    assert not missing, f"referred to but not in components.schemas: {missing}"


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if isinstance(node.get("$ref"), str) else []) + [
            r for v in node.values() for r in _refs(v)
        ]
    return [r for v in node for r in _refs(v)] if isinstance(node, list) else []


# --- the catalog's records against their models -------------------------------------------------


def kept_whole(model: type[BaseModel], record) -> None:
    """The record validates against the model (else FastAPI answers 500), and its answer keeps
    every field of the record, nested ones included."""
    if isinstance(record, list):
        answers = [model.model_validate(r).model_dump() for r in record]
    else:
        record, answers = [record], [model.model_validate(record).model_dump()]
    for original, answer in zip(record, answers):
        lost = _lost(original, answer, model.__name__)
        assert not lost, f"{model.__name__} drops fields of the record: {lost}"


def _lost(original, answer, where: str) -> list[str]:
    if isinstance(original, dict) and isinstance(answer, dict):
        lost = [f"{where}.{k}" for k in original if k not in answer]
        return lost + [x for k in original if k in answer for x in _lost(original[k], answer[k], f"{where}.{k}")]
    if isinstance(original, list) and isinstance(answer, list):
        return [x for i, (o, a) in enumerate(zip(original, answer)) for x in _lost(o, a, f"{where}[{i}]")]
    return []


@pytest.fixture
def history(catalog):
    """A project with an import, a finished training (its model, metrics and confusion matrix), a
    second version of the model, a script and a Label Studio link."""
    catalog.create_project("toy", CONFIG, "en", "owner1")
    imported = catalog.import_file("toy", json.dumps(toy_tasks(30)).encode(), "owner1")
    catalog.set_training_settings("toy", True, {"enabled": True, "every": 5})
    request = {
        "types": ["ner", "classification"],
        "embeddings": {"ner": "bilstm", "classification": "minilm"},
        "params": {"epochs": 1},
        "selection": {},
        "deploy": True,
        "gpu": False,
    }
    trainings = [catalog.create_training("toy", request, "owner1") for _ in range(2)]
    for training in trainings:
        for job in training["jobs"]:
            out = Path(job["output_dir"])
            out.mkdir(parents=True, exist_ok=True)
            metrics = {"type": job["type"], "micro": {"f1": 0.9}, "macro": {"f1": 0.8}, "per_label": {}}
            (out / "metrics.json").write_text(json.dumps(metrics))
            (out / "confusion_matrix.json").write_text(json.dumps({"labels": ["a", "b"], "matrix": [[1, 0], [0, 1]]}))
            catalog.update_job(job["job_id"], status="running", epoch=1, metrics={"f1": 0.5}, license="embedded")
            catalog.complete_job(job["job_id"], metrics)
    catalog.upload_script("toy", "s", "print(1)\n", "owner1")
    catalog.link_project("toy", "http://ls.example", 7, "ls-token", "http://labtrain/ml/toy", "owner1")
    catalog.synced("toy", 30)
    return {"catalog": catalog, "imported": imported, "training": trainings[-1]["id"]}


def test_the_catalogs_records_fit_their_response_models_whole(history):
    catalog = history["catalog"]
    training = catalog.training(history["training"])
    model = training["jobs"][0]["model_name"]
    detail = catalog.model(model, with_versions=True)
    detail["confusion_matrix"] = catalog.model_benchmark(model)["confusion_matrix"]
    mirrored = catalog.import_parsed("toy", *_parsed(toy_tasks(30)), "label studio", mirror=True)  # a sync's
    checks = [
        (UserPublic, catalog.list_users()),
        (ProjectPublic, catalog.project("toy")),
        (MemberPublic, catalog.members("toy")),
        (ImportPublic, history["imported"]),
        (SyncPublic, {**mirrored, "active_learning_training": None}),
        (SelectionPreview, catalog.select("toy", SelectionParams(), 5)),
        (SnapshotPublic, catalog.snapshot("toy", SelectionParams(validation_split=0.3))),
        (ScriptPublic, [{k: v for k, v in s.items() if k != "path"} for s in catalog.scripts("toy")]),
        (ScriptSource, {k: v for k, v in catalog.script_source("toy", "s").items() if k != "path"}),
        (TrainingSettingsPublic, catalog.training_settings("toy")),
        (TrainingPublic, catalog.trainings("toy")),
        (ModelPublic, catalog.models()),
        (ModelDetail, detail),
        (Benchmark, catalog.model_benchmark(model)),
        (LinkShown, {**catalog.link("toy"), "backend_state": None}),
    ]
    for model_class, record in checks:
        kept_whole(model_class, record)
    assert detail["versions"] and training["jobs"][0]["metrics"] and catalog.link("toy")["last_sync"]


def _parsed(tasks: list[dict]) -> tuple:
    import hashlib

    from storage.importers import parse_export

    raw = json.dumps(tasks).encode()
    return parse_export(raw), hashlib.sha256(raw).hexdigest()
