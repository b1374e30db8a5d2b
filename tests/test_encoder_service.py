"""Encoders through the service: registered with `labtrain embeddings add` (six tiny architectures),
listed with their facts, offered by the options route for the types they train, trained with
`--embeddings NAME` (NER and classification) and served with exact offsets; bad sources refused
with a 4xx that names the fault, nothing registered and nothing left in the home; removal refused
while a model trained on the encoder is deployed."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.test_service import new_user
from tests.test_training_service import wait
from tests.tiny_encoders import KINDS, build
from tests.trainer_data import CONFIG, toy_tasks

NAMES = ["Łukasz", "Zoë", "Søren", "Jürgen", "Åsa", "Çağla", "Dvořák", "Ólafur"]
CITIES = ["Zürich", "Kraków", "Malmö", "Łódź", "Reykjavík", "Besançon", "Straßburg", "Cádiz"]


@pytest.fixture(scope="module")
def world(service, tmp_path_factory) -> dict:
    """A project of far-from-ASCII names and places, and the six tiny encoders registered from the CLI."""
    project = "enc" + uuid.uuid4().hex[:8]
    tasks = toy_tasks(60, names=NAMES, cities=CITIES)
    with service.client() as http:
        assert http.post("/api/projects", json={"name": project, "config": CONFIG}).status_code == 201
        assert http.post(f"/api/projects/{project}/import", content=json.dumps(tasks)).status_code == 200
    folder = tmp_path_factory.mktemp("sources")
    texts = [t["data"]["text"] for t in tasks]
    names = {kind: f"{kind}-{uuid.uuid4().hex[:6]}" for kind in KINDS}
    for kind in KINDS:
        source = build(kind, folder / kind, texts)
        done = service.cli("embeddings", "add", names[kind], str(source), "--language", "pl", "--language", "de")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"registered {names[kind]}: "), done.stdout
        assert f"train with --embeddings {names[kind]}" in done.stdout
    return {"project": project, "names": names, "folder": folder, "texts": texts}


def test_six_architectures_are_listed_with_their_facts_and_offered_for_the_types_they_train(service, world):
    listed = json.loads(service.cli("embeddings", "list", "--json").stdout)
    assert {"minilm", "bilstm", "minilm_words"} <= {e["name"] for e in listed["built_in"]}
    registered = {e["name"]: e for e in listed["registered"]}
    for name in world["names"].values():
        e = registered[name]
        assert (e["hidden_size"], e["layers"], e["max_length"], e["languages"]) == (32, 2, 128, ["pl", "de"])
        assert e["types"] == ["ner", "assertion", "classification", "relation"] and "location" not in e
    assert registered[world["names"]["xlm_roberta"]]["tokenizer"] == "Unigram"
    assert registered[world["names"]["distilbert"]]["cased"] is False
    text = service.cli("embeddings", "list").stdout
    assert "registered" in text and "XLMRobertaModel (xlm-roberta)" in text
    with service.client() as http:
        options = http.get(f"/api/projects/{world['project']}/training/options").json()
    by_type = {t["type"]: [e["name"] for e in t["embeddings"]] for t in options["types"]}
    for training_type in ("ner", "classification", "assertion", "relation"):
        assert set(world["names"].values()) <= set(by_type[training_type]), training_type
    ner = next(t for t in options["types"] if t["type"] == "ner")
    option = next(e for e in ner["embeddings"] if e["name"] == world["names"]["roberta"])
    assert option["registered"]["architecture"] == "RobertaModel" and option["defaults"]["learning_rate"] == 1e-4
    spark = next(b for b in ner["backends"] if b["name"] == "sparknlp")
    assert not set(world["names"].values()) & {e["name"] for e in spark["embeddings"]}  # Spark NLP: its own


@pytest.mark.parametrize("kind", ["xlm_roberta", "distilbert"])
def test_ner_and_classification_train_with_a_registered_encoder_and_serve_exact_offsets(service, world, kind):
    name = world["names"][kind]
    # a random 32-wide encoder learns at ten times a pretrained one's rate; the rest is the recipe's
    done = service.cli(
        "train", world["project"], "--type", "ner", "--type", "classification", "--embeddings", name,
        "--learning-rate", "1e-3", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with service.client() as http:
        training = wait(http, json.loads(done.stdout)["id"])
        assert training["status"] == "succeeded", training
        jobs = {j["type"]: j for j in training["jobs"]}
        assert {j["embeddings"] for j in jobs.values()} == {name}
        assert jobs["ner"]["metrics"]["micro"]["f1"] > 0.5
        text = "Dvořák lives in Kraków and travels often ."
        answer = http.post(f"/api/models/{jobs['ner']['model_name']}/predict", json={"texts": [text]})
        assert answer.status_code == 200, answer.text
        (found,) = answer.json()["results"]
        assert found and all(text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"] for r in found)
        info = http.get(f"/api/models/{jobs['classification']['model_name']}").json()
    assert info["embeddings"] == name
    from transformers import pipeline

    tagger = pipeline("token-classification", model=jobs["ner"]["output_dir"] + "/model", aggregation_strategy="simple")
    assert all(0 <= e["start"] <= e["end"] <= len(text) for e in tagger(text))


def test_bad_sources_are_refused_naming_the_fault_and_register_nothing(service, world, tmp_path):
    before = json.loads(service.cli("embeddings", "list", "--json").stdout)["registered"]
    gpt2 = build("gpt2", tmp_path / "gpt2", world["texts"])
    untokenized = build("bert_cased", tmp_path / "bare", world["texts"])
    (untokenized / "tokenizer.json").unlink()
    (untokenized / "tokenizer_config.json").unlink()
    cases = [
        (str(tmp_path / "nowhere"), 404, "no such folder"),
        (str(untokenized), 422, "holds no tokenizer"),
        (str(gpt2), 422, "GPT2LMHeadModel (model_type 'gpt2') is a decoder"),
        ("FacebookAI/xlm-roberta-base", 422, "the Hugging Face hub cannot be reached"),
        ("ftp://example.org/model", 422, "scheme 'ftp' is not one of"),
    ]
    with service.client() as http:
        for source, status, words in cases:
            answer = http.post("/api/embeddings", json={"name": "bad" + uuid.uuid4().hex[:6], "source": source})
            assert answer.status_code == status, (source, answer.text)
            assert words in answer.json()["detail"] and "Traceback" not in answer.text
        taken = http.post("/api/embeddings", json={"name": world["names"]["roberta"], "source": str(gpt2)})
        assert taken.status_code == 409 and "registered already" in taken.json()["detail"]
        own = http.post("/api/embeddings", json={"name": "minilm", "source": str(gpt2)})
        assert own.status_code == 409 and "labtrain's own" in own.json()["detail"]
    refused = service.cli("embeddings", "add", "writer", str(gpt2))
    assert refused.returncode == 1 and "is a decoder" in refused.stderr and "Traceback" not in refused.stderr
    after = json.loads(service.cli("embeddings", "list", "--json").stdout)["registered"]
    assert after == before
    assert not any((service.home / "encoders" / ".incoming").iterdir())  # nothing half-copied stays


def test_only_a_projects_owner_or_manager_registers_and_removal_waits_for_the_deployed_model(service, world):
    nobody, token = new_user(service)
    source = world["folder"] / "electra"
    with service.client(token) as http:
        answer = http.post("/api/embeddings", json={"name": "mine", "source": str(source)})
        assert answer.status_code == 403 and nobody in answer.json()["detail"]
        assert http.get("/api/embeddings").status_code == 200  # every user lists them
    name = world["names"]["electra"]
    with service.client() as http:
        training = http.post(
            f"/api/projects/{world['project']}/trainings",
            json={"types": ["ner"], "embeddings": name, "deploy": True, "params": {"epochs": 1}},
        ).json()
        done = wait(http, training["id"])
        assert done["status"] == "succeeded", done
        refused = http.delete(f"/api/embeddings/{name}")
        assert refused.status_code == 409 and done["jobs"][0]["model_name"] in refused.json()["detail"]
    removed = service.cli("embeddings", "remove", world["names"]["deberta_v2"])
    assert removed.returncode == 0, removed.stderr
    assert not list((service.home / "encoders").glob(world["names"]["deberta_v2"] + "-*"))
    gone = service.cli("embeddings", "show", world["names"]["deberta_v2"])
    assert gone.returncode == 1 and "no encoder" in gone.stderr


def test_a_projects_language_picks_a_registered_encoder_or_warns_and_trains_the_bilstm(service, world):
    with service.client() as http:
        for language in ("pl", "es"):
            project = f"{language}{uuid.uuid4().hex[:8]}"
            assert (
                http.post("/api/projects", json={"name": project, "config": CONFIG, "language": language}).status_code
                == 201
            )
            http.post(f"/api/projects/{project}/import", content=json.dumps(toy_tasks(20)))
            options = http.get(f"/api/projects/{project}/training/options").json()["types"]
            offered = {t["type"]: (t["default_embeddings"], t["default_note"]) for t in options}
            done = service.cli("train", project, "--type", "ner", "--type", "classification")
            assert done.returncode == 0, done.stderr
            training_id = int(re.search(r"labtrain status (\d+)", done.stdout).group(1))
            http.post(f"/api/trainings/{training_id}/cancel")
            training = http.get(f"/api/trainings/{training_id}").json()
            chosen = {j["type"]: j["embeddings"] for j in training["jobs"]}
            notes = training["request"]["embeddings_notes"]
            if language == "pl":  # every tiny encoder says it serves pl: the first by name
                assert chosen == {"ner": min(world["names"].values()), "classification": min(world["names"].values())}
                assert notes == {} and "warning" not in done.stderr
                assert offered["ner"] == (chosen["ner"], None)
            else:
                assert chosen == {"ner": "bilstm", "classification": "minilm"}
                assert set(notes) == {"ner", "classification"}
                assert "warning: ner: no registered encoder serves the project's language 'es'" in done.stderr
                assert offered["ner"] == ("bilstm", notes["ner"])  # the Train page preselects it and says why
