"""Classification on the shared corpora: single choice on the SMS Spam Collection (ham/spam) and
multiple choice on GoEmotions (28 labels, 10k training sample), with labtrain's MiniLM trainer and the service's defaults (trainers.recipes) unless a flag
overrides one. Prints macro and micro F1, training time and peak memory, next to the majority-class
floor.

    .venv/bin/python bench/classification.py [--only goemotions] [--quick] [--epochs N] [--lr X]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from collections import Counter
from pathlib import Path

from common import SHARED, minutes, run_trainer, write_snapshot


def choice_row(task_id: int, split: str, text: str, labels: list[str], group: str) -> dict:
    result = [{"id": "c", "from_name": group, "to_name": "text", "type": "choices", "value": {"choices": labels}}]
    return {"task_id": task_id, "split": split, "text": text, "result": json.dumps(result)}


def sms_rows(limit: int | None) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        with open(SHARED / "sms_spam" / f"{split}.csv", newline="") as f:
            for i, r in enumerate(csv.DictReader(f)):
                if limit and i >= limit:
                    break
                rows.append(choice_row(len(rows) + 1, split, r["text"], [r["label"]], "label"))
    return rows


def goemotions_rows(limit: int | None) -> tuple[list[dict], list[str]]:
    names = (SHARED / "goemotions" / "emotions.txt").read_text().split()
    rows = []
    for split, file in (("train", "train_sample10k.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
        lines = (SHARED / "goemotions" / file).read_text().splitlines()
        for line in lines[:limit] if limit else lines:
            text, ids, _ = line.split("\t")
            rows.append(choice_row(len(rows) + 1, split, text, [names[int(i)] for i in ids.split(",")], "emotions"))
    return rows, names


def majority_floor(rows: list[dict], labels: list[str]) -> float:
    """Macro F1 of always answering the most frequent training label (single choice) or label set."""
    train = [json.loads(r["result"])[0]["value"]["choices"] for r in rows if r["split"] == "train"]
    test = [json.loads(r["result"])[0]["value"]["choices"] for r in rows if r["split"] == "test"]
    guess = Counter(tuple(sorted(c)) for c in train).most_common(1)[0][0]
    f1s = []
    for label in labels:
        tp = sum(label in t and label in guess for t in test)
        fp = sum(label not in t and label in guess for t in test)
        fn = sum(label in t and label not in guess for t in test)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 examples per split, 1 epoch")
    parser.add_argument("--epochs", type=int, help="default: the service's recipe")
    parser.add_argument("--lr", type=float, help="default: the service's recipe")
    parser.add_argument("--seed", type=int, help="the training's seed (default 0)")
    parser.add_argument("--only", choices=["sms_spam", "goemotions"])
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    limit, epochs = (1000, 1) if args.quick else (None, args.epochs)
    given = {"epochs": epochs, "learning_rate": args.lr, "seed": args.seed}
    work = Path(args.work or tempfile.mkdtemp(prefix="cls_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in given.items() if v is not None}  # the rest: the service's defaults
    table = []

    if args.only in (None, "sms_spam"):
        rows = sms_rows(limit)
        write_snapshot(work / "sms.parquet", rows)
        metrics, wall, peak = run_trainer(
            work,
            "sms_spam",
            {
                "type": "classification",
                "snapshot": str(work / "sms.parquet"),
                "labels": ["ham", "spam"],
                "params": params,
            },
        )
        table.append(("SMS Spam (single)", len(rows), metrics, majority_floor(rows, ["ham", "spam"]), wall, peak))
    if args.only in (None, "goemotions"):
        table.append(goemotions(work, limit, params))
    print_table(table, work)


def goemotions(work: Path, limit: int | None, params: dict) -> tuple:
    rows, names = goemotions_rows(limit)
    write_snapshot(work / "goemotions.parquet", rows)
    metrics, wall, peak = run_trainer(
        work,
        "goemotions",
        {
            "type": "classification",
            "snapshot": str(work / "goemotions.parquet"),
            "labels": names,
            "multiple": True,
            "from_name": "emotions",
            "params": params,
        },
    )
    return "GoEmotions (multiple)", len(rows), metrics, majority_floor(rows, names), wall, peak


def print_table(table: list[tuple], work: Path) -> None:
    print(
        f"\n{'set':<24}{'examples':>9}{'macro F1':>10}{'micro F1':>10}{'majority macro F1':>19}{'epochs':>8}"
        f"{'train time':>12}{'peak RSS':>10}"
    )
    for name, n, m, floor, wall, peak in table:
        print(
            f"{name:<24}{n:>9}{m['macro']['f1']:10.3f}{m['micro']['f1']:10.3f}{floor:19.3f}{len(m['epochs']):>8}"
            f"{minutes(wall):>12}{peak:9.2f}G"
        )
    print(f"\nMiniLM-L6 with the service's defaults; one run each on this machine; work folder {work}")


if __name__ == "__main__":
    main()
