"""`TrainSpec`: everything one training run needs, validated in one place (like spaCy's config)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from labtrain.errors import LabtrainError
from trainers.recipes import recipe

TYPES = ("ner", "assertion", "classification", "relation", "visual_ner")


class SpecError(LabtrainError):
    status_code = 422


@dataclass
class TrainParams:
    """The product page's Training Parameters, plus what a run needs to be repeatable."""

    epochs: int = 5
    learning_rate: float | None = None  # None: the embeddings' default
    decay: float = 0.0  # learning-rate decay: lr / (1 + decay * epochs done), as Spark NLP's NerDL, per step
    warmup: float = 0.0  # share of all steps over which the learning rate rises linearly from 0
    dropout: float = 0.1
    batch_size: int = 16
    seed: int = 0
    early_stopping_patience: int = 0  # epochs without improvement on validation; 0 = off
    validation_fraction: float = 0.1  # share of the train split held out for validation
    eval_size: float | None = None  # the Visual NER page's name for that share; wins when given
    max_length: int = 128  # word pieces per window (MiniLM)
    bf16: bool = False  # mixed precision: bfloat16 autocast (CPUs with AVX-512 BF16, recent GPUs)
    average_last: float = 0.0  # share of the final steps whose weights are averaged (kept if it validates as well)
    few_shot: str = "auto"  # classification, assertion: "auto" (below trainers.fewshot.FEW_SHOT_BELOW), "on", "off"

    def check(self) -> None:
        rules = [
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("learning_rate", self.learning_rate is None or self.learning_rate > 0, "a number > 0"),
            ("decay", self.decay >= 0, "a number >= 0"),
            ("warmup", 0 <= self.warmup < 1, "a number in [0, 1)"),
            ("dropout", 0 <= self.dropout < 1, "a number in [0, 1)"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("early_stopping_patience", self.early_stopping_patience >= 0, "an integer >= 0"),
            ("validation_fraction", 0 <= self.validation_fraction < 1, "a number in [0, 1)"),
            ("eval_size", self.eval_size is None or 0 <= self.eval_size < 1, "a number in [0, 1)"),
            ("average_last", 0 <= self.average_last < 1, "a number in [0, 1)"),
            ("max_length", 16 <= self.max_length <= 512, "an integer in [16, 512]"),
            ("few_shot", self.few_shot in ("auto", "on", "off"), "one of auto, on, off"),
        ]
        for name, ok, what in rules:
            if not ok:
                raise SpecError(f"parameter {name}={getattr(self, name)!r} must be {what}")

    @property
    def validation_share(self) -> float:
        """The share of the train split held out for validation (eval_size, else validation_fraction)."""
        return self.validation_fraction if self.eval_size is None else self.eval_size


@dataclass
class TrainSpec:
    type: str
    snapshot: str  # the training type's Parquet file of a selection snapshot
    output_dir: str
    labels: list[str]
    embeddings: str | None = None  # None: the backend's first option for the type
    backend: str = "pytorch"  # or "sparknlp" (ner, classification)
    params: TrainParams = field(default_factory=TrainParams)
    device: str = "cpu"
    multiple: bool = False  # classification: multiple choice
    language: str = "en"
    from_name: str = "label"  # the config's control (Labels / Choices name) predictions are written for
    to_name: str = "text"
    result_type: str = "labels"  # visual_ner: the result type of its regions ("rectanglelabels" or "labels")
    script: dict | None = None  # ner: a custom training script (trainers.custom): path, name, version, limits
    checkpoint: dict | None = None  # {"folder": where each epoch's state is saved, "resume": a saved state or None}
    given: tuple[str, ...] = ()  # the parameters the request gave; the others come from trainers.recipes

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
        params = data.get("params") or {}
        param_names = {f.name for f in fields(TrainParams)}
        if set(params) - param_names:
            raise SpecError(f"unknown parameter(s): {', '.join(sorted(set(params) - param_names))}")
        for name in ("type", "snapshot", "output_dir", "labels"):
            if name not in data:
                raise SpecError(f"spec field {name!r} is missing")
        spec = cls(**{**data, "params": TrainParams(**params), "given": tuple(sorted(params))})
        spec.check()
        spec.params = with_recipe(spec.params, frozenset(spec.given), spec.type, spec.embeddings)
        spec.params.check()
        return spec

    @classmethod
    def load(cls, path: str | Path) -> TrainSpec:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path} is not valid JSON: {exc}") from None

    def check(self) -> None:
        from trainers.embeddings import BACKENDS, embeddings_for

        if self.type not in TYPES:
            raise SpecError(f"type {self.type!r} is not one of {', '.join(TYPES)}")
        if self.backend not in BACKENDS:
            raise SpecError(f"backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.script is not None:
            self._check_script()
        else:
            if not embeddings_for(self.type, self.backend):
                raise SpecError(
                    f"backend {self.backend!r} cannot train {self.type!r}: {self.type} is licensed in "
                    "Spark NLP, so labtrain trains it with pytorch only"
                )
            self.embeddings = self.embeddings or embeddings_for(self.type, self.backend)[0]
            if self.embeddings not in embeddings_for(self.type, self.backend):
                raise SpecError(
                    f"embeddings {self.embeddings!r} cannot train {self.type!r} with {self.backend}; "
                    f"choose one of {', '.join(embeddings_for(self.type, self.backend))}"
                )
        if not Path(self.snapshot).is_file():
            raise SpecError(f"snapshot {self.snapshot!r} does not exist")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise SpecError("labels must be a non-empty list without repeats")
        if self.device not in ("cpu", "cuda"):
            raise SpecError(f"device {self.device!r} must be 'cpu' or 'cuda'")
        self.params.check()

    def _check_script(self) -> None:
        script = self.script
        if self.type != "ner" or self.backend != "pytorch":
            raise SpecError(
                f"a custom training script trains ner with the pytorch backend, not {self.type} with {self.backend}"
            )
        missing = [k for k in ("path", "name", "time_limit_s", "memory_mb") if k not in script]
        if missing:
            raise SpecError(f"spec field script lacks {', '.join(missing)}")
        if not Path(script["path"]).is_file():
            raise SpecError(f"script {script['path']!r} does not exist")
        for key in ("time_limit_s", "memory_mb"):
            if not isinstance(script[key], int) or isinstance(script[key], bool) or script[key] < 1:
                raise SpecError(f"script {key}={script[key]!r} must be an integer >= 1")
        self.embeddings = "custom"

    def to_dict(self) -> dict:
        return asdict(self)


def with_recipe(
    params: TrainParams, given: frozenset[str], training_type: str, embeddings: str | None, path: str = ""
) -> TrainParams:
    """`params` with the type's and embeddings' recipe (trainers.recipes) for every parameter the
    request did not give."""
    known = {f.name for f in fields(TrainParams)}
    return replace(
        params, **{k: v for k, v in recipe(training_type, embeddings, path).items() if k in known and k not in given}
    )


def recipe_defaults(training_type: str, embeddings: str, path: str = "") -> dict:
    """Every parameter as a training of this type and embeddings gets it when it gives none."""
    return asdict(with_recipe(TrainParams(), frozenset(), training_type, embeddings, path))
