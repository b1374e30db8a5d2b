"""Any encoder a user has: six tiny random encoders of real architectures (word pieces cased and
uncased, byte-level BPE, unigram sentencepiece; with and without token types) are checked and
described, train NER and classification through the trainers' defaults, and reload with
`transformers.pipeline` with exact character offsets on text far from ASCII. Bad sources are
refused naming what is wrong."""

from __future__ import annotations

import json
import os
import unicodedata

import pytest

from labtrain.errors import NotFound, ValidationError
from ray_app.encoder_registry import fetch
from tests.tiny_encoders import KINDS, build
from tests.trainer_data import CONFIG, build_snapshot, toy_tasks
from trainers.encoders import describe
from trainers.predict import load
from trainers.run import run

# names and places far from ASCII: a tokenizer that lowercases, strips accents or splits bytes must
# still give each word back at its exact offsets
NAMES = ["Łukasz", "Zoë", "Søren", "Jürgen", "Åsa", "Çağla", "Dvořák", "Ólafur"]
CITIES = ["Zürich", "Kraków", "Malmö", "Łódź", "Reykjavík", "Besançon", "Straßburg", "Cádiz"]
EXPECTED = {  # model_type, tokenizer model, cased, token types
    "bert_cased": ("bert", "WordPiece", True, True),
    "roberta": ("roberta", "BPE", True, False),
    "xlm_roberta": ("xlm-roberta", "Unigram", True, False),
    "deberta_v2": ("deberta-v2", "Unigram", True, False),
    "distilbert": ("distilbert", "WordPiece", False, False),
    "electra": ("electra", "WordPiece", True, True),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("encoders")
    tasks = toy_tasks(60, names=NAMES, cities=CITIES)
    return {"home": home, "texts": [t["data"]["text"] for t in tasks], "snapshots": build_snapshot(home, CONFIG, tasks)}


def registered(kind: str, project: dict):
    folder = build(kind, project["home"] / "sources" / kind, project["texts"])
    return describe(kind, fetch(kind, str(folder), project["home"] / "kept" / kind), str(folder))


def plain(text: str) -> str:
    """Lower case without accents: what an uncased tokenizer's word still matches."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


@pytest.mark.parametrize("kind", KINDS)
def test_each_architecture_trains_ner_and_classification_and_reloads_with_exact_offsets(kind, project, tmp_path):
    encoder = registered(kind, project)
    assert (encoder.model_type, encoder.tokenizer, encoder.cased, encoder.token_types) == EXPECTED[kind]
    assert encoder.hidden_size == 32 and encoder.layers == 2 and encoder.max_length == 128
    assert encoder.parameters > 10_000 and len(encoder.sha256) == 64

    def train(training_type: str, labels: list[str], params: dict) -> dict:
        out = tmp_path / training_type
        spec = {"type": training_type, "snapshot": project["snapshots"][training_type], "output_dir": str(out)}
        run({**spec, "labels": labels, "embeddings": kind, "encoder": encoder.model_dump(), "params": params})
        return json.loads((out / "labtrain.json").read_text())

    # a random 32-wide encoder learns at a pretrained one's ten times the rate: the rate is what makes
    # it learn here, everything else is the recipe's
    info = train("ner", ["PER", "LOC"], {"learning_rate": 1e-3})
    assert info["encoder"]["name"] == kind and info["encoder"]["model_type"] == encoder.model_type
    metrics = json.loads((tmp_path / "ner" / "metrics.json").read_text())
    assert metrics["entity"]["micro"]["f1"] > 0.8, metrics["entity"]
    log = (tmp_path / "ner" / "training.log").read_text()
    assert f"model: {kind} ({encoder.architecture}" in log
    assert "small training part" in log  # the recipe's schedule for small data, as with MiniLM
    assert ("word casing" in log) == (not encoder.cased and encoder.token_types)

    text = "Dvořák lives in Kraków and travels often . Zoë has fever in Straßburg ."
    (found,) = load(tmp_path / "ner").predict([text])
    spans = {(r["value"]["text"], r["value"]["labels"][0]) for r in found}
    assert all(text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"] for r in found)
    gold = {("Dvořák", "PER"), ("Kraków", "LOC"), ("Zoë", "PER"), ("Straßburg", "LOC")}
    assert len(spans & gold) >= 2, spans  # a tiny random encoder may miss some
    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(tmp_path / "ner" / "model"), aggregation_strategy="simple")
    longer = text + " 😀 Łódź"
    entities = tagger(longer)
    assert entities
    for e in entities:  # a lone "▁" or byte-level space piece decodes to nothing: its offsets name no word
        word = e["word"].replace("##", "").replace("▁", "").strip()
        assert 0 <= e["start"] <= e["end"] <= len(longer)
        assert not word or plain(longer[e["start"] : e["end"]].strip()) == plain(word), e

    info = train("classification", ["travel", "health"], {})  # tiny data: the few-shot path, as users get it
    assert info["head"] == "setfit"
    model = load(tmp_path / "classification")
    assert model.model.max_length == 128
    (predicted,) = model.predict(["Søren lives in Malmö and travels often ."])
    assert predicted[0]["value"]["choices"][0] in ("travel", "health")


def test_a_missing_folder_a_folder_without_tokenizer_and_a_decoder_are_refused_by_name(project, tmp_path):
    with pytest.raises(NotFound, match=r"encoder 'gone': no such folder .*/nowhere"):
        fetch("gone", str(tmp_path / "nowhere"), tmp_path / "a")
    folder = build("bert_cased", tmp_path / "no-tokenizer", project["texts"])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(ValidationError, match=r"encoder 'bare' .*holds no tokenizer"):
        describe("bare", fetch("bare", str(folder), tmp_path / "b"), str(folder))
    gpt2 = build("gpt2", tmp_path / "gpt2", project["texts"])
    with pytest.raises(ValidationError, match=r"GPT2LMHeadModel \(model_type 'gpt2'\) is a decoder"):
        describe("writer", fetch("writer", str(gpt2), tmp_path / "c"), str(gpt2))
    weightless = build("roberta", tmp_path / "weightless", project["texts"])
    (weightless / "model.safetensors").unlink()
    with pytest.raises(ValidationError, match=r"holds no weights \(model.safetensors or pytorch_model.bin\)"):
        describe("empty", fetch("empty", str(weightless), tmp_path / "d"), str(weightless))


def test_a_hub_id_is_refused_offline_with_what_to_do_instead(tmp_path):
    with pytest.raises(ValidationError) as refused:
        fetch("xlmr", "FacebookAI/xlm-roberta-base", tmp_path / "hub")
    assert "'FacebookAI/xlm-roberta-base' cannot be fetched: the Hugging Face hub cannot be reached" in str(
        refused.value
    )
    assert "add its folder" in str(refused.value)
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.safetensors"))


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from tests.ray_cluster import S3Server, versitygw

    binary = versitygw()
    if binary is None:
        pytest.skip("no S3 server (versitygw, built by `.ci/setup --test`)")
    server = S3Server(tmp_path_factory.mktemp("s3")).start(binary)
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def test_an_encoder_in_the_artifact_store_is_fetched_and_a_missing_key_is_refused(s3, project, tmp_path):
    from pyarrow import fs

    from storage.artifacts import open_uri

    folder = build("xlm_roberta", tmp_path / "xlmr", project["texts"])
    store, path = open_uri(s3.uri("encoders/xlmr"))
    store.create_dir(path, recursive=True)
    fs.copy_files(str(folder), path, source_filesystem=fs.LocalFileSystem(), destination_filesystem=store)
    fetched = fetch("xlmr", s3.uri("encoders/xlmr"), tmp_path / "from-s3")
    assert describe("xlmr", fetched, s3.uri("encoders/xlmr")).model_type == "xlm-roberta"
    with pytest.raises(NotFound, match=r"encoder 'lost': s3://labtrain/encoders/nothing-here.* holds no model files"):
        fetch("lost", s3.uri("encoders/nothing-here"), tmp_path / "lost")


def test_a_projects_language_picks_its_default_embeddings_and_says_when_it_is_a_makeshift():
    from labtrain.encoders import Encoder
    from trainers.embeddings import default_embeddings

    facts = {"source": "s", "location": "l", "sha256": "0" * 64, "model_type": "xlm-roberta", "architecture": "X"}
    sizes = {"tokenizer": "Unigram", "parameters": 1, "hidden_size": 384, "layers": 12, "max_length": 512}
    flags = {"cased": True, "token_types": False}
    e5 = Encoder(name="e5", languages=["multilingual"], **facts, **sizes, **flags)
    beto = Encoder(name="beto", languages=["es"], **facts, **sizes, **flags)
    assert default_embeddings("ner", "pytorch", "en", [e5]) == ("minilm", None)
    assert default_embeddings("ner", "pytorch", "de", [e5, beto]) == ("e5", None)
    assert default_embeddings("ner", "pytorch", "es", [e5, beto]) == ("beto", None)  # it names the language
    assert default_embeddings("classification", "sparknlp", "es", [e5]) == ("minilm_words", None)
    name, note = default_embeddings("ner", "pytorch", "es", [])
    assert name == "bilstm" and "no registered encoder serves the project's language 'es'" in note
    assert "labtrain embeddings add NAME FOLDER --language es" in note
    name, note = default_embeddings("classification", "pytorch", "ro", [])
    assert name == "minilm" and "trained on English" in note
    assert default_embeddings("visual_ner", "pytorch", "de", [e5])[0] == "minilm"  # Visual NER: its own recipe
