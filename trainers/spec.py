"""`TrainSpec`: everything one training run needs, validated in one place (like spaCy's config).
`TrainParams` is the one definition of the training parameters: the HTTP body's `params`
(`ray_app.api.models.TrainingParamsIn`), the CLI's flags and the trainer's spec all come from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from labtrain.encoders import ENCODER_TYPES, Encoder
from labtrain.errors import LabtrainError
from trainers.recipes import MULTIPLE, recipe

TYPES = ("ner", "assertion", "classification", "relation", "visual_ner")


class SpecError(LabtrainError):
    status_code = 422


class TrainParams(BaseModel):
    """The product page's Training Parameters, plus what a run needs to be repeatable. Each rule is
    written once, here, as the field's constraint; `parse` turns a broken rule into a `SpecError`
    naming the parameter."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(5, ge=1, description="passes over the training data")
    learning_rate: float | None = Field(None, gt=0, description="default: the embeddings' own")
    decay: float = Field(
        0.0, ge=0, description="learning-rate decay: lr / (1 + decay * epochs done), as Spark NLP's NerDL, per step"
    )
    warmup: float = Field(
        0.0, ge=0, lt=1, description="share of all steps over which the learning rate rises linearly from 0"
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout rate during training")
    batch_size: int = Field(16, ge=1, description="examples per optimizer step")
    seed: int = Field(0, description="the training's seed (weights, batches); the split's is selection.split_seed")
    early_stopping_patience: int = Field(0, ge=0, description="epochs without improvement on validation; 0 = off")
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of the train split held out for validation after each epoch"
    )
    eval_size: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Visual NER: share of the training tasks held out for evaluation after each epoch "
        "(the Visual NER page's name for validation_fraction; wins when given)",
    )
    max_length: int = Field(128, ge=16, le=512, description="word pieces per window (MiniLM)")
    bf16: bool = Field(False, description="bfloat16 autocast where the CPU or GPU has it natively")
    average_last: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of the final steps whose weights are averaged (kept unless an earlier epoch validates better)",
    )
    crf: bool = Field(
        False,
        description="NER with MiniLM: train through a CRF layer whose tag-to-tag transitions are learned with "
        "the encoder (decoding takes them instead of the transitions counted on the training data)",
    )
    few_shot: Literal["auto", "on", "off"] = Field(
        "auto",
        description="classification, assertion: 'auto' (the few-shot path when the median label has fewer "
        "training examples than trainers.recipes.FEW_SHOT_BELOW), 'on' or 'off'",
    )

    @classmethod
    def parse(cls, values: dict[str, Any]) -> TrainParams:
        """The parameters from a request's or spec's dict; a wrong one raises `SpecError` naming it."""
        unknown = set(values) - set(cls.model_fields)
        if unknown:
            raise SpecError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        try:
            return cls.model_validate(values)
        except PydanticError as exc:
            name = str(exc.errors()[0]["loc"][0])
            raise SpecError(f"parameter {name}={values[name]!r} must be {rule(name)}") from None

    def check(self) -> None:
        TrainParams.parse(self.model_dump())

    @property
    def validation_share(self) -> float:
        """The share of the train split held out for validation (eval_size, else validation_fraction)."""
        return self.validation_fraction if self.eval_size is None else self.eval_size


def rule(name: str) -> str:
    """A parameter's rule in words, read from its field: 'an integer >= 1', 'a number in [0, 1)'."""
    field = TrainParams.model_fields[name]
    if get_origin(field.annotation) is Literal:
        return f"one of {', '.join(get_args(field.annotation))}"
    if field.annotation is bool:
        return "true or false"
    kind = "an integer" if int in (field.annotation, *get_args(field.annotation)) else "a number"
    bounds = {k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    low = f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else None
    high = f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else None
    if low and high:
        return f"{kind} in {low}, {high}"
    if low:
        return f"{kind} {'>=' if low[0] == '[' else '>'} {low[1:]}"
    return f"{kind} {'<=' if high[-1] == ']' else '<'} {high[:-1]}" if high else kind


class TrainSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    snapshot: str  # the training type's Parquet file of a selection snapshot
    output_dir: str
    labels: list[str]
    embeddings: str | None = None  # None: the backend's first option for the type
    encoder: Encoder | None = None  # a registered encoder's record (embeddings names it), from the catalog
    backend: str = "pytorch"  # or "sparknlp" (ner, classification)
    params: TrainParams = Field(default_factory=TrainParams)
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
        unknown = set(data) - set(cls.model_fields)
        if unknown:
            raise SpecError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
        for name in ("type", "snapshot", "output_dir", "labels"):
            if name not in data:
                raise SpecError(f"spec field {name!r} is missing")
        params = TrainParams.parse(data.get("params") or {})
        try:
            spec = cls.model_validate({**data, "params": params, "given": tuple(sorted(params.model_fields_set))})
        except PydanticError as exc:
            error = exc.errors()[0]
            raise SpecError(f"spec field {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
        spec.check()
        spec.params = with_recipe(
            spec.params, frozenset(spec.given), spec.type, spec.embeddings, spec.recipe_path, spec.encoder_width
        )
        spec.params.check()
        return spec

    @property
    def recipe_path(self) -> str:
        """Which of the type's recipes (trainers.recipes) applies: multiple choice has its own."""
        return MULTIPLE if self.type == "classification" and self.multiple else ""

    @property
    def encoder_width(self) -> int | None:
        """A registered encoder's hidden size (its recipe depends on it), else None."""
        return self.encoder.hidden_size if self.encoder else None

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
            if self.encoder is not None:
                self._check_encoder()
            elif self.embeddings not in embeddings_for(self.type, self.backend):
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

    def _check_encoder(self) -> None:
        if self.encoder.name != self.embeddings:
            raise SpecError(f"spec field encoder is {self.encoder.name!r} but embeddings is {self.embeddings!r}")
        if self.type not in ENCODER_TYPES or self.backend != "pytorch":
            raise SpecError(
                f"encoder {self.embeddings!r} (registered) trains {', '.join(ENCODER_TYPES)} with pytorch, "
                f"not {self.type} with {self.backend}"
            )

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
        return self.model_dump()


def with_recipe(
    params: TrainParams,
    given: frozenset[str],
    training_type: str,
    embeddings: str | None,
    path: str = "",
    encoder_width: int | None = None,
) -> TrainParams:
    """`params` with the type's and embeddings' recipe (trainers.recipes; a registered encoder's by its
    width) for every parameter the request did not give."""
    return params.model_copy(
        update={
            k: v
            for k, v in recipe(training_type, embeddings, path, encoder_width).items()
            if k in TrainParams.model_fields and k not in given
        }
    )


def recipe_defaults(training_type: str, embeddings: str, path: str = "", encoder_width: int | None = None) -> dict:
    """Every parameter as a training of this type and embeddings gets it when it gives none."""
    return with_recipe(TrainParams(), frozenset(), training_type, embeddings, path, encoder_width).model_dump()
