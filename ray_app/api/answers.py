"""Response bodies of the HTTP API routes that models.py does not cover, their 422 answer, and non-JSON media types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from labtrain.training_plan import TrainingPlan
from ray_app.api.models import ImportCounts, SelectionFields

# --- errors ------------------------------------------------------------------------------------------


class RejectedRequest(BaseModel):
    """A 422 answer: a domain rule the request breaks (`labtrain.errors`; `detail` names the field at
    fault), or the request does not fit the route's parameters (FastAPI's list of validation errors)."""

    detail: str | list[dict] = Field(description="the reason; a list of {loc, msg, type, ...} for a malformed request")
    error: str | None = Field(None, description="a domain error's kind, e.g. ValidationError, ConfigError")


REJECTED = {422: {"model": RejectedRequest, "description": "Validation Error"}}


# --- non-JSON answers: their media types, for the OpenAPI document ----------------------------

PNG = {200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}}
ZIP = {200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}}
TEXT_STREAM = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}
NDJSON_STREAM = {
    200: {
        "description": 'one JSON object a line: {"total", "done", "skipped", "model_version"} per page, '
        'or {"error", "done", "total"} last when a page failed',
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


# --- the service and its users ------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: str
    version: str


class Caller(BaseModel):
    name: str
    is_admin: bool


class UserPublic(BaseModel):
    name: str
    is_admin: bool
    created_at: str


# --- selection and snapshots --------------------------------------------------------------------


class SelectedTask(BaseModel):
    task_id: int
    completion_id: int
    author: str | None = None
    review: str | None = None
    reason: str = Field(description="why this completion of the task was chosen")
    split: str = Field(description="train or test")


class SelectionPreview(BaseModel):
    params: SelectionFields = Field(description="the selection as applied (the default split filled in)")
    tasks_in_project: int
    tasks_selected: int
    train: int
    test: int
    skipped: int
    tasks: list[SelectedTask]
    label_counts: dict[str, dict[str, dict[str, int]]] = Field(
        description='per training type and label, {"train": n, "test": n}'
    )
    warnings: list[str]


class SnapshotFile(BaseModel):
    path: str
    rows: int
    labels: list[str]


class SnapshotPublic(BaseModel):
    params: SelectionFields = Field(description="the selection as applied (the default split filled in)")
    files: dict[str, SnapshotFile] = Field(description="one Parquet file per training type")


# --- custom training scripts ------------------------------------------------------------------------


class ScriptPublic(BaseModel):
    name: str
    version: int
    sha256: str
    size: int = Field(description="bytes of the source")
    uploaded_by: str | None = None
    uploaded_at: str
    project: str


class ScriptSource(ScriptPublic):
    source: str


# --- trainings ------------------------------------------------------------------------------------


class FewShotOption(BaseModel):
    chosen_below: int = Field(description="few_shot 'auto' takes this path when the median label has fewer examples")
    values: list[str]
    method: str
    defaults: dict


class MultipleChoiceOption(BaseModel):
    method: str
    defaults: dict = Field(
        description="every parameter as a multiple-choice training gets it (single choice: defaults)"
    )


class EmbeddingsOption(BaseModel):
    name: str
    description: str
    languages: list[str]
    size_mb: float
    default_learning_rate: float
    defaults: dict = Field(description="every parameter as a training of this type and embeddings gets it")
    few_shot: FewShotOption | None = None
    multiple_choice: MultipleChoiceOption | None = None
    registered: EncoderPublic | None = Field(None, description="a registered encoder's facts (labtrain embeddings add)")


class EncoderPublic(BaseModel):
    """A registered encoder (labtrain.encoders.Encoder, less where the service keeps its copy)."""

    name: str
    source: str
    sha256: str
    model_type: str
    architecture: str
    tokenizer: str
    parameters: int
    hidden_size: int
    layers: int
    max_length: int
    cased: bool
    token_types: bool
    languages: list[str]
    license: str | None = None
    description: str
    size_mb: float
    types: list[str] = Field(description="the training types it trains (with the pytorch backend)")
    added_by: str | None = None
    added_at: str | None = None


class BuiltInEmbeddings(BaseModel):
    name: str
    description: str
    types: list[str]
    languages: list[str]
    dimensions: int
    size_mb: float
    default_learning_rate: float
    backend: str


class EmbeddingsList(BaseModel):
    built_in: list[BuiltInEmbeddings]
    registered: list[EncoderPublic]


class BackendOption(BaseModel):
    name: str = Field(description="pytorch or sparknlp")
    available: bool
    embeddings: list[EmbeddingsOption]
    note: str | None = Field(None, description="why the backend cannot train the type here")


class TrainingTypeOption(BaseModel):
    type: str
    available: bool
    embeddings: list[EmbeddingsOption] = Field(description="the pytorch backend's")
    backends: list[BackendOption]
    custom_scripts: list[str] | None = Field(None, description="NER: the project's custom training scripts")
    default_embeddings: str | None = Field(
        None, description="what a training gets when it names none (the project's language)"
    )
    default_note: str | None = Field(None, description="why that default is a makeshift, and what to register")
    note: str | None = None
    note_sparknlp: str | None = None


class TrainingSettingsPublic(BaseModel):
    versioning: bool
    active_learning: dict = Field(description='{"enabled": bool, "every": int, "deploy": bool, "baseline"?: int}')


class TrainingOptions(BaseModel):
    project: str
    types: list[TrainingTypeOption]
    defaults: dict = Field(description="the trainer's default parameters and the validation split")
    gpu_available: bool
    settings: TrainingSettingsPublic


class JobPublic(BaseModel):
    job_id: int
    training_id: int
    type: str
    embeddings: str
    scope: str = Field(description="the license scope it runs under, e.g. training:ner")
    gpu: bool
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    reason: str | None = Field(None, description="why it waits, or why it failed or was cancelled")
    progress: float
    epoch: int | None = None
    metrics: dict | None = Field(None, description="the latest validation scores, then the test summary")
    license: str | None = None
    output_dir: str
    model_name: str | None = None
    ray_job_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    submission_id: str | None = Field(None, description="submit: the Ray job's submission id to use")
    entrypoint: str | None = Field(None, description="submit: the Ray job's entry point")


class DataCheckPublic(BaseModel):
    labels: list[str] = Field(description="the labels the job trains (the config's for its type)")
    counts: dict[str, dict[str, int]] = Field(description="per label, its examples in the train and test parts")
    notes: list[str] = Field(description="what the model will lack: labels without a training example, no test part")


class TrainingData(BaseModel):
    selection: SelectionFields
    snapshot: str | None = Field(description="the folder of the training's Parquet snapshot")
    rows: dict[str, int] = Field(description="rows of the snapshot per training type")
    checks: dict[str, DataCheckPublic] = Field(
        default_factory=dict, description="per training type, the data check made before its job was queued"
    )


class TrainingPublic(BaseModel):
    id: int
    project: str
    source: str = Field(description="manual, active learning, ray job, label studio, tuning or curve")
    requested_by: str | None = None
    created_at: str
    status: str
    progress: float = Field(description="0-100, the mean of its jobs'")
    request: TrainingPlan = Field(description="the request as the API checked it and the catalog keeps it")
    data: TrainingData
    jobs: list[JobPublic]


# --- models ---------------------------------------------------------------------------------------


class ModelPublic(BaseModel):
    name: str
    family: str = Field(description="the name without _v{N}")
    version: int | None = Field(None, description="None with versioning off")
    project: str
    type: str
    embeddings: str
    job_id: int
    training_id: int
    path: str
    metrics: dict = Field(description="test micro and macro P/R/F1")
    trained_at: str
    artifact_uri: str | None = None
    deployed: bool = Field(description="the project's labeling config names it")


class ModelDetail(ModelPublic):
    versions: list[ModelPublic] = Field(description="every version of its family")
    confusion_matrix: dict | None = None


class Benchmark(BaseModel):
    model: str
    type: str
    metrics: dict = Field(description="per label P/R/F1 and support, micro, macro, epochs, data")
    confusion_matrix: dict | None = None
    confusion_matrix_png: str | None = None


class Predictions(BaseModel):
    model: str
    results: list[list[dict]] = Field(description="one result list per input, in the export's result format")


# --- the cluster page -------------------------------------------------------------------------------


class NodePublic(BaseModel):
    node_id: str
    address: str | None = None
    alive: bool
    cpus: float
    gpus: float
    memory_gb: float
    head: bool


class ResourceTotals(BaseModel):
    CPU: float
    GPU: float
    memory_gb: float


class TrainingServer(BaseModel):
    job_id: int
    training_id: int
    project: str
    type: str
    bundle: str
    license: str
    status: str = Field(description="running or cancelling")
    started_by: str | None = None
    started_at: str
    worker_pid: int | None = None
    worker_node: str | None = None


class QueuedJob(BaseModel):
    job_id: int
    training_id: int
    type: str
    reason: str | None = None


class LicenseUsage(BaseModel):
    id: str
    scopes: list[str]
    max_jobs: int
    holders: list[int] = Field(description="the job ids holding a slot")
    in_use: int


class NodeTypePublic(BaseModel):
    name: str
    resources: dict[str, float]
    max_workers: int


class AutoscalerPublic(BaseModel):
    config: str | None = Field(None, description="where the node types come from")
    demand: list[dict[str, float]] = Field(description="the bundles shown to the autoscaler")
    node_types: list[NodeTypePublic]


class ClusterPublic(BaseModel):
    nodes: list[NodePublic]
    total: ResourceTotals
    available: ResourceTotals
    gpu_available: bool
    dashboard_url: str | None = None
    free_for_training: dict[str, float]
    training_servers: list[TrainingServer]
    queue: list[QueuedJob]
    licenses: list[LicenseUsage]
    license_file: str
    artifacts: str | None = Field(None, description="the artifact store's URI, if the service has one")
    autoscaler: AutoscalerPublic


# --- Label Studio: the link and labtrain as its ML backend ---------------------------------------------


class MirroredImport(ImportCounts):
    """A sync's import: its counts and the completions deleted because Label Studio no longer has them."""

    deleted: int


class SyncPublic(MirroredImport):
    active_learning_training: int | None = Field(None, description="the training active learning started, if any")


class LinkPublic(BaseModel):
    project: str
    url: str = Field(description="Label Studio's URL")
    ls_project: int
    backend_url: str
    ml_backend_id: int | None = None
    webhook_id: int | None = None
    linked_by: str | None = None
    linked_at: str | None = None
    last_sync: str | None = None
    last_sync_tasks: int | None = None
    last_error: str | None = None
    backend_user: str = Field(description="the basic-auth user of Label Studio's calls")


class LinkShown(LinkPublic):
    backend_state: str | None = Field(
        None, description="as Label Studio reports it: CONNECTED, ERROR, ... or why it cannot be read"
    )


class LinkCreated(LinkPublic):
    backend_password: str = Field(description="the basic-auth password Label Studio uses; shown this once")
    imported: MirroredImport
    label_studio_title: str | None = None
    active_learning_training: int | None = Field(None, description="the training active learning started, if any")


class BackendHealth(BaseModel):
    status: str
    model_class: str
    project: str
    model_version: str


class BackendSetup(BaseModel):
    model_version: str


class BackendVersions(BaseModel):
    versions: list[str] = Field(description="the project's models, newest last")


class BackendPrediction(BaseModel):
    result: list[dict]
    score: float | None = Field(None, description="the mean test F1 of the models that predicted")
    model_version: str


class BackendPredictions(BaseModel):
    results: list[BackendPrediction] = Field(description="one per task, in order")


class BackendEventAnswer(BaseModel):
    status: str = Field(description="accepted or ignored")
    action: Any = Field(None, description="the event's action as Label Studio sent it")
