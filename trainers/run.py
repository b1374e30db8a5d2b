"""`trainers.run(spec) -> TrainResult`: snapshot in, evaluated model folder out. Also
`python -m trainers.run spec.json` (what a Ray job runs)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from labtrain.errors import LabtrainError, disk_full
from trainers import dataset
from trainers.embeddings import REGISTRY
from trainers.fewshot import few_shot_reason
from trainers.ner import train_ner
from trainers.reporting import Listener, Reporter, StopTraining, label_table, matrix_table, save_confusion_png
from trainers.sequence import score, train_sequence_classifier
from trainers.spec import TrainParams, TrainSpec

ENCODER_FACTS = {"name", "source", "sha256", "model_type", "architecture", "hidden_size", "layers", "cased"}


@dataclass
class TrainResult:
    type: str
    output_dir: str
    model_dir: str
    metrics: dict
    seconds: float
    log_path: str


def failure_reason(exc: BaseException) -> str:
    """The failure as the training page tells them apart."""
    name = type(exc).__name__
    if name == "TrainingDataError":
        reason = getattr(exc, "reason", "too few completions")
        return str(exc) if str(exc).startswith(reason) else f"{reason}: {exc}"
    if name == "ScriptError":
        return str(exc)
    if name == "OcrError":
        return f"OCR: {exc}"
    if name == "SpecError":
        return f"wrong parameters: {exc}"
    if disk_full(exc):
        return f"disk full: {exc}"
    if isinstance(exc, MemoryError) or "OutOfMemory" in name:
        return f"out of memory: {exc}"
    return f"{name}: {exc}"


def _versions(backend: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "source" if package == "labtrain" else "not installed"

    names = ["labtrain", "torch", "transformers"] + (["pyspark", "spark-nlp"] if backend == "sparknlp" else [])
    return {**{n: of(n) for n in names}, "python": platform.python_version()}


def _loader(spec: TrainSpec) -> str:
    if spec.backend == "sparknlp":
        return (
            "pyspark.ml.PipelineModel.load(model folder / 'model') in a SparkSession with the Spark NLP "
            "3.4.4 JARs (trainers.spark.session()), or trainers.predict.load(model folder)"
        )
    if spec.script:
        return (
            "what the custom script wrote; a transformers token-classification folder loads with "
            "AutoModelForTokenClassification.from_pretrained(model folder / 'model') and trainers.predict.load"
        )
    if spec.embeddings == "bilstm":
        return "trainers.predict.load(model folder)"
    if spec.type == "visual_ner":
        return (
            "transformers AutoModelForTokenClassification.from_pretrained(model folder / 'model'), a "
            "LayoutLMForTokenClassification (inputs: input_ids, bbox in 0..1000, token_type_ids = word casing); "
            "or trainers.predict.load(model folder).predict_images([...])"
        )
    return "transformers from_pretrained(model folder / 'model')"


def result_event(result: TrainResult) -> dict:
    """The event a finished training sends: its test micro / macro scores and its duration."""
    metrics = result.metrics.get("entity", result.metrics)
    return {
        "kind": "result",
        "metrics": {"micro": metrics.get("micro"), "macro": metrics.get("macro"), "seconds": round(result.seconds, 1)},
    }


def _train_ner(spec: TrainSpec, documents: list[dataset.Document], lr: float, reporter: Reporter) -> tuple:
    model, scores, epochs, summary = train_ner(spec, documents, lr, reporter)
    metrics = {"entity": scores["entity"], "token": scores["token"]} if scores else {}
    return model, metrics, scores["entity"] if scores else None, epochs, summary, {}


def _train_visual_ner(spec: TrainSpec, documents: list[dataset.Document], lr: float, reporter: Reporter) -> tuple:
    from trainers.visual_ner import train_visual_ner

    model, scores, epochs, summary = train_visual_ner(spec, lr, reporter)
    metrics = {"entity": scores["entity"], "token": scores["token"]} if scores else {}
    return model, metrics, scores["entity"] if scores else None, epochs, summary, {"result_type": spec.result_type}


def _train_sequence(spec: TrainSpec, documents: list[dataset.Document], lr: float, reporter: Reporter) -> tuple:
    examples, splits, labels = dataset.training_examples(spec.type, documents, spec.labels, spec.snapshot)
    parts = dataset.split_examples(examples, splits, spec.params.validation_share, spec.params.seed)
    summary = f"examples: {parts.sizes()}"
    reporter.line(summary)
    few, why = few_shot_reason(
        spec.type, spec.embeddings, spec.params.few_shot, parts.train, labels, spec.encoder is not None
    )
    if why:
        reporter.line(why)
    if few:
        from trainers.fewshot import train_few_shot
        from trainers.recipes import FEW_SHOT
        from trainers.spec import with_recipe

        params = with_recipe(
            TrainParams(**{k: getattr(spec.params, k) for k in spec.given}),
            frozenset(spec.given),
            spec.type,
            spec.embeddings,
            FEW_SHOT,
            spec.encoder_width,
        )
        reporter.line("few-shot parameters: " + ", ".join(f"{k}={v}" for k, v in params.model_dump().items()))
        model, epochs = train_few_shot(
            parts, labels, spec.multiple, params, params.learning_rate or lr, spec.device, reporter, spec.encoder
        )
    elif spec.multiple:
        from trainers.pooled import train_pooled_classifier

        model, epochs = train_pooled_classifier(parts, labels, spec.params, lr, spec.device, reporter, spec.encoder)
    else:
        model, epochs = train_sequence_classifier(parts, labels, spec.params, lr, spec.device, reporter, spec.encoder)
    primary = score(model, parts.test) if parts.test else None
    extra = {"thresholds": dict(zip(model.labels, model.thresholds))} if spec.multiple else {}
    extra["head"] = "setfit" if few else "mean-pooled" if spec.multiple else "fine-tuned"
    return model, dict(primary or {}), primary, epochs, summary, extra


def run(spec: TrainSpec | dict, listeners: list[Listener] | None = None) -> TrainResult:
    if isinstance(spec, TrainSpec):
        spec.check()
    else:
        spec = TrainSpec.from_dict(spec)  # checks it
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = out / "model"
    reporter = Reporter(out / "training.log", listeners)
    if spec.checkpoint:
        from trainers.loop import EpochCheckpoints

        resume = spec.checkpoint.get("resume")
        reporter.checkpoints = EpochCheckpoints(
            Path(spec.checkpoint["folder"]), reporter.checkpoint, Path(resume) if resume else None
        )
    started = time.monotonic()
    try:
        lr = spec.params.learning_rate or (
            REGISTRY[spec.embeddings].learning_rate_for(spec.type) if spec.embeddings in REGISTRY else None
        )  # a custom script chooses; a registered encoder's recipe gives one
        reporter.line(f"labtrain training: {spec.type} with {spec.embeddings} embeddings")
        reporter.line(
            "parameters: "
            + ", ".join(f"{k}={v}" for k, v in spec.params.model_dump().items())
            + f", effective learning_rate={lr}"
        )
        if spec.params.bf16:
            import torch

            from trainers.loop import native_bf16

            if not native_bf16(torch.device(spec.device)):
                reporter.line(
                    "bf16: this machine has no native bfloat16 (AVX-512 BF16, AMX or a recent GPU); training in float32"
                )
        reporter.line(f"labels: {', '.join(spec.labels)}")
        reporter.line(f"snapshot: {spec.snapshot}")
        documents = dataset.read_documents(spec.snapshot)
        reporter.progress(1)
        if spec.script:
            from trainers.custom import train_custom

            model, metrics, primary, epochs, summary, extra = train_custom(spec, documents, reporter)
        elif spec.backend == "sparknlp":
            from trainers.spark.train import train_spark

            model, metrics, primary, epochs, summary, extra = train_spark(spec, documents, lr, reporter)
        elif spec.type == "visual_ner":
            model, metrics, primary, epochs, summary, extra = _train_visual_ner(spec, documents, lr, reporter)
        elif spec.type == "ner":
            model, metrics, primary, epochs, summary, extra = _train_ner(spec, documents, lr, reporter)
        else:
            model, metrics, primary, epochs, summary, extra = _train_sequence(spec, documents, lr, reporter)
        model.save(model_dir)
        if hasattr(model, "close"):  # a Spark NLP model's scratch folder
            model.close()
        if primary is None:
            reporter.line("note: the snapshot has no test split; no test metrics")
        metrics = {"type": spec.type, **metrics, "epochs": [asdict(e) for e in epochs], "data": summary}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if primary:
            reporter.line("")
            reporter.line(
                label_table(
                    primary["per_label"], "TEST " + ("ENTITY" if spec.type in ("ner", "visual_ner") else "LABEL")
                )
            )
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
        (out / "labtrain.json").write_text(
            json.dumps(
                {
                    "type": spec.type,
                    "labels": spec.labels,
                    "embeddings": spec.embeddings,
                    "backend": spec.backend,
                    "multiple": spec.multiple,
                    "from_name": spec.from_name,
                    "to_name": spec.to_name,
                    "language": spec.language,
                    "parameters": spec.params.model_dump(),
                    "max_length": getattr(model, "max_length", spec.params.max_length),
                    "encoder": spec.encoder.model_dump(include=ENCODER_FACTS) if spec.encoder else None,
                    **extra,
                    "data": {"snapshot": spec.snapshot, "summary": summary},
                    "versions": _versions(spec.backend),
                    "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "seconds": round(seconds, 1),
                    "loader": _loader(spec),
                },
                indent=2,
            )
        )
        reporter.line(f"done in {seconds:.1f} s; model in {model_dir}")
        reporter.progress(100, epochs[-1].epoch if epochs else None, primary["micro"] if primary else {})
        return TrainResult(spec.type, str(out), str(model_dir), metrics, seconds, str(out / "training.log"))
    except StopTraining as exc:
        reporter.line(f"training stopped: {exc}")
        raise
    except Exception as exc:
        reporter.line(f"training failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        reporter.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m trainers.run [--events] spec.json`: the log on stdout, or (--events) every event
    as one JSON line, the last one {"kind": "result"} or {"kind": "error"} (what a job process reads)."""
    argv = sys.argv[1:] if argv is None else argv
    events = argv[:1] == ["--events"]
    argv = argv[1:] if events else argv
    if len(argv) != 1:
        print("usage: python -m trainers.run [--events] spec.json", file=sys.stderr)
        return 2
    if events:
        # Events get their own copy of stdout; fd 1 becomes stderr, so that what a JVM or a
        # library prints (TensorFlow's device log) cannot interleave with them.
        channel = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        listener = lambda e: print(json.dumps(e), file=channel, flush=True)  # noqa: E731
    else:
        listener = lambda e: print(e["line"], flush=True) if e["kind"] == "log" else None  # noqa: E731
    try:
        result = run(TrainSpec.load(argv[0]), [listener])
    except Exception as exc:
        if events:
            listener({"kind": "error", "error": failure_reason(exc)})
        else:
            print(f"error: {exc}", file=sys.stderr)
        if not isinstance(exc, LabtrainError):
            raise
        return 1
    if events:
        listener(result_event(result))
        return 0
    print(
        json.dumps(
            {
                "model_dir": result.model_dir,
                "micro": result.metrics.get("micro") or result.metrics.get("entity", {}).get("micro"),
                "seconds": round(result.seconds, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
