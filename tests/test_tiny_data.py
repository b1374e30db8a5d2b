"""Every trainer on the tiny data the data check lets through, with nothing set but what a test
is about: one task, one example per class, a label of the config without a training example, no
test part. Each trains a model that loads and predicts; none fails with a library's message.
(What the data check refuses: test_data_check.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.trainer_data import CONFIG, MULTI_CONFIG, build_snapshot, multi_tasks, toy_tasks
from tests.visual_data import CONFIG as FORM_CONFIG
from tests.visual_data import write_export
from trainers.data_check import check_training_data
from trainers.predict import load
from trainers.recipes import SMALL_BELOW, small_data_schedule
from trainers.run import run

# the config's labels, each type with one more the data never uses
WITH_UNUSED = CONFIG.replace('<Label value="LOC"/>', '<Label value="LOC"/><Label value="ORG"/>').replace(
    '<Choice value="health"/>', '<Choice value="health"/><Choice value="sport"/>'
)
LABELS = {
    "ner": ["PER", "LOC", "ORG"],
    "classification": ["travel", "health", "sport"],
    "assertion": ["Present", "Absent"],
    "relation": ["lives_in"],
}


def snapshot(tmp_path: Path, tasks: list[dict], config: str = WITH_UNUSED) -> dict:
    """A real snapshot with no test part (split 0), checked as the service checks it first."""
    paths = build_snapshot(tmp_path / "home", config, tasks, split=0.0)
    return paths


def trained(kind: str, path: str, out: Path, labels: list[str], **spec) -> object:
    check = check_training_data(kind, labels, pq.read_table(path).to_pylist(), spec.get("multiple", False))
    assert check.refusal is None, check.refusal
    assert any("the test part is empty" in n for n in check.notes)
    result = run({"type": kind, "snapshot": path, "output_dir": str(out), "labels": labels, **spec})
    assert "note: the snapshot has no test split; no test metrics" in Path(result.log_path).read_text()
    assert (out / "labtrain.json").exists()
    return load(out)


@pytest.mark.parametrize("embeddings", ["minilm", "bilstm"])
def test_ner_trains_on_one_task_with_a_label_it_never_saw(tmp_path, embeddings):
    paths = snapshot(tmp_path, toy_tasks(1))
    model = trained("ner", paths["ner"], tmp_path / "out", LABELS["ner"], embeddings=embeddings)
    [results] = model.predict(["Anna lives in Paris and travels often ."])
    assert {r["value"]["labels"][0] for r in results} <= {"PER", "LOC"}


@pytest.mark.parametrize("few_shot", [None, "off"])  # None: the default, which takes the few-shot path here
def test_single_choice_trains_on_one_example_per_class_with_a_class_it_never_saw(tmp_path, few_shot):
    paths = snapshot(tmp_path, toy_tasks(2))
    params = {"few_shot": few_shot} if few_shot else {}
    out = tmp_path / "out"
    model = trained("classification", paths["classification"], out, LABELS["classification"], params=params)
    head = json.loads((out / "labtrain.json").read_text())["head"]
    assert head == ("fine-tuned" if few_shot == "off" else "setfit")
    [[label]] = [[r["value"]["choices"][0] for r in rs] for rs in model.predict(["Greta lives in Oslo ."])]
    assert label in ("travel", "health")


def test_multiple_choice_trains_with_a_label_on_every_task_and_one_it_never_saw(tmp_path):
    config = MULTI_CONFIG.replace('<Choice value="skin"/>', '<Choice value="skin"/><Choice value="fever"/>')
    tasks = [t for i, t in enumerate(multi_tasks(3)) if i != 1]  # respiratory, respiratory + skin
    paths = snapshot(tmp_path, tasks, config)
    model = trained(
        "classification", paths["classification"], tmp_path / "out", ["respiratory", "skin", "fever"], multiple=True
    )
    [results] = model.predict(["Hugo reports a cough since May ."])
    assert all(set(r["value"]["choices"]) <= {"respiratory", "skin"} for r in results)


def test_assertion_trains_on_one_example_of_each_status(tmp_path):
    tasks = toy_tasks(6)[:4:2]  # two health notes
    tasks[0]["completions"][0]["result"][-1]["value"]["labels"] = ["Present"]
    tasks[1]["completions"][0]["result"][-1]["value"]["labels"] = ["Absent"]
    paths = snapshot(tmp_path, tasks)
    model = trained("assertion", paths["assertion"], tmp_path / "out", LABELS["assertion"])
    assert model.model.labels == ["Present", "Absent"]


def test_relation_trains_on_one_related_pair(tmp_path):
    paths = snapshot(tmp_path, toy_tasks(2)[1:])  # one travel note: PER lives_in LOC
    model = trained("relation", paths["relation"], tmp_path / "out", LABELS["relation"])
    assert "lives_in" in model.model.labels


def test_visual_ner_trains_on_two_pages_with_a_label_it_never_saw(tmp_path):
    export = write_export(tmp_path / "forms", 2, seed=3, ocr_every=1)  # words given: no Tesseract needed
    config = FORM_CONFIG.replace('<Label value="answer"/>', '<Label value="answer"/><Label value="signature"/>')
    from tests.test_visual_ner import snapshot_of

    path = snapshot_of(tmp_path / "home", export, config, split=0.0)
    out = tmp_path / "out"
    model = trained(
        "visual_ner",
        path,
        out,
        ["header", "question", "answer", "signature"],
        from_name="label",
        to_name="image",
        result_type="rectanglelabels",
    )
    assert "the model cannot predict them" in (out / "training.log").read_text()
    assert model is not None


def test_a_small_ner_training_part_gets_enough_steps_unless_the_request_chooses():
    assert small_data_schedule(30, 16, 4, frozenset()) == (4, 19)  # 8 steps would learn nothing
    assert small_data_schedule(300, 16, 4, frozenset()) == (4, 4)  # 300 steps already
    assert small_data_schedule(30, 16, 4, frozenset({"epochs"})) == (4, 4)
    assert small_data_schedule(30, 16, 4, frozenset({"batch_size"})) == (16, 20)  # 2 steps an epoch
    assert small_data_schedule(30, 16, 4, frozenset({"batch_size", "epochs"})) is None
    assert small_data_schedule(SMALL_BELOW, 16, 4, frozenset()) is None
    assert small_data_schedule(0, 16, 4, frozenset()) == (4, 20)


def test_ner_with_its_defaults_learns_from_a_few_dozen_tasks(tmp_path):
    """The recipe's 16 a batch and 4 epochs were chosen on thousands of sentences: on 24 tasks they
    made 8 steps and an F1 of 0 (the examples/ project did); the small-data schedule learns them."""
    paths = build_snapshot(tmp_path / "home", CONFIG, toy_tasks(24))
    result = run(
        {"type": "ner", "snapshot": paths["ner"], "output_dir": str(tmp_path / "out"), "labels": ["PER", "LOC"]}
    )
    log = Path(result.log_path).read_text()
    assert "small training part (" in log and "batch_size=4, epochs=" in log, log
    assert result.metrics["entity"]["micro"]["f1"] > 0.8, result.metrics["entity"]
