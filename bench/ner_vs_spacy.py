"""NER on CoNLL-2003 English: labtrain's `minilm` and `bilstm` trainers vs spaCy 3's `spacy train`
with its default CPU NER config (`init config --pipeline ner --optimize efficiency`). Ours train
with the service's defaults (the `ner` recipes in trainers.recipes, as `labtrain train --type ner`
gets them); a `--minilm-*` or `--bilstm-*` flag overrides one parameter. Same train /
dev / test files, same machine, one run each, run one after another; test entity F1 (exact span
and type), training wall time, peak memory. Prints a table.

    .venv/bin/python bench/ner_vs_spacy.py [--quick] [--spacy ~/.cache/labtrain/spacy-venv/bin/spacy]

spaCy is the peer, not a dependency: install it anywhere (`pip install 'spacy>=3.8,<3.9'`) and
pass its `spacy` command. `--quick` trains on a subset (about 2,000 sentences, 1 epoch) for a
CI-sized run. `--documents` makes our tasks whole CoNLL documents, as an annotation project of
news articles would have them (spaCy still gets its usual 10-sentence documents).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import SHARED, minutes, run_trainer, timed, write_snapshot

from trainers.text import spans_from_bio

DATA = SHARED / "conll2003"
LABELS = ["PER", "LOC", "ORG", "MISC"]


def read_conll(path: Path) -> list[list[list[tuple[str, str]]]]:
    """Documents (split at -DOCSTART-), each a list of sentences of (token, IOB2 tag)."""
    documents, sentences, current = [], [], []
    for line in path.read_text().splitlines() + ["-DOCSTART- -X- -X- O"]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(current)
            current = []
            if line.startswith("-DOCSTART-") and sentences:
                documents.append(sentences)
                sentences = []
            continue
        parts = line.split()
        current.append((parts[0], parts[-1]))
    return documents


def to_row(task_id: int, split: str, sentence: list[tuple[str, str]]) -> dict:
    """Join the tokens with spaces; entity spans become character offsets of that text."""
    text, words = "", []
    for token, _ in sentence:
        if text:
            text += " "
        words.append((token, len(text), len(text) + len(token)))
        text += token
    spans = spans_from_bio(words, [tag for _, tag in sentence])
    result = [
        {
            "id": f"e{i}",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": s.start, "end": s.end, "text": text[s.start : s.end], "labels": [s.label]},
        }
        for i, s in enumerate(spans)
    ]
    return {"task_id": task_id, "split": split, "text": text, "result": json.dumps(result)}


def snapshot_rows(parts: dict[str, list], documents: bool) -> list[dict]:
    """One task per sentence, or (documents) one task per CoNLL document, its sentences joined."""
    rows = []
    for split, docs in parts.items():
        units = (
            [[tok for sentence in doc for tok in sentence] for doc in docs]
            if documents
            else [sentence for doc in docs for sentence in doc]
        )
        rows += [to_row(len(rows) + 1, split, unit) for unit in units]
    return rows


def given(**params) -> dict:
    """The parameters a flag gave (the others come from the service's recipe, trainers.recipes)."""
    return {k: v for k, v in params.items() if v is not None}


def run_ours(work: Path, snapshot: Path, embeddings: str, params: dict) -> dict:
    metrics, wall, peak = run_trainer(
        work,
        embeddings,
        {"type": "ner", "snapshot": str(snapshot), "labels": LABELS, "embeddings": embeddings, "params": params},
    )
    per = {lab: metrics["entity"]["per_label"][lab]["f1"] for lab in LABELS}
    return {
        "system": f"labtrain {embeddings}",
        "f1": metrics["entity"]["micro"]["f1"],
        "per": per,
        "seconds": wall,
        "peak_gb": peak,
        "params": params,
        "epochs": len(metrics["epochs"]),
    }


def run_spacy(work: Path, spacy: str, parts: dict[str, list], max_steps: int | None) -> dict:
    data = work / "spacy"
    data.mkdir(exist_ok=True)
    for split, docs in parts.items():
        sentences = [sentence for doc in docs for sentence in doc]
        # spaCy's converter wants IOB lines "token tag"; one blank line between sentences.
        (data / f"{split}.iob").write_text("\n".join(" ".join(f"{t}|{tag}" for t, tag in s) for s in sentences))
        subprocess.run(
            [spacy, "convert", str(data / f"{split}.iob"), str(data), "--converter", "iob", "--n-sents", "10"],
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [
            spacy,
            "init",
            "config",
            str(data / "config.cfg"),
            "--lang",
            "en",
            "--pipeline",
            "ner",
            "--optimize",
            "efficiency",
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    overrides = ["--paths.train", str(data / "train.spacy"), "--paths.dev", str(data / "validation.spacy")]
    if max_steps:
        overrides += ["--training.max_steps", str(max_steps)]
    wall, peak, code = timed(
        [spacy, "train", str(data / "config.cfg"), "--output", str(data / "model"), *overrides], work / "spacy.log"
    )
    if code:
        raise SystemExit(f"spacy train failed; see {work / 'spacy.log'}")
    subprocess.run(
        [
            spacy,
            "evaluate",
            str(data / "model" / "model-best"),
            str(data / "test.spacy"),
            "--output",
            str(data / "test_metrics.json"),
        ],
        check=True,
        capture_output=True,
    )
    scores = json.loads((data / "test_metrics.json").read_text())
    per = {lab: round(scores["ents_per_type"].get(lab, {}).get("f", 0.0), 4) for lab in LABELS}
    return {
        "system": "spaCy 3 (efficiency NER)",
        "f1": round(scores["ents_f"], 4),
        "per": per,
        "seconds": wall,
        "peak_gb": peak,
        "params": {"max_steps": max_steps or "default (stops on dev)"},
        "epochs": "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 2,000 training sentences, 1 epoch")
    parser.add_argument(
        "--spacy", default=shutil.which("spacy") or str(Path.home() / ".cache/labtrain/spacy-venv/bin/spacy")
    )
    parser.add_argument("--only", choices=["minilm", "bilstm", "spacy"], action="append")
    # The `minilm` and `bilstm` rows train with the service's defaults (trainers.recipes) unless a
    # flag below gives a parameter; only the given ones are passed, as a user's request would.
    parser.add_argument("--minilm-epochs", type=int)
    parser.add_argument("--minilm-lr", type=float)
    parser.add_argument("--minilm-batch-size", type=int)
    parser.add_argument("--minilm-max-length", type=int)
    parser.add_argument("--minilm-warmup", type=float)
    parser.add_argument("--minilm-decay", type=float)
    parser.add_argument("--minilm-seed", type=int, help="shuffling, dropout and head initialisation (default 0)")
    parser.add_argument("--minilm-fp32", action="store_true", help="no bfloat16 autocast (the recipe's default: on)")
    parser.add_argument(
        "--minilm-average-last", type=float, help="share of the final steps whose weights are averaged (0: off)"
    )
    parser.add_argument("--bilstm-epochs", type=int)
    parser.add_argument(
        "--documents",
        action="store_true",
        help="our tasks are whole CoNLL documents (context beyond the sentence), not sentences",
    )
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing: this bench reads ../shared/data/conll2003")
    parts = {
        "train": read_conll(DATA / "eng.train.conll"),
        "validation": read_conll(DATA / "eng.dev.conll"),
        "test": read_conll(DATA / "eng.test.conll"),
    }
    if args.quick:  # about 2,000 / 500 / 1,000 sentences
        parts = {"train": parts["train"][:130], "validation": parts["validation"][:35], "test": parts["test"][:70]}
    work = Path(args.work or tempfile.mkdtemp(prefix="ner_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    snapshot = work / "conll.parquet"
    write_snapshot(snapshot, snapshot_rows(parts, args.documents))
    counts = {k: (len(v), sum(map(len, v))) for k, v in parts.items()}
    print(
        "CoNLL-2003: "
        + ", ".join(f"{k} {d} documents / {n} sentences" for k, (d, n) in counts.items())
        + f"; our tasks are {'documents' if args.documents else 'sentences'}; work folder {work}",
        flush=True,
    )
    systems = args.only or ["minilm", "bilstm", "spacy"]
    rows = []
    if "minilm" in systems:
        rows.append(
            run_ours(
                work,
                snapshot,
                "minilm",
                given(
                    epochs=1 if args.quick else args.minilm_epochs,
                    learning_rate=args.minilm_lr,
                    batch_size=args.minilm_batch_size,
                    max_length=args.minilm_max_length,
                    warmup=args.minilm_warmup,
                    decay=args.minilm_decay,
                    bf16=False if args.minilm_fp32 else None,
                    average_last=args.minilm_average_last,
                    seed=args.minilm_seed,
                ),
            )
        )
        print(rows[-1], flush=True)
    if "bilstm" in systems:
        rows.append(
            run_ours(
                work,
                snapshot,
                "bilstm",
                given(epochs=2 if args.quick else args.bilstm_epochs),
            )
        )
        print(rows[-1], flush=True)
    if "spacy" in systems:
        rows.append(run_spacy(work, args.spacy, parts, 300 if args.quick else None))
        print(rows[-1], flush=True)
    print(
        f"\n{'system':<26}{'test F1':>8}{'PER':>7}{'LOC':>7}{'ORG':>7}{'MISC':>7}{'epochs':>8}{'train time':>12}"
        f"{'peak RSS':>10}"
    )
    for r in rows:
        per = "".join(f"{r['per'][lab]:7.3f}" for lab in LABELS)
        print(
            f"{r['system']:<26}{r['f1']:8.3f}{per}{str(r['epochs']):>8}{minutes(r['seconds']):>12}{r['peak_gb']:9.2f}G"
        )
    print(
        "\ntrain time is the whole training command (start-up, training, test evaluation for ours); "
        "spaCy evaluates separately. One run each, on this machine."
    )


if __name__ == "__main__":
    main()
