"""Snapshot Parquet -> examples per training type, split into train / validation / test."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from labtrain.errors import LabtrainError
from trainers.text import Span

NO_RELATION = "no_relation"
REGION_TYPES = ("rectanglelabels", "labels")  # the result types of a Visual NER region


class TrainingDataError(LabtrainError):
    """The data cannot train the model; `reason` is the failure as the training page names it: "too
    few completions" or "labels without examples"."""

    status_code = 422

    def __init__(self, message: str, reason: str = "too few completions"):
        super().__init__(message)
        self.reason = reason


@dataclass
class Document:
    task_id: int
    split: str
    text: str
    spans: list[Span] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    relations: list[tuple[Span, Span, str]] = field(default_factory=list)


@dataclass
class Example:
    """One classification decision: a text (with markers, for assertion and relation) and its labels."""

    task_id: int
    text: str
    labels: list[str]


@dataclass
class Splits:
    train: list
    validation: list
    test: list

    def sizes(self) -> str:
        return f"{len(self.train)} train, {len(self.validation)} validation, {len(self.test)} test"


def read_snapshot(path: str | Path) -> list[dict]:
    """The snapshot's rows; a file that is not readable Parquet fails as a corrupt snapshot."""
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise TrainingDataError(
            f"the snapshot {path} cannot be read ({type(exc).__name__}: {exc}); start the "
            "training again to take a new snapshot",
            reason="corrupt snapshot",
        ) from None


def read_documents(path: str | Path) -> list[Document]:
    return documents_of(read_snapshot(path))


def documents_of(rows: list[dict]) -> list[Document]:
    """The snapshot's rows as documents: text, spans, choices and the relations between spans."""
    documents = []
    for row in rows:
        text = row.get("text") or ""
        doc = Document(row["task_id"], row["split"], text)
        by_id: dict[str, Span] = {}
        results = json.loads(row["result"] or "[]")
        for result in results:
            value = result.get("value") or {}
            kind = (result.get("type") or "").lower()
            if kind in ("labels", "hypertextlabels") and "start" in value:
                span = Span(value["start"], value["end"], value["labels"][0])
                doc.spans.append(span)
                if result.get("id"):
                    by_id[result["id"]] = span
            elif kind == "choices":
                doc.choices.extend(value.get("choices") or [])
        for result in results:
            if (result.get("type") or "").lower() == "relation" and result.get("labels"):
                head, tail = by_id.get(result.get("from_id")), by_id.get(result.get("to_id"))
                if head and tail:
                    doc.relations.append((head, tail, result["labels"][0]))
        documents.append(doc)
    return documents


def split_examples(items: list, splits: list[str], validation_fraction: float, seed: int) -> Splits:
    """Train and test come from the snapshot; validation is its `validation` rows if it has any,
    else a seeded share of train."""
    train = [x for x, s in zip(items, splits) if s == "train"]
    test = [x for x, s in zip(items, splits) if s == "test"]
    given = [x for x, s in zip(items, splits) if s == "validation"]
    if given:
        return Splits(train, given, test)
    random.Random(seed).shuffle(train)
    n_val = int(round(len(train) * validation_fraction)) if len(train) >= 5 else 0
    return Splits(train[n_val:], train[:n_val], test)


def window(text: str, start: int, end: int, radius: int = 300) -> tuple[str, int]:
    """The text around [start, end), and the offset it starts at (long documents only)."""
    lo, hi = max(0, start - radius), min(len(text), end + radius)
    return text[lo:hi], lo


def mark(text: str, marks: list[tuple[int, str]]) -> str:
    """Insert marker strings at character offsets (applied right to left)."""
    for offset, marker in sorted(marks, key=lambda m: m[0], reverse=True):
        text = text[:offset] + marker + text[offset:]
    return text


def assertion_text(text: str, entity: Span) -> str:
    piece, lo = window(text, entity.start, entity.end)
    return mark(piece, [(entity.start - lo, "<< "), (entity.end - lo, " >>")])


def relation_text(text: str, head: Span, tail: Span) -> str:
    piece, lo = window(text, min(head.start, tail.start), max(head.end, tail.end))
    return mark(
        piece,
        [
            (head.start - lo, f"[[ {head.label} : "),
            (head.end - lo, " ]]"),
            (tail.start - lo, f"<< {tail.label} : "),
            (tail.end - lo, " >>"),
        ],
    )


def assertion_examples(documents: list[Document], labels: list[str]) -> tuple[list[Example], list[str]]:
    """Each span carrying an assertion label is one example: the entity (the NER span on the same
    offsets, or the assertion span itself) marked in its sentence, classified into its status."""
    examples, splits = [], []
    for doc in documents:
        for span in doc.spans:
            if span.label in labels:
                examples.append(Example(doc.task_id, assertion_text(doc.text, span), [span.label]))
                splits.append(doc.split)
    return examples, splits


def relation_examples(
    documents: list[Document], labels: list[str], max_distance: int = 250
) -> tuple[list[Example], list[str]]:
    """Every ordered pair of entities within `max_distance` characters: its relation label, or
    `no_relation`."""
    examples, splits = [], []
    for doc in documents:
        related = {(h, t): label for h, t, label in doc.relations if label in labels}
        entities = sorted({s for s in doc.spans}, key=lambda s: (s.start, s.end))
        for head in entities:
            for tail in entities:
                if head == tail or abs(head.start - tail.start) > max_distance:
                    continue
                label = related.get((head, tail), NO_RELATION)
                examples.append(Example(doc.task_id, relation_text(doc.text, head, tail), [label]))
                splits.append(doc.split)
    return examples, splits


def classification_examples(documents: list[Document], labels: list[str]) -> tuple[list[Example], list[str]]:
    """Documents with at least one choice of the group (others were not classified)."""
    examples, splits = [], []
    for doc in documents:
        chosen = [c for c in doc.choices if c in labels]
        if chosen:
            examples.append(Example(doc.task_id, doc.text, chosen))
            splits.append(doc.split)
    return examples, splits


def training_examples(
    training_type: str, documents: list[Document], labels: list[str], snapshot: str
) -> tuple[list[Example], list[str], list[str]]:
    """Examples of a sequence-classification type, their snapshot splits, and its label set;
    TrainingDataError when the train split has none."""
    if training_type == "classification":
        examples, splits = classification_examples(documents, labels)
        labels = list(labels)
    elif training_type == "assertion":
        examples, splits = assertion_examples(documents, labels)
        labels = list(labels)
    else:
        examples, splits = relation_examples(documents, labels)
        labels = list(labels) + [NO_RELATION]
    if not any(s == "train" for s in splits):
        raise no_training_examples(training_type, snapshot, labels)
    return examples, splits, labels


def no_training_examples(training_type: str, snapshot: str, labels: list[str]) -> TrainingDataError:
    return TrainingDataError(
        f"no training examples for {training_type}: no task in the train split of "
        f"{snapshot} carries one of the labels {labels}",
        reason="labels without examples",
    )
