"""`trainers.run(spec) -> TrainResult`: snapshot in, evaluated model folder out. Also
`python -m trainers.run spec.json` (what a Ray job runs)."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from storage.errors import LabtrainError
from trainers import dataset
from trainers.embeddings import REGISTRY
from trainers.ner import train_ner
from trainers.reporting import Listener, Reporter, label_table, matrix_table, save_confusion_png
from trainers.sequence import score, train_sequence_classifier
from trainers.spec import TrainSpec


class TrainingDataError(LabtrainError):
    status_code = 422


@dataclass
class TrainResult:
    type: str
    output_dir: str
    model_dir: str
    metrics: dict
    seconds: float
    log_path: str


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    try:
        labtrain = version("labtrain")
    except PackageNotFoundError:
        labtrain = "source"
    return {"labtrain": labtrain, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _examples(spec: TrainSpec, documents: list[dataset.Document]) -> tuple[list, list[str], list[str]]:
    """Examples, their snapshot splits, and the label set of a sequence-classification type."""
    if spec.type == "classification":
        examples, splits = dataset.classification_examples(documents, spec.labels)
        labels = list(spec.labels)
    elif spec.type == "assertion":
        examples, splits = dataset.assertion_examples(documents, spec.labels)
        labels = list(spec.labels)
    else:
        examples, splits = dataset.relation_examples(documents, spec.labels)
        labels = list(spec.labels) + [dataset.NO_RELATION]
    if not any(s == "train" for s in splits):
        raise TrainingDataError(f"no training examples for {spec.type}: no task in the train split of "
                                f"{spec.snapshot} carries one of the labels {spec.labels}")
    return examples, splits, labels


def run(spec: TrainSpec | dict, listeners: list[Listener] | None = None) -> TrainResult:
    if isinstance(spec, TrainSpec):
        spec.check()
    else:
        spec = TrainSpec.from_dict(spec)  # checks it
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / "model"
    reporter = Reporter(out / "training.log", listeners)
    started = time.monotonic()
    try:
        lr = spec.params.learning_rate or REGISTRY[spec.embeddings].default_learning_rate
        reporter.line(f"labtrain training: {spec.type} with {spec.embeddings} embeddings")
        reporter.line("parameters: " + ", ".join(f"{k}={v}" for k, v in asdict(spec.params).items())
                      + f", effective learning_rate={lr}")
        reporter.line(f"labels: {', '.join(spec.labels)}")
        reporter.line(f"snapshot: {spec.snapshot}")
        documents = dataset.read_documents(spec.snapshot)
        reporter.progress(1)
        extra: dict = {}
        if spec.type == "ner":
            model, scores, epochs, summary = train_ner(spec, documents, lr, reporter)
            metrics = {"entity": scores["entity"], "token": scores["token"]} if scores else {}
            primary = scores["entity"] if scores else None
        else:
            examples, splits, labels = _examples(spec, documents)
            parts = dataset.split_examples(examples, splits, spec.params.validation_fraction, spec.params.seed)
            summary = f"examples: {parts.sizes()}"
            reporter.line(summary)
            model, epochs = train_sequence_classifier(parts, labels, spec.multiple, spec.params, lr, spec.device,
                                                      reporter)
            primary = score(model, parts.test) if parts.test else None
            metrics = dict(primary or {})
            extra = {"thresholds": dict(zip(model.labels, model.thresholds))} if spec.multiple else {}
        model.save(model_dir)
        if primary is None:
            reporter.line("note: the snapshot has no test split; no test metrics")
        metrics = {"type": spec.type, **metrics, "epochs": [asdict(e) for e in epochs], "data": summary}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if primary:
            reporter.line("")
            reporter.line(label_table(primary["per_label"], "TEST " + ("ENTITY" if spec.type == "ner" else "LABEL")))
            reporter.line(f"micro F1 {primary['micro']['f1']:.4f}   macro F1 {primary['macro']['f1']:.4f}")
            confusion = primary.get("confusion_matrix")
            if confusion and "matrix" in confusion:
                (out / "confusion_matrix.json").write_text(json.dumps(confusion, indent=2))
                save_confusion_png(confusion, out / "confusion_matrix.png", f"{spec.type}: test confusion matrix")
                reporter.line("")
                reporter.line(matrix_table(confusion))
            elif confusion:  # multiple choice: one 2x2 matrix per label
                (out / "confusion_matrix.json").write_text(json.dumps(confusion, indent=2))
        seconds = time.monotonic() - started
        (out / "labtrain.json").write_text(json.dumps({
            "type": spec.type, "labels": spec.labels, "embeddings": spec.embeddings, "multiple": spec.multiple,
            "from_name": spec.from_name, "to_name": spec.to_name, "language": spec.language,
            "parameters": asdict(spec.params), "max_length": spec.params.max_length, **extra,
            "data": {"snapshot": spec.snapshot, "summary": summary}, "versions": _versions(),
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(seconds, 1),
            "loader": "trainers.predict.load(model folder)" if spec.embeddings == "bilstm" else
                      "transformers from_pretrained(model folder / 'model')",
        }, indent=2))
        reporter.line(f"done in {seconds:.1f} s; model in {model_dir}")
        reporter.progress(100, epochs[-1].epoch if epochs else None, primary["micro"] if primary else {})
        return TrainResult(spec.type, str(out), str(model_dir), metrics, seconds, str(out / "training.log"))
    except Exception as exc:
        reporter.line(f"training failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        reporter.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m trainers.run spec.json", file=sys.stderr)
        return 2
    try:
        result = run(TrainSpec.load(argv[0]), [lambda e: print(e["line"], flush=True) if e["kind"] == "log" else None])
    except LabtrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"model_dir": result.model_dir, "micro": result.metrics.get("micro")
                      or result.metrics.get("entity", {}).get("micro"), "seconds": round(result.seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
