"""Few labelled examples per label: labtrain's few-shot path (SetFit's method) against the fine-tuned
classification head (the plain head), each with its defaults, on the same seeded draws. Draws of 8,
16, 32 and 64 training examples per label (5 seeds each), scored on the whole test part:

- SMS Spam (single choice, ham / spam);
- GoEmotions restricted to examples with exactly one of the 6 Ekman groups (single choice);
- NegEx assertion status (present / absent / past / hypothetical; hypothetical has 45 training
  examples in all, so at 64 it gives what it has).

Prints macro F1 (median over the seeds, and its range), time and peak memory per run, and the
crossing point the few-shot threshold (`trainers.recipes.FEW_SHOT_BELOW`) is chosen from.

    .venv/bin/python bench/fewshot.py [--sizes 8,16,32,64] [--seeds 5] [--first-seed 0] [--only sms_spam]

Every run is also appended, as one JSON line with its date, to bench/results/fewshot.jsonl, so
that draws run on different days can be read together (`--first-seed 3 --seeds 2` adds draws 3
and 4 to a set's first three); `--from-record` prints the table of the recorded runs instead
of training (the latest run of each set, size, draw and path).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from common import SHARED, run_trainer, write_snapshot

RECORD = Path(__file__).parent / "results" / "fewshot.jsonl"
EKMAN = {
    "anger": ["anger", "annoyance", "disapproval"],
    "disgust": ["disgust"],
    "fear": ["fear", "nervousness"],
    "joy": [
        "joy",
        "amusement",
        "approval",
        "excitement",
        "gratitude",
        "love",
        "optimism",
        "relief",
        "pride",
        "admiration",
        "desire",
        "caring",
    ],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
}
NEGEX_LABELS = ["present", "absent", "past", "hypothetical"]


def choice(text: str, label: str) -> list[dict]:
    return [{"id": "c", "from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def sms_spam() -> dict:
    parts = {}
    for split in ("train", "test"):
        with open(SHARED / "sms_spam" / f"{split}.csv", newline="") as f:
            parts[split] = [(r["text"], r["label"], choice(r["text"], r["label"])) for r in csv.DictReader(f)]
    return {"type": "classification", "labels": ["ham", "spam"], **parts}


def goemotions_ekman() -> dict:
    names = (SHARED / "goemotions" / "emotions.txt").read_text().split()
    group = {fine: coarse for coarse, fines in EKMAN.items() for fine in fines}
    parts = {}
    for split, file in (("train", "train_sample10k.tsv"), ("test", "test.tsv")):
        rows = []
        for line in (SHARED / "goemotions" / file).read_text().splitlines():
            text, ids, _ = line.split("\t")
            groups = {group[names[int(i)]] for i in ids.split(",") if names[int(i)] in group}
            if len(groups) == 1 and all(names[int(i)] in group for i in ids.split(",")):
                (label,) = groups
                rows.append((text, label, choice(text, label)))
        parts[split] = rows
    return {"type": "classification", "labels": list(EKMAN), **parts}


def negex() -> dict:
    records = [json.loads(line) for line in (SHARED / "negex_assertion" / "negex_annotations.jsonl").open()]
    records = [r for r in records if r["begin"] is not None and r["assertion_derived"] in NEGEX_LABELS]
    random.Random(13).shuffle(records)  # bench/assertion.py's 80/20 split
    n_test = len(records) // 5
    parts = {"test": [], "train": []}
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
        parts["test" if i < n_test else "train"].append((r["sentence"], r["assertion_derived"], result))
    return {"type": "assertion", "labels": NEGEX_LABELS, **parts}


SETS = {"sms_spam": sms_spam, "goemotions_ekman": goemotions_ekman, "negex": negex}


def draw(train: list[tuple], labels: list[str], per_label: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    drawn = []
    for label in labels:
        pool = [r for r in train if r[1] == label]
        drawn += rng.sample(pool, min(per_label, len(pool)))
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="8,16,32,64")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="draws first-seed .. first-seed + seeds - 1")
    parser.add_argument("--only", choices=list(SETS), action="append")
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    parser.add_argument("--from-record", action="store_true", help="print the table of the recorded runs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.from_record:
        print_recorded(args.only, sizes)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="fewshot_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.only or list(SETS):
        data = SETS[name]()
        for size in sizes:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                train = draw(data["train"], data["labels"], size, seed)
                rows = [
                    {"task_id": i + 1, "split": split, "text": text, "result": json.dumps(result)}
                    for i, (split, (text, _, result)) in enumerate(
                        [("train", r) for r in train] + [("test", r) for r in data["test"]]
                    )
                ]
                snapshot = work / f"{name}-{size}-{seed}.parquet"
                write_snapshot(snapshot, rows)
                for path in ("on", "off"):
                    metrics, wall, peak = run_trainer(
                        work,
                        f"{name}-{size}-{seed}-{path}",
                        {
                            "type": data["type"],
                            "snapshot": str(snapshot),
                            "labels": data["labels"],
                            "params": {"seed": seed, "few_shot": path},
                        },
                    )
                    results.append(
                        {
                            "set": name,
                            "size": size,
                            "seed": seed,
                            "path": path,
                            "macro": metrics["macro"]["f1"],
                            "micro": metrics["micro"]["f1"],
                            "seconds": wall,
                            "peak_gb": peak,
                            "train": len(train),
                            "test": len(data["test"]),
                        }
                    )
                    print(json.dumps(results[-1]), flush=True)
                    with RECORD.open("a") as record:
                        record.write(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), **results[-1]}) + "\n")
    (work / "fewshot.json").write_text(json.dumps(results, indent=2))
    print_table(results, args.seeds)
    print(f"\nwork folder {work}")


def print_recorded(sets: list[str] | None, sizes: list[int]) -> None:
    """The table over bench/results/fewshot.jsonl: per set, size, draw and path its latest run."""
    latest = {}
    for line in RECORD.read_text().splitlines() if RECORD.exists() else []:
        run = json.loads(line)
        if (sets is None or run["set"] in sets) and run["size"] in sizes:
            latest[(run["set"], run["size"], run["seed"], run["path"])] = run
    runs = sorted(latest.values(), key=lambda r: (list(SETS).index(r["set"]), r["size"], r["seed"]))
    for name, size in dict.fromkeys((r["set"], r["size"]) for r in runs):
        draws = sorted({r["seed"] for r in runs if (r["set"], r["size"]) == (name, size)})
        dates = sorted({r["date"][:10] for r in runs if (r["set"], r["size"]) == (name, size)})
        print(f"{name} at {size}: draws {draws}, run on {', '.join(dates)}")
    print_table(runs, "the recorded")


def print_table(results: list[dict], seeds: int | str) -> None:
    print(f"\nmacro F1, median of {seeds} seeded draws (min-max); the test part whole; defaults of each path\n")
    print("| set | per label | few-shot (SetFit) | plain head | few-shot time | plain time | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["set"] for r in results):
        for size in dict.fromkeys(r["size"] for r in results if r["set"] == name):
            cells = []
            for path in ("on", "off"):
                runs = [r for r in results if (r["set"], r["size"], r["path"]) == (name, size, path)]
                f1 = [r["macro"] for r in runs]
                cells.append(
                    (
                        f"{statistics.median(f1):.3f} ({min(f1):.3f}-{max(f1):.3f})",
                        statistics.median(r["seconds"] for r in runs),
                        max(r["peak_gb"] for r in runs),
                    )
                )
            print(
                f"| {name} | {size} | {cells[0][0]} | {cells[1][0]} | {cells[0][1]:.0f} s | {cells[1][1]:.0f} s "
                f"| {max(cells[0][2], cells[1][2]):.1f} GB |"
            )


if __name__ == "__main__":
    main()
