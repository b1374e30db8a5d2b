"""Assertion status on the NegEx/ConText test kit (2,376 clinical sentence/concept pairs; the
derived present / absent / past / hypothetical / family_or_other label), seeded 80/20 split, with
labtrain's entity-marked MiniLM classifier. Prints macro F1, per-label F1, time and memory next
to the majority-class floor.

    .venv/bin/python bench/assertion.py [--quick] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from common import SHARED, minutes, run_trainer, write_snapshot

LABELS = ["present", "absent", "past", "hypothetical", "family_or_other"]


def rows(seed: int, limit: int | None) -> list[dict]:
    records = [json.loads(line) for line in (SHARED / "negex_assertion" / "negex_annotations.jsonl").open()]
    records = [r for r in records if r["begin"] is not None]  # 11 concepts are not in their sentence
    random.Random(seed).shuffle(records)
    records = records[:limit] if limit else records
    n_test = len(records) // 5
    out = []
    for i, r in enumerate(records):
        span = {"start": r["begin"], "end": r["end"], "text": r["sentence"][r["begin"] : r["end"]]}
        result = [
            {
                "id": "e",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {**span, "labels": ["PROBLEM"]},
            },
            {
                "id": "a",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {**span, "labels": [r["assertion_derived"]]},
            },
        ]
        out.append(
            {
                "task_id": r["id"],
                "split": "test" if i < n_test else "train",
                "text": r["sentence"],
                "result": json.dumps(result),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 examples, 1 epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="assertion_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    data = rows(args.seed, 500 if args.quick else None)
    write_snapshot(work / "negex.parquet", data)
    metrics, wall, peak = run_trainer(
        work,
        "negex",
        {
            "type": "assertion",
            "snapshot": str(work / "negex.parquet"),
            "labels": LABELS,
            "params": {"epochs": 1 if args.quick else args.epochs, "learning_rate": 5e-5, "batch_size": 16},
        },
    )
    test_gold = [json.loads(r["result"])[1]["value"]["labels"][0] for r in data if r["split"] == "test"]
    present_f1 = 2 * test_gold.count("present") / (len(test_gold) + test_gold.count("present"))
    print(f"\nNegEx assertion status: {len(data)} examples ({len(test_gold)} test), seed {args.seed}")
    print(
        f"{'system':<26}{'macro F1':>9}{'micro F1':>9}"
        + "".join(f"{lab[:12]:>14}" for lab in LABELS)
        + f"{'train time':>12}{'peak RSS':>10}"
    )
    per = metrics["per_label"]
    print(
        f"{'labtrain minilm':<26}{metrics['macro']['f1']:9.3f}{metrics['micro']['f1']:9.3f}"
        + "".join(f"{per[lab]['f1']:>9.3f} ({per[lab]['support']:>3})" for lab in LABELS)
        + f"{minutes(wall):>12}{peak:9.2f}G"
    )
    print(
        f"{'majority class (present)':<26}{present_f1 / len(LABELS):9.3f}{test_gold.count('present') / len(test_gold):9.3f}"
    )
    print(f"\nwork folder {work}")


if __name__ == "__main__":
    main()
