"""How the default recipes (trainers/recipes.py) were chosen: candidate parameters of one training
type and embeddings, each trained on the train part and scored on the *validation* data (CoNLL's
dev set, GoEmotions' dev set, a seeded share of SMS Spam's train part); the test part is never
looked at here. Prints one table per experiment: validation macro and micro F1, training time.

    .venv/bin/python bench/recipes.py goemotions | conll | nerdl | classifierdl [--work DIR]

The winner's test score is measured by the other bench scripts (classification.py, ner_vs_spacy.py,
backends.py), with the service's defaults.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
from pathlib import Path

from classification import goemotions_rows
from common import SHARED, minutes, run_trainer, write_snapshot
from ner_vs_spacy import LABELS, read_conll, snapshot_rows

EXPERIMENTS = {
    # multiple choice, 28 labels: the epochs and the learning rate of the fine-tuned head
    "goemotions": [
        ("2 epochs, lr 5e-5 (the old default)", {"epochs": 2, "learning_rate": 5e-5}),
        ("5 epochs, lr 5e-5", {"epochs": 5, "learning_rate": 5e-5}),
        ("5 epochs, lr 1e-4, warmup 0.1", {"epochs": 5, "learning_rate": 1e-4, "warmup": 0.1}),
    ],
    # MiniLM NER on the whole CoNLL-2003 train part, dev as the validation data
    "conll": [
        ("5 epochs, lr 5e-5 (the old service default)", {"epochs": 5, "learning_rate": 5e-5}),
        (
            "4 epochs, lr 1e-4, warmup 0.1, decay 0.5, average of the last 25 %",
            {"epochs": 4, "learning_rate": 1e-4, "warmup": 0.1, "decay": 0.5, "average_last": 0.25},
        ),
    ],
    # Spark NLP NerDL on 1,350 CoNLL training sentences
    "nerdl": [
        ("5 epochs, lr 1e-3, batch 16, dropout 0.1, no decay (the old default)", {"epochs": 5, "learning_rate": 1e-3}),
        (
            "10 epochs, Spark NLP's own lr 1e-3, po 0.005, dropout 0.5, batch 8",
            {"epochs": 10, "learning_rate": 1e-3, "decay": 0.005, "dropout": 0.5, "batch_size": 8},
        ),
        (
            "20 epochs, Spark NLP's own lr 1e-3, po 0.005, dropout 0.5, batch 8",
            {"epochs": 20, "learning_rate": 1e-3, "decay": 0.005, "dropout": 0.5, "batch_size": 8},
        ),
        (
            "20 epochs, lr 3e-3, po 0.005, dropout 0.5, batch 8",
            {"epochs": 20, "learning_rate": 3e-3, "decay": 0.005, "dropout": 0.5, "batch_size": 8},
        ),
    ],
    # Spark NLP ClassifierDL on SMS Spam
    "classifierdl": [
        ("5 epochs, lr 3e-4, batch 16, dropout 0.1 (the old default)", {"epochs": 5, "learning_rate": 3e-4}),
        (
            "30 epochs, lr 3e-4, batch 64, dropout 0.5",
            {"epochs": 30, "learning_rate": 3e-4, "batch_size": 64, "dropout": 0.5},
        ),
        (
            "60 epochs, lr 3e-4, batch 64, dropout 0.5",
            {"epochs": 60, "learning_rate": 3e-4, "batch_size": 64, "dropout": 0.5},
        ),
        (
            "30 epochs, lr 1e-3, batch 64, dropout 0.5",
            {"epochs": 30, "learning_rate": 1e-3, "batch_size": 64, "dropout": 0.5},
        ),
    ],
}


def goemotions(work: Path) -> tuple[dict, Path]:
    rows, names = goemotions_rows(None)
    rows = [r for r in rows if r["split"] != "test"]  # train and validation (dev) only
    write_snapshot(work / "goemotions.parquet", rows)
    return {
        "type": "classification",
        "labels": names,
        "multiple": True,
        "from_name": "emotions",
    }, work / "goemotions.parquet"


def conll(work: Path, sentences: int | None = None) -> tuple[dict, Path]:
    data = SHARED / "conll2003"
    train = read_conll(data / "eng.train.conll")
    if sentences:  # the first documents that hold this many sentences
        kept, n = [], 0
        for doc in train:
            if n >= sentences:
                break
            kept.append(doc)
            n += len(doc)
        train = kept
    parts = {"train": train, "test": read_conll(data / "eng.dev.conll")}  # dev scored as the held-out part
    write_snapshot(work / "conll.parquet", snapshot_rows(parts, documents=False))
    return {"type": "ner", "labels": LABELS}, work / "conll.parquet"


def sms(work: Path) -> tuple[dict, Path]:
    rows = []
    with open(SHARED / "sms_spam" / "train.csv", newline="") as f:
        records = list(csv.DictReader(f))
    random.Random(7).shuffle(records)  # a seeded fifth of the train part is the held-out part
    for i, r in enumerate(records):
        result = [
            {"id": "c", "from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [r["label"]]}}
        ]
        rows.append(
            {
                "task_id": i + 1,
                "split": "test" if i < len(records) // 5 else "train",
                "text": r["text"],
                "result": json.dumps(result),
            }
        )
    write_snapshot(work / "sms.parquet", rows)
    return {"type": "classification", "labels": ["ham", "spam"]}, work / "sms.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=list(EXPERIMENTS))
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix=f"recipes_{args.experiment}_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.experiment == "goemotions":
        spec, snapshot = goemotions(work)
        spec["embeddings"] = "minilm"
    elif args.experiment == "conll":
        spec, snapshot = conll(work)
        spec["embeddings"] = "minilm"
    elif args.experiment == "nerdl":
        spec, snapshot = conll(work, sentences=1350)
        spec.update(backend="sparknlp", embeddings="minilm_words")
    else:
        spec, snapshot = sms(work)
        spec.update(backend="sparknlp", embeddings="minilm_words")
    rows = []
    for name, params in EXPERIMENTS[args.experiment]:
        key = name.split(" (")[0].replace(" ", "_").replace(",", "")
        metrics, wall, peak = run_trainer(
            work,
            key,
            {**spec, "snapshot": str(snapshot), "params": {**params, "few_shot": "off"}},
            tree=spec.get("backend") == "sparknlp",
        )
        scored = metrics.get("entity", metrics)
        if args.experiment == "goemotions":  # its validation part is GoEmotions' dev set: score it there
            scored = validation_scores(work / f"out_{key}", snapshot)
        rows.append((name, scored["macro"]["f1"], scored["micro"]["f1"], wall, peak))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.experiment}: validation data only (the test part is not used here); one run each\n")
    print("| candidate | validation macro F1 | validation micro F1 | train time | peak RSS |\n|---|---|---|---|---|")
    for name, macro, micro, wall, peak in rows:
        print(f"| {name} | {macro:.3f} | {micro:.3f} | {minutes(wall)} | {peak:.1f} GB |")
    print(f"\nwork folder {work}")


def validation_scores(output: Path, snapshot: Path) -> dict:
    import pyarrow.parquet as pq

    from trainers.metrics import multilabel_scores
    from trainers.predict import load

    rows = [r for r in pq.read_table(snapshot).to_pylist() if r["split"] == "validation"]
    predictor = load(output)
    predicted = predictor.model.predict([r["text"] for r in rows])
    gold = [set(json.loads(r["result"])[0]["value"]["choices"]) for r in rows]
    return multilabel_scores(gold, [set(p) for p in predicted], predictor.model.labels)


if __name__ == "__main__":
    main()
