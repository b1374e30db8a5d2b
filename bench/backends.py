"""The two backends side by side on the same data: a CoNLL-2003 English subset (NER) and the SMS
Spam Collection (single choice), each trained by labtrain's PyTorch trainers and by Spark NLP
(NerDL, ClassifierDL), scored by the same scorer on the same test part. Test F1, training wall
time (the whole `python -m trainers.run`: start-up, training, test scoring; for Spark NLP also
the SparkSession and the word-vector index) and peak memory of the process tree (Python + JVM).

    .venv/bin/python bench/backends.py [--quick] [--ner-documents 200] [--only ner|sms]

Each system trains with the service's defaults (its recipe in trainers.recipes, what `labtrain
train` gives a user who sets nothing but the type and the backend). `--quick` asks every system for
2 epochs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from classification import sms_rows
from common import SHARED, minutes, run_trainer, write_snapshot
from ner_vs_spacy import LABELS, read_conll, snapshot_rows

NER_SYSTEMS = {
    "pytorch minilm": {"embeddings": "minilm"},
    "pytorch bilstm": {"embeddings": "bilstm"},
    "sparknlp NerDL": {"backend": "sparknlp"},
}
SMS_SYSTEMS = {
    "pytorch minilm": {},
    "sparknlp ClassifierDL": {"backend": "sparknlp"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 CoNLL documents, 500 SMS per split, 1-2 epochs")
    parser.add_argument("--ner-documents", type=int, default=200, help="CoNLL training documents (~15 sentences each)")
    parser.add_argument("--only", choices=["ner", "sms"])
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="backends_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.only in (None, "ner"):
        rows += ner(work, 30 if args.quick else args.ner_documents, args.quick)
    if args.only in (None, "sms"):
        rows += sms(work, 500 if args.quick else None, args.quick)
    print(
        f"\n{'data':<34}{'system':<24}{'test F1 (micro)':>16}{'macro F1':>10}{'epochs':>8}{'train time':>12}"
        f"{'peak RSS':>10}"
    )
    for r in rows:
        print(
            f"{r['data']:<34}{r['system']:<24}{r['micro']:16.3f}{r['macro']:10.3f}{r['epochs']:>8}"
            f"{minutes(r['seconds']):>12}{r['peak_gb']:9.2f}G"
        )
    print(f"\nOne run each, one after another, on this machine; work folder {work}")


def params(is_quick: bool) -> dict:
    """The request's parameters: none (the service's defaults), or only 2 epochs for --quick."""
    return {"epochs": 2} if is_quick else {}


def ner(work: Path, documents: int, is_quick: bool) -> list[dict]:
    data = SHARED / "conll2003"
    parts = {
        "train": read_conll(data / "eng.train.conll")[:documents],
        "validation": read_conll(data / "eng.dev.conll")[: max(5, documents // 5)],
        "test": read_conll(data / "eng.test.conll")[: 70 if is_quick else None],
    }
    snapshot = work / "conll.parquet"
    write_snapshot(snapshot, snapshot_rows(parts, documents=False))
    name = f"CoNLL-2003 ({sum(map(len, parts['train']))} train sent.)"
    print(f"{name}: {', '.join(f'{k} {sum(map(len, v))} sentences' for k, v in parts.items())}", flush=True)
    out = []
    for system, spec in NER_SYSTEMS.items():
        metrics, wall, peak = run_trainer(
            work,
            "ner_" + system.replace(" ", "_"),
            {"type": "ner", "snapshot": str(snapshot), "labels": LABELS, **spec, "params": params(is_quick)},
            tree=True,
        )
        entity = metrics["entity"]
        out.append(
            {
                "data": name,
                "system": system,
                "micro": entity["micro"]["f1"],
                "macro": entity["macro"]["f1"],
                "epochs": len(metrics["epochs"]),
                "seconds": wall,
                "peak_gb": peak,
            }
        )
        print(out[-1], flush=True)
    return out


def sms(work: Path, limit: int | None, is_quick: bool) -> list[dict]:
    rows = sms_rows(limit)
    snapshot = work / "sms.parquet"
    write_snapshot(snapshot, rows)
    name = f"SMS Spam ({len(rows)} messages)"
    out = []
    for system, spec in SMS_SYSTEMS.items():
        metrics, wall, peak = run_trainer(
            work,
            "sms_" + system.replace(" ", "_"),
            {
                "type": "classification",
                "snapshot": str(snapshot),
                "labels": ["ham", "spam"],
                **spec,
                "params": params(is_quick),
            },
            tree=True,
        )
        out.append(
            {
                "data": name,
                "system": system,
                "micro": metrics["micro"]["f1"],
                "macro": metrics["macro"]["f1"],
                "epochs": len(metrics["epochs"]),
                "seconds": wall,
                "peak_gb": peak,
            }
        )
        print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    main()
