"""The data check a training request meets before any job exists: tiny and degenerate projects
(one class, one task, a label without a training example, a label only in the test part, no
training task, no test part) get a refusal naming the type and the labels, or notes. Real DuckDB
catalog, real snapshots; the trainings these let through are trained in test_tiny_data.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage.catalog import Catalog
from tests.conftest import choice, genai_completion, genai_task, span
from tests.trainer_data import CONFIG, MULTI_CONFIG, multi_tasks, toy_tasks
from trainers.data_check import check_snapshot, check_training_data
from trainers.dataset import TrainingDataError


def catalog_with(home: Path, config: str, tasks: list[dict]) -> Catalog:
    catalog = Catalog(home, data_check=check_snapshot)
    catalog.create_project("p", config, "en", "owner")
    catalog.import_file("p", json.dumps(tasks).encode())
    return catalog


def train(catalog: Catalog, types: list[str], **selection) -> dict:
    return catalog.create_training(
        "p", {"types": types, "embeddings": dict.fromkeys(types, "minilm"), "selection": selection}, "owner"
    )


def refused(catalog: Catalog, types: list[str], **selection) -> str:
    with pytest.raises(TrainingDataError) as refusal:
        train(catalog, types, **selection)
    assert catalog.trainings("p") == []  # before any job exists
    assert not any((catalog.home / "trainings").glob("*/snapshot")), "a refused training left its snapshot"
    return str(refusal.value)


def test_single_choice_with_one_class_in_the_training_part_is_refused_naming_the_type_and_class(tmp_path):
    travel_only = [t for i, t in enumerate(toy_tasks(12)) if i % 2]
    catalog = catalog_with(tmp_path / "home", CONFIG, travel_only)
    try:
        message = refused(catalog, ["ner", "classification"], validation_split=0.2)
        assert message.startswith("cannot train: classification (single choice): the training part has one class")
        assert "'travel'" in message and "health" in message
        assert "ner" not in message.split("cannot train: ")[1].split(":")[0]
    finally:
        catalog.close()


def test_assertion_without_any_status_and_relation_without_any_relation_are_refused(tmp_path):
    travel_only = [t for i, t in enumerate(toy_tasks(12)) if i % 2]  # lives_in everywhere, no status
    health_only = [t for i, t in enumerate(toy_tasks(12)) if not i % 2]  # statuses, no relation
    catalog = catalog_with(tmp_path / "travel", CONFIG, travel_only)
    try:
        message = refused(catalog, ["assertion"])
        assert "assertion: no entity in the training part" in message and "Present, Absent" in message
    finally:
        catalog.close()
    catalog = catalog_with(tmp_path / "health", CONFIG, health_only)
    try:
        message = refused(catalog, ["relation", "ner"])
        assert "relation: no relation in the training part" in message and "lives_in" in message
    finally:
        catalog.close()


def test_multiple_choice_with_one_class_is_refused_and_with_a_missing_class_trains_with_a_note(tmp_path):
    respiratory = [t for i, t in enumerate(multi_tasks(12)) if i % 3 == 0]
    catalog = catalog_with(tmp_path / "one", MULTI_CONFIG, respiratory)
    try:
        message = refused(catalog, ["classification"])
        assert "classification (multiple choice): the training part has one class, 'respiratory'" in message
    finally:
        catalog.close()
    three = MULTI_CONFIG.replace('<Choice value="skin"/>', '<Choice value="skin"/><Choice value="fever"/>')
    catalog = catalog_with(tmp_path / "three", three, multi_tasks(12))
    try:
        training = train(catalog, ["classification"], validation_split=0.25)
        (note,) = training["data"]["checks"]["classification"]["notes"]
        assert note == ("classification (multiple choice): no training example of 'fever': the model cannot predict it")
        assert training["data"]["checks"]["classification"]["labels"] == ["respiratory", "skin", "fever"]
        assert [j["type"] for j in training["jobs"]] == ["classification"]
    finally:
        catalog.close()


def test_a_label_only_in_the_test_part_is_named_with_its_test_examples(tmp_path):
    tasks = []
    for i in range(8):
        text = f"Anna met Bob in Paris on day {i} ."
        result = [span(text, "Anna", "PER"), choice("travel")] + ([span(text, "Paris", "LOC")] if i >= 6 else [])
        tasks.append(genai_task(i + 1, text, [genai_completion(100 + i, "a", result)], ["test"] if i >= 6 else []))
    config = CONFIG.replace('<Label value="LOC"/>', '<Label value="LOC"/><Label value="ORG"/>')
    catalog = catalog_with(tmp_path / "home", config, tasks)
    try:
        training = train(catalog, ["ner"], test_tag="test")
        check = training["data"]["checks"]["ner"]
        assert check["counts"]["LOC"] == {"train": 0, "test": 2} and check["counts"]["PER"]["train"] == 6
        assert check["notes"] == [
            "ner: no training example of 'LOC', 'ORG': the model cannot predict them; "
            "2 test example(s) of 'LOC' count as misses"
        ]
    finally:
        catalog.close()


def test_a_type_without_a_training_task_is_refused(tmp_path):
    tasks = [
        genai_task(i + 1, t["data"]["text"], [genai_completion(100 + i, "a", t["completions"][0]["result"])], ["test"])
        for i, t in enumerate(toy_tasks(4))
    ]
    catalog = catalog_with(tmp_path / "home", CONFIG, tasks)
    try:
        message = refused(catalog, ["ner"], test_tag="test")
        assert message == (
            "cannot train: ner: no task in the training part (4 selected, all in the test part); "
            "lower the validation split or tag tasks for training"
        )
    finally:
        catalog.close()


def test_one_task_in_all_trains_ner_with_a_note_and_refuses_what_needs_two_classes(tmp_path):
    catalog = catalog_with(tmp_path / "home", CONFIG, toy_tasks(1))
    try:
        for types, words in (
            (["classification"], "classification (single choice): the training part has one class, 'health'"),
            (["assertion"], "assertion: the training part has one class"),
            (["relation"], "relation: no relation in the training part"),
        ):
            assert words in refused(catalog, types)
        training = train(catalog, ["ner"])  # the default split keeps a lone task for training
        assert training["data"]["rows"] == {"ner": 1}
        assert training["data"]["checks"]["ner"]["notes"] == [
            "ner: the test part is empty: the model gets no test scores (raise the validation split, or tag "
            "tasks for test)"
        ]
    finally:
        catalog.close()


def test_an_empty_test_part_trains_with_a_note_for_every_type(tmp_path):
    catalog = catalog_with(tmp_path / "home", CONFIG, toy_tasks(10))
    try:
        training = train(catalog, ["ner", "classification", "assertion", "relation"], validation_split=0.0)
        for t, check in training["data"]["checks"].items():
            assert check["notes"] == [
                f"{'classification (single choice)' if t == 'classification' else t}: the test part is empty: "
                "the model gets no test scores (raise the validation split, or tag tasks for test)"
            ]
        assert len(training["jobs"]) == 4
    finally:
        catalog.close()


def test_visual_ner_needs_two_labelled_training_pages():
    region = {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["q"]}}
    one = [{"task_id": 1, "split": "train", "result": json.dumps([region])}, {"task_id": 2, "split": "train"}]
    check = check_training_data("visual_ner", ["q", "a"], one)
    assert check.refusal == (
        "visual_ner: too few completions: 1 task(s) of the training part have a labelled region; "
        "visual_ner needs at least 2"
    )
    two = one[:1] + [{"task_id": 2, "split": "train", "result": json.dumps([region])}]
    check = check_training_data("visual_ner", ["q", "a"], two)
    assert check.refusal is None and check.counts == {"q": {"train": 2, "test": 0}, "a": {"train": 0, "test": 0}}
    assert check.notes[0] == "visual_ner: no training example of 'a': the model cannot predict it"
