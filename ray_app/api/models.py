"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, create_model

from trainers.spec import TrainParams


class UserCreate(BaseModel):
    name: str
    is_admin: bool = False


class UserToken(BaseModel):
    name: str
    token: str


class ProjectCreate(BaseModel):
    name: str
    config: str = Field(description="labeling config, Label Studio XML")
    language: str = "en"


class ProjectPublic(BaseModel):
    name: str
    language: str
    created_by: str | None
    created_at: str
    tasks: int
    completions: int
    submitted_completions: int
    training_types: list[str]


class ConfigUpdate(BaseModel):
    config: str = Field(description="labeling config, Label Studio XML")


class ConfigPublic(BaseModel):
    config: str
    summary: dict


class MemberIn(BaseModel):
    username: str
    role: str
    priority: int = 0


class MembersUpdate(BaseModel):
    set: list[MemberIn] = []
    remove: list[str] = []


class MemberPublic(BaseModel):
    username: str
    role: str
    priority: int


class ImportCounts(BaseModel):
    """What an import did: the project's totals after it, and its rows inserted, updated, unchanged."""

    project: str
    formats: list[str]
    tasks: int
    completions: int
    inserted: int
    updated: int
    unchanged: int
    images: int


class ImportPublic(ImportCounts):
    active_learning_training: int | None = None  # the training active learning started, if any


class SelectionFields(BaseModel):
    """Which completions a training uses (`storage.selection.SelectionParams`)."""

    tags: list[str] | None = None
    reviewed_only: bool = False
    validation_split: float | None = None
    split_seed: int = Field(
        0,
        validation_alias=AliasChoices("split_seed", "seed"),
        description="which tasks the validation split draws; the same in a preview and a training "
        "(params.seed is the training's own seed)",
    )
    test_tag: str | None = None
    train_tag: str | None = None


class SelectionRequest(SelectionFields):
    limit: int | None = Field(None, ge=1, description="list at most this many tasks (counts cover all)")


class SnapshotRequest(SelectionRequest):
    types: list[str] | None = None


def optional_params() -> type[BaseModel]:
    """The page's Training Parameters as the HTTP body gives them: `TrainParams`' fields, each
    optional (left out: the recipe's default), with its type, description and range documented.
    `TrainParams.parse` applies the rules, so a wrong value is answered with its name and rule."""
    bounds = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    fields = {}
    for name, field in TrainParams.model_fields.items():
        schema = {bounds[k]: getattr(m, k) for m in field.metadata for k in bounds if hasattr(m, k)}
        fields[name] = (field.annotation | None, Field(None, description=field.description, json_schema_extra=schema))
    return create_model(
        "TrainingParamsIn",
        __config__=ConfigDict(extra="allow"),  # TrainParams.parse names an unknown parameter
        __doc__="The page's Training Parameters; anything left out takes the recipe's default.",
        **fields,
    )


TrainingParamsIn = optional_params()


class TuneRequest(BaseModel):
    trials: int = Field(8, ge=1, le=200, description="how many parameter sets to try")
    space: str | dict | None = Field(
        None,
        description="e.g. 'lr=1e-5:1e-3:log,dropout=0.1:0.5,batch_size=8|16|32'; "
        "default: the embeddings' learning rate x/10, dropout, batch size",
    )
    budget: str | float | None = Field(None, description="stop every trial after this long: '30m', '2h', seconds")


class CurveRequest(BaseModel):
    points: str | list[int] | None = Field(None, description="percentages of the train part (default 25,50,75,100)")
    seeds: int = Field(1, ge=1, le=5, description="runs per point, each with its own draw and seed")


class TrainingRequest(BaseModel):
    types: list[str] = Field(min_length=1, description="ner, assertion, classification, relation, visual_ner")
    embeddings: str | dict[str, str] | None = Field(
        None, description="one name for every type, or one per type; default: each type's first option"
    )
    params: TrainingParamsIn = TrainingParamsIn()
    selection: SelectionFields = SelectionFields()
    deploy: bool = Field(False, description="after success, the labeling config names the new model")
    gpu: bool = Field(False, description="ask for a GPU bundle (1 GPU + 1 CPU) instead of a CPU bundle")
    use_gpu: bool = Field(False, description="the page's 'Use available GPU' (the same as gpu)")
    cpus: int | None = Field(
        None,
        ge=1,
        le=256,
        description="CPUs of each job's bundle (of each trial's, in a search or a curve). Default: 1, "
        "and a CPU job that runs alone on a cluster without an autoscaler takes every CPU of the "
        "largest node (up to 16)",
    )
    backend: str = "pytorch"
    submit: bool = Field(
        False,
        description="run as a Ray job: the answer gives each job's entry point and "
        "submission id; `labtrain train --submit` submits them",
    )
    max_retries: int = Field(
        1,
        ge=0,
        le=10,
        description="how often a job is started again when its worker or node "
        "is lost (from its last epoch's checkpoint when the service "
        "has an artifact store)",
    )
    script: str | None = Field(
        None, description="NER only: train with this custom script of the project instead of labtrain's trainer"
    )
    script_version: int | None = Field(None, ge=1, description="the script's version (default: its latest)")
    script_time_limit_s: int = Field(3600, ge=1, le=7 * 24 * 3600, description="the script is stopped after this")
    script_memory_mb: int = Field(
        4096,
        ge=64,
        le=1 << 20,
        description="the script is stopped past this resident memory (its own and its children's)",
    )
    tune: TuneRequest | None = Field(
        None,
        description="search the parameters with Ray Tune (one type); the best trial's model is kept (source 'tuning')",
    )
    curve: CurveRequest | None = Field(
        None,
        description="train on growing shares of the train part and score each "
        "on the same test part (one type; source 'curve')",
    )


class EncoderAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the name trainings choose it by (letters, digits, _ . -)")
    source: str = Field(
        description="a folder in Hugging Face layout on the service's machine, an artifact-store URI "
        "(s3://..., gs://...) or a hub id (org/name)"
    )
    languages: list[str] = Field(default_factory=list, description="ISO codes; default: the model card's")
    description: str = ""


class ScriptUpload(BaseModel):
    name: str = Field(description="the script's name in the project (letters, digits, _ . -)")
    source: str = Field(description="Python source; see the README's 'Custom training scripts' for its contract")


class TrainingSettings(BaseModel):
    versioning: bool | None = None
    active_learning: dict | None = Field(None, description='{"enabled": bool, "every": int, "deploy": bool}')


class PredictRequest(BaseModel):
    texts: list[str] | None = None
    inputs: list[dict] | None = Field(None, description='assertion / relation: {"text", "entities": [...]}')
    images: list[str | dict] | None = Field(
        None, description='Visual NER: image data URIs, or {"image": data URI, "ocr": [words as in data.ocr]}'
    )


class LinkRequest(BaseModel):
    label_studio: str = Field(description="Label Studio's URL, e.g. http://127.0.0.1:8080")
    ls_project: int = Field(ge=1, description="the project's id in Label Studio")
    ls_token: str = Field(min_length=1, description="a Label Studio API token (kept sealed, never shown again)")
    connect: bool = Field(False, description="also register labtrain as the project's ML backend in Label Studio")
    backend_url: str | None = Field(
        None,
        description="the URL Label Studio reaches labtrain's backend at (default: this service's URL + /ml/{project})",
    )
    language: str = Field("en", description="the language of a project created by the link")


class PushRequest(BaseModel):
    model: str | None = Field(None, description="the model whose predictions to write (default: the deployed ones)")
