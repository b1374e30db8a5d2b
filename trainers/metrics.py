"""Scores: per label precision, recall, F1 and support, micro and macro averages; NER per
entity (exact span and type, the CoNLL definition) and per token; confusion matrices."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable


def prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": tp + fn}


def score_sets(
    gold: Iterable[tuple[Hashable, str]], predicted: Iterable[tuple[Hashable, str]], labels: list[str]
) -> dict:
    """Score items (key, label): an item is right when the same key carries the same label.
    For entities the key is (document, start, end): exact span and type."""
    gold, predicted = set(gold), set(predicted)
    tp, fp, fn = Counter(), Counter(), Counter()
    for _, label in gold & predicted:
        tp[label] += 1
    for _, label in predicted - gold:
        fp[label] += 1
    for _, label in gold - predicted:
        fn[label] += 1
    per_label = {label: prf(tp[label], fp[label], fn[label]) for label in labels}
    micro = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    scored = [per_label[label] for label in labels if per_label[label]["support"] or fp[label]]
    macro = {
        k: round(sum(s[k] for s in scored) / len(scored), 4) if scored else 0.0 for k in ("precision", "recall", "f1")
    }
    macro["support"] = micro["support"]
    return {"per_label": per_label, "micro": micro, "macro": macro}


def ner_scores(
    gold_spans: list[list],
    predicted_spans: list[list],
    gold_tags: list[list[str]],
    predicted_tags: list[list[str]],
    labels: list[str],
) -> dict:
    """Entity-level (exact span and type) and token-level scores of a NER test set."""
    entity = score_sets(
        [((doc, s.start, s.end), s.label) for doc, spans in enumerate(gold_spans) for s in spans],
        [((doc, s.start, s.end), s.label) for doc, spans in enumerate(predicted_spans) for s in spans],
        labels,
    )
    strip = lambda tag: tag.split("-", 1)[-1]  # noqa: E731
    token = score_sets(
        [((d, i), strip(t)) for d, tags in enumerate(gold_tags) for i, t in enumerate(tags) if t != "O"],
        [((d, i), strip(t)) for d, tags in enumerate(predicted_tags) for i, t in enumerate(tags) if t != "O"],
        labels,
    )
    n_tokens = sum(len(tags) for tags in gold_tags)
    correct = sum(g == p for gs, ps in zip(gold_tags, predicted_tags) for g, p in zip(gs, ps))
    token["accuracy"] = round(correct / n_tokens, 4) if n_tokens else 0.0
    return {"entity": entity, "token": token}


def confusion_matrix(gold: list[str], predicted: list[str], labels: list[str]) -> dict:
    """Rows are gold labels, columns predicted labels, in `labels` order."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        matrix[index[g]][index[p]] += 1
    return {"labels": labels, "matrix": matrix}


def classification_scores(gold: list[str], predicted: list[str], labels: list[str]) -> dict:
    """Single-label classification: per label P/R/F1, micro (= accuracy) and macro, confusion matrix."""
    scores = score_sets(list(enumerate(gold)), list(enumerate(predicted)), labels)
    scores["accuracy"] = round(sum(g == p for g, p in zip(gold, predicted)) / len(gold), 4) if gold else 0.0
    scores["confusion_matrix"] = confusion_matrix(gold, predicted, labels)
    return scores


def multilabel_scores(gold: list[set[str]], predicted: list[set[str]], labels: list[str]) -> dict:
    """Multiple choice: each (example, label) pair is one decision; plus exact-match ratio and a
    per-label 2x2 matrix (no, yes)."""
    scores = score_sets(
        [((i, lab), lab) for i, labs in enumerate(gold) for lab in labs],
        [((i, lab), lab) for i, labs in enumerate(predicted) for lab in labs],
        labels,
    )
    scores["exact_match"] = round(sum(g == p for g, p in zip(gold, predicted)) / len(gold), 4) if gold else 0.0
    scores["confusion_matrix"] = {
        label: confusion_matrix(
            [("yes" if label in g else "no") for g in gold],
            [("yes" if label in p else "no") for p in predicted],
            ["no", "yes"],
        )
        for label in labels
    }
    return scores
