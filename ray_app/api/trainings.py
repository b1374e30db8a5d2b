"""Trainings: what a project may train (options), its settings, starting one, its status,
live log, log archive, cancel, and the project's history."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from labtrain.encoders import ENCODER_TYPES, Encoder
from labtrain.errors import NotFound, ValidationError
from ray_app.api.answers import PNG, TEXT_STREAM, ZIP, TrainingOptions, TrainingPublic, TrainingSettingsPublic
from ray_app.api.deps import CurrentUser, JobsDep, ProjectManager, ProjectMember, StorageDep
from ray_app.api.embeddings import public as public_encoder
from ray_app.api.models import TrainingRequest, TrainingSettings
from storage.history import ACTIVE
from storage.selection import DEFAULT_VALIDATION_SPLIT
from trainers.embeddings import BACKENDS, REGISTRY, default_embeddings, embeddings_for
from trainers.recipes import FEW_SHOT, FEW_SHOT_BELOW, FEW_SHOT_TYPES, MULTIPLE
from trainers.spark import unavailable_reason as spark_unavailable_reason
from trainers.spec import TYPES, SpecError, TrainParams, recipe_defaults
from trainers.sweep import default_space, parse_budget, parse_points, parse_space

router = APIRouter(tags=["trainings"])
LICENSED_IN_SPARKNLP = ("assertion", "relation", "visual_ner")
ARCHIVED = (
    "job.log",
    "training.log",
    "metrics.json",
    "labtrain.json",
    "confusion_matrix.json",
    "confusion_matrix.png",
    "script.py",
    "curve.json",
    "curve.png",
)


def training_request(body: TrainingRequest, registered: list[Encoder] = (), language: str = "en") -> dict:
    """The request as the job manager and the history keep it, checked: types the trainers
    know, a backend that can train each of them here, embeddings each type can use (labtrain's own
    or a `registered` encoder), parameters in range (the catalog checks the rest)."""
    if body.backend not in BACKENDS:
        raise ValidationError(f"backend {body.backend!r} is not one of {', '.join(BACKENDS)}")
    if body.backend == "sparknlp":
        reason = spark_unavailable_reason()
        if reason:
            raise ValidationError(f"backend 'sparknlp' is not available on this service: {reason}")
        if body.gpu or body.use_gpu:
            raise ValidationError(
                "gpu: the sparknlp backend trains on CPU (labtrain ships the CPU build of Spark "
                "NLP); use backend 'pytorch' for GPU training"
            )
    if body.script is not None:
        return script_request(body)
    embeddings, notes = {}, {}
    for t in dict.fromkeys(body.types):
        if t not in TYPES:
            raise ValidationError(f"training type {t!r} is not one of {', '.join(TYPES)}")
        options = embeddings_for(t, body.backend) + registered_for(t, body.backend, registered)
        if not options:
            raise ValidationError(
                f"training type {t!r} cannot use backend {body.backend!r}: {t} is licensed in "
                "Spark NLP, so labtrain trains it with 'pytorch' only"
            )
        chosen = body.embeddings.get(t) if isinstance(body.embeddings, dict) else body.embeddings
        if not chosen:
            chosen, note = default_embeddings(t, body.backend, language, registered)
            if note:
                notes[t] = note
        if chosen not in options:
            raise ValidationError(
                f"embeddings {chosen!r} cannot train {t!r} with {body.backend}; choose one of {', '.join(options)}"
            )
        embeddings[t] = chosen
    if isinstance(body.embeddings, dict) and set(body.embeddings) - set(body.types):
        raise ValidationError(
            f"embeddings given for types not requested: {sorted(set(body.embeddings) - set(body.types))}"
        )
    params = body.params.model_dump(exclude_none=True)
    TrainParams.parse(params)
    request = {
        "types": list(embeddings),
        "embeddings": embeddings,
        "embeddings_notes": notes,
        "params": params,
        "selection": body.selection.model_dump(),
        "deploy": body.deploy,
        "gpu": body.gpu or body.use_gpu,
        "cpus": body.cpus,
        "backend": body.backend,
        "runner": "ray_job" if body.submit else "ray_train",
        "max_retries": body.max_retries,
    }
    return {**request, **sweep_request(body, request, registered)}


def registered_for(training_type: str, backend: str, registered: list[Encoder]) -> list[str]:
    """The registered encoders a type can train with on this backend (pytorch: the types of ENCODER_TYPES)."""
    return [e.name for e in registered] if backend == "pytorch" and training_type in ENCODER_TYPES else []


def default_learning_rate(training_type: str, embeddings: str, registered: list[Encoder]) -> float:
    """The learning rate a training gets when it gives none: the embeddings' recipe's."""
    if embeddings in REGISTRY:
        return REGISTRY[embeddings].learning_rate_for(training_type)
    width = next(e.hidden_size for e in registered if e.name == embeddings)
    return recipe_defaults(training_type, embeddings, encoder_width=width)["learning_rate"]


def sweep_request(body: TrainingRequest, request: dict, registered: list[Encoder] = ()) -> dict:
    """A parameter search (`tune`) or a train-curve (`curve`): one type, pytorch, run by the service."""
    if body.tune is None and body.curve is None:
        return {}
    what = "tune" if body.tune is not None else "curve"
    if body.tune is not None and body.curve is not None:
        raise ValidationError("tune and curve: ask for one of them per training")
    if len(request["types"]) != 1:
        raise ValidationError(f"{what}: give one training type (this request has {', '.join(request['types'])})")
    if body.backend != "pytorch":
        raise ValidationError(f"{what}: runs with backend 'pytorch' (Ray Train workers); not with {body.backend!r}")
    if body.submit:
        raise ValidationError(f"{what}: runs inside the service (Ray Tune); it cannot be submitted as a Ray job")
    try:
        if body.tune is not None:
            (kind,) = request["types"]
            space = parse_space(body.tune.space) or default_space(
                request["params"].get("learning_rate")
                or default_learning_rate(kind, request["embeddings"][kind], registered)
            )
            return {"tune": {"trials": body.tune.trials, "space": space, "budget_s": parse_budget(body.tune.budget)}}
        if body.deploy:
            raise ValidationError(
                "curve: measures how the score grows with data and registers no model; deploy does not apply"
            )
        return {"curve": {"points": parse_points(body.curve.points), "seeds": body.curve.seeds}}
    except SpecError as exc:
        raise ValidationError(str(exc)) from None


def script_request(body: TrainingRequest) -> dict:
    """A training by a custom script: NER alone, pytorch, its embeddings are the script's own."""
    types = list(dict.fromkeys(body.types))
    if body.tune is not None or body.curve is not None:
        raise ValidationError(
            f"{'tune' if body.tune is not None else 'curve'}: not with a custom script (the script "
            "chooses its own parameters); run it without --script"
        )
    if types != ["ner"]:
        raise ValidationError(
            f"script: a custom training script trains NER only; this request asks for "
            f"{', '.join(types)} (train the other types in a request without a script)"
        )
    if body.backend != "pytorch":
        raise ValidationError("script: a custom training script runs with backend 'pytorch'")
    if body.embeddings not in (None, "custom", {"ner": "custom"}):
        raise ValidationError("embeddings: a custom training script chooses its own; leave embeddings out")
    params = body.params.model_dump(exclude_none=True)
    TrainParams.parse(params)
    return {
        "types": types,
        "embeddings": {"ner": "custom"},
        "params": params,
        "selection": body.selection.model_dump(),
        "deploy": body.deploy,
        "gpu": body.gpu or body.use_gpu,
        "cpus": body.cpus,
        "backend": "pytorch",
        "runner": "ray_job" if body.submit else "ray_train",
        "max_retries": body.max_retries,
        "script": {
            "name": body.script,
            "version": body.script_version,
            "time_limit_s": body.script_time_limit_s,
            "memory_mb": body.script_memory_mb,
        },
    }


def embeddings_options(training_type: str, backend: str, registered: list[Encoder] = ()) -> list[dict]:
    """Each embeddings the type can use, with the defaults a training gets from its recipe
    (trainers.recipes) and, where it applies, the few-shot path's (trainers.fewshot); the registered
    encoders after labtrain's own."""
    if training_type not in TYPES:
        return []
    options = []
    for e in embeddings_for(training_type, backend):
        entry = {
            "name": e,
            "description": REGISTRY[e].description,
            "languages": list(REGISTRY[e].languages),
            "size_mb": REGISTRY[e].size_mb,
            "default_learning_rate": REGISTRY[e].learning_rate_for(training_type),
            "defaults": recipe_defaults(training_type, e),
        }
        if training_type in FEW_SHOT_TYPES and e == "minilm":
            entry["few_shot"] = {
                "chosen_below": FEW_SHOT_BELOW,
                "values": ["auto", "on", "off"],
                "method": "SetFit: contrastive sentence-pair fine-tuning of the sentence encoder, "
                "then a logistic regression head",
                "defaults": recipe_defaults(training_type, e, FEW_SHOT),
            }
        if training_type == "classification" and e == "minilm":
            entry["multiple_choice"] = {
                "method": "the mean-pooled sentence encoder and a sigmoid head per label, fine-tuned end to end",
                "defaults": recipe_defaults(training_type, e, MULTIPLE),
            }
        options.append(entry)
    for name in registered_for(training_type, backend, registered):
        encoder = next(e for e in registered if e.name == name)
        entry = {
            "name": name,
            "description": encoder.description,
            "languages": encoder.languages,
            "size_mb": encoder.size_mb,
            "default_learning_rate": default_learning_rate(training_type, name, registered),
            "defaults": recipe_defaults(training_type, name, encoder_width=encoder.hidden_size),
            "registered": public_encoder(encoder),
        }
        if training_type in FEW_SHOT_TYPES:
            entry["few_shot"] = {
                "chosen_below": FEW_SHOT_BELOW,
                "values": ["auto", "on", "off"],
                "method": "SetFit: contrastive sentence-pair fine-tuning of the encoder (mean pooled), "
                "then a logistic regression head",
                "defaults": recipe_defaults(training_type, name, FEW_SHOT, encoder.hidden_size),
            }
        options.append(entry)
    return options


@router.get("/api/projects/{name}/training/options", response_model=TrainingOptions)
async def training_options(name: str, user: ProjectMember, storage: StorageDep, jobs: JobsDep):
    """The page's drop-downs: the types this config offers, the embeddings of each, defaults."""
    project = await storage.project(name)
    summary, registered = project["training_types"], await storage.encoders()
    cluster = await jobs.cluster()
    spark_reason = spark_unavailable_reason()
    types = []
    for t in summary:
        entry = {
            "type": t,
            "available": t in TYPES,
            "embeddings": embeddings_options(t, "pytorch", registered),
            "backends": [
                {"name": "pytorch", "available": t in TYPES, "embeddings": embeddings_options(t, "pytorch", registered)}
            ],
        }
        if t in TYPES:
            entry["default_embeddings"], entry["default_note"] = default_embeddings(
                t, "pytorch", project["language"], registered
            )
        if t == "ner":
            entry["custom_scripts"] = sorted({s["name"] for s in await storage.scripts(name)})
        if t == "visual_ner":
            entry["note"] = (
                "runs under the license scope ocr:training (pre-annotation: ocr:inference; the embedded "
                "default grants both, a license file limits them); "
                "'Use available GPU' (use_gpu) trains on a GPU bundle"
            )
        spark = {
            "name": "sparknlp",
            "available": bool(embeddings_for(t, "sparknlp")) and not spark_reason,
            "embeddings": embeddings_options(t, "sparknlp"),
        }
        if t in LICENSED_IN_SPARKNLP:
            spark["note"] = entry["note_sparknlp"] = "licensed in Spark NLP: PyTorch only"
        elif spark_reason:
            spark["note"] = spark_reason
        entry["backends"].append(spark)
        types.append(entry)
    defaults = {k: v for k, v in TrainParams().model_dump().items() if k != "learning_rate"}
    return {
        "project": name,
        "types": types,
        "defaults": {**defaults, "validation_split": DEFAULT_VALIDATION_SPLIT},
        "gpu_available": cluster["gpu_available"],
        "settings": await storage.training_settings(name),
    }


@router.get("/api/projects/{name}/training/settings", response_model=TrainingSettingsPublic)
async def get_settings(name: str, user: ProjectMember, storage: StorageDep):
    """Versioning and active learning of the project."""
    return await storage.training_settings(name)


@router.put("/api/projects/{name}/training/settings", response_model=TrainingSettingsPublic)
async def put_settings(name: str, body: TrainingSettings, user: ProjectManager, storage: StorageDep):
    """Change versioning or active learning (409 while a training of the project runs)."""
    return await storage.set_training_settings(name, body.versioning, body.active_learning)


@router.post("/api/projects/{name}/trainings", response_model=TrainingPublic, status_code=201)
async def start_training(name: str, body: TrainingRequest, user: ProjectManager, storage: StorageDep, jobs: JobsDep):
    """Snapshot the selection and queue one job per type; answers at once with the training."""
    language = (await storage.project(name))["language"]
    request = training_request(body, await storage.encoders(), language)
    source = "tuning" if request.get("tune") else "curve" if request.get("curve") else "manual"
    return await jobs.submit(name, request, user.name, source)


@router.get("/api/projects/{name}/trainings", response_model=list[TrainingPublic])
async def history(
    name: str, user: ProjectMember, storage: StorageDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
):
    """Every training of the project, newest first."""
    return await storage.trainings(name, limit)


async def _visible_training(training_id: int, user, storage, least: str = "annotator") -> dict:
    training = await storage.training(training_id)
    await storage.require_role(training["project"], user, least)
    return training


@router.get("/api/trainings/{training_id}", response_model=TrainingPublic)
async def training_status(training_id: int, user: CurrentUser, storage: StorageDep):
    """Status, progress 0-100 and, per job, type, epoch, metrics, model name, error."""
    return await _visible_training(training_id, user, storage)


@router.post("/api/trainings/{training_id}/cancel", response_model=TrainingPublic)
async def cancel_training(training_id: int, user: CurrentUser, storage: StorageDep, jobs: JobsDep):
    """Stop every job of the training that has not ended; frees their bundles and licenses."""
    await _visible_training(training_id, user, storage, "manager")
    return await jobs.cancel(training_id, user.name)


@router.get("/api/trainings/{training_id}/logs", response_class=StreamingResponse, responses={**TEXT_STREAM})
async def stream_logs(training_id: int, user: CurrentUser, storage: StorageDep, follow: bool = True):
    """The live log of every job (a chunked text stream); ends when the training has ended."""
    training = await _visible_training(training_id, user, storage)

    async def lines():
        nonlocal training
        offsets: dict[int, int] = {}
        prefix = len(training["jobs"]) > 1
        while True:
            ended = training["status"] not in ACTIVE
            for job in training["jobs"]:
                path = Path(job["output_dir"]) / "job.log"
                if not path.exists():
                    continue
                with path.open("rb") as f:
                    f.seek(offsets.get(job["job_id"], 0))
                    chunk = f.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                offsets[job["job_id"]] = offsets.get(job["job_id"], 0) + len(complete)
                for line in complete.decode("utf-8", "replace").splitlines():
                    yield (f"[{job['type']}] " if prefix else "") + line + "\n"
            if ended or not follow:
                return
            await asyncio.sleep(0.5)
            training = await storage.training(training_id)

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")


@router.get("/api/trainings/{training_id}/logs/download", response_class=Response, responses={**ZIP})
async def download_logs(training_id: int, user: CurrentUser, storage: StorageDep):
    """A zip with every job's logs, parameters (labtrain.json), metrics and confusion matrix."""
    training = await _visible_training(training_id, user, storage)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("training.json", json.dumps(training, indent=2, default=str))
        for job in training["jobs"]:
            folder = Path(job["output_dir"])
            for file in ARCHIVED:
                if (folder / file).exists():
                    archive.write(folder / file, f"{job['type']}/{file}")
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="training-{training_id}-logs.zip"'},
    )


@router.get("/api/trainings/{training_id}/curve.png", response_class=Response, responses={**PNG})
async def curve_png(training_id: int, user: CurrentUser, storage: StorageDep):
    """A train-curve's plot: test F1 against the number of training tasks, with its verdict."""
    training = await _visible_training(training_id, user, storage)
    if training["source"] != "curve":
        raise NotFound(f"training {training_id} is not a train-curve (its source is {training['source']!r})")
    path = Path(training["jobs"][0]["output_dir"]) / "curve.png"
    if not path.exists():
        raise NotFound(f"training {training_id} has no plot yet: it is {training['status']}")
    return Response(path.read_bytes(), media_type="image/png")
