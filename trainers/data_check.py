"""What a training type's part of a snapshot can train, decided before any job is queued: a
refusal that names the type and the labels at fault, or notes on what the model will lack."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from trainers.dataset import (
    NO_RELATION,
    REGION_TYPES,
    TrainingDataError,
    assertion_examples,
    classification_examples,
    documents_of,
    read_snapshot,
    relation_examples,
)

CLASS_TYPES = ("classification", "assertion")
MIN_TRAIN_TASKS = {"visual_ner": 2}  # Visual NER validates its layout on a second page


@dataclass
class DataCheck:
    """One training type's verdict. `refusal` set: the training is refused; else `notes` say what
    the model will not learn, and `counts` give each label's examples in the train and test parts."""

    type: str
    labels: list[str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refusal: str | None = None

    def as_dict(self) -> dict:
        return {"labels": self.labels, "counts": self.counts, "notes": self.notes}


def check_training_data(training_type: str, labels: list[str], rows: list[dict], multiple: bool = False) -> DataCheck:
    """The verdict on a type's snapshot rows (`trainers.dataset.read_snapshot`), with the labels the
    config gives it. Refused: no task in the training part, no labelled example there, or (single
    and multiple choice, assertion status) fewer than two classes there. Trained, with a note: a
    label without a training example (the model cannot predict it; its test examples count as
    misses), an empty test part (no test scores)."""
    check = DataCheck(training_type, list(labels))
    parts = Counter(row["split"] for row in rows)
    train_tasks = parts["train"] + parts["validation"]
    name = _name(training_type, multiple)
    if train_tasks == 0:
        check.refusal = (
            f"{name}: no task in the training part ({parts['test']} selected, all in the test part); "
            "lower the validation split or tag tasks for training"
        )
        return check
    per_label = _examples_per_label(training_type, labels, rows)
    check.counts = {lab: {"train": per_label[lab]["train"], "test": per_label[lab]["test"]} for lab in per_label}
    trained = [lab for lab in labels if per_label[lab]["train"]]
    what = _what(training_type)
    if not trained:
        check.refusal = (
            f"{name}: no {what} in the training part ({train_tasks} task(s)) carries one of the labels "
            f"{', '.join(labels)}; label some, or leave {training_type} out of the training"
        )
        return check
    least = MIN_TRAIN_TASKS.get(training_type, 1)
    if least > 1:
        labelled = sum(
            1
            for row in rows
            if row["split"] != "test"
            and any(c["train"] for c in _examples_per_label(training_type, labels, [row]).values())
        )
        if labelled < least:
            check.refusal = (
                f"{name}: too few completions: {labelled} task(s) of the training part have a labelled {what}; "
                f"{training_type} needs at least {least}"
            )
            return check
    if training_type in CLASS_TYPES and len(trained) < 2:
        (only,) = trained
        check.refusal = (
            f"{name}: the training part has one class, {only!r} ({per_label[only]['train']} example(s)); "
            f"a {'model' if training_type == 'assertion' else 'classifier'} needs examples of two or more "
            f"of {', '.join(labels)}"
            + (
                " (add a second assertion label to the config and use it)"
                if training_type == "assertion" and len(labels) < 2
                else ""
            )
        )
        return check
    unseen = [lab for lab in labels if not per_label[lab]["train"]]
    if unseen:
        in_test = {lab: per_label[lab]["test"] for lab in unseen if per_label[lab]["test"]}
        check.notes.append(
            f"{name}: no training example of {', '.join(repr(lab) for lab in unseen)}: the model cannot "
            "predict "
            + ("it" if len(unseen) == 1 else "them")
            + (
                "; " + ", ".join(f"{n} test example(s) of {lab!r}" for lab, n in in_test.items()) + " count as misses"
                if in_test
                else ""
            )
        )
    if parts["test"] == 0:
        check.notes.append(
            f"{name}: the test part is empty: the model gets no test scores (raise the validation split, or tag "
            "tasks for test)"
        )
    return check


def _name(training_type: str, multiple: bool) -> str:
    if training_type == "classification":
        return f"classification ({'multiple' if multiple else 'single'} choice)"
    return training_type


def _what(training_type: str) -> str:
    return {
        "ner": "entity",
        "visual_ner": "region",
        "classification": "task",
        "assertion": "entity",
        "relation": "relation",
    }[training_type]


def _examples_per_label(training_type: str, labels: list[str], rows: list[dict]) -> dict[str, Counter]:
    """Each label's examples by part ("train" counts the validation rows too), as the trainer
    would make them."""
    counts = {lab: Counter() for lab in labels}

    def add(label: str, split: str) -> None:
        if label in counts:
            counts[label]["test" if split == "test" else "train"] += 1

    if training_type == "visual_ner":
        for row in rows:
            for result in json.loads(row.get("result") or "[]"):
                kind, value = (result.get("type") or "").lower(), result.get("value") or {}
                names = value.get(kind) if kind in REGION_TYPES else None
                if names and "width" in value:
                    add(names[0], row["split"])
        return counts
    documents = documents_of(rows)
    if training_type == "ner":
        for doc in documents:
            for span in doc.spans:
                add(span.label, doc.split)
        return counts
    if training_type == "classification":
        examples, splits = classification_examples(documents, labels)
    elif training_type == "assertion":
        examples, splits = assertion_examples(documents, labels)
    else:
        examples, splits = relation_examples(documents, labels)
    for example, split in zip(examples, splits):
        for label in example.labels:
            if label != NO_RELATION:
                add(label, split)
    return counts


def check_snapshot(files: dict[str, dict], multiple: bool = False) -> dict:
    """The catalog's data check (`storage.catalog.Catalog(data_check=...)`): each type's snapshot
    file (its manifest entry: path and labels) checked; one refusal refuses the whole training, else
    each type's notes and label counts, as the training's `checks`. `multiple`: the config's
    classification is multiple choice."""
    checks = [
        check_training_data(t, file["labels"], read_snapshot(file["path"]), multiple and t == "classification")
        for t, file in files.items()
    ]
    refusals = [c.refusal for c in checks if c.refusal]
    if refusals:
        raise TrainingDataError("cannot train: " + "; ".join(refusals), reason="data check")
    return {c.type: c.as_dict() for c in checks}
