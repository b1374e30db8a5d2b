"""Models: their versions and benchmarks, and pre-annotation with a trained model."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from labtrain.errors import Forbidden, NotFound, ValidationError
from ray_app.api.answers import PNG, Benchmark, ModelDetail, ModelPublic, Predictions
from ray_app.api.deps import CurrentUser, JobsDep, StorageDep
from ray_app.api.models import PredictRequest
from storage.artifacts import cached_folder

router = APIRouter(prefix="/api/models", tags=["models"])
LOADED_MODELS = 4  # per replica; the least recently used is dropped


async def _visible_model(name: str, user, storage, with_versions: bool = False) -> dict:
    model = await storage.model(name, with_versions)
    await storage.require_role(model["project"], user, "annotator")
    return model


@router.get("", response_model=list[ModelPublic])
async def list_models(user: CurrentUser, storage: StorageDep):
    """Every model of the projects the caller belongs to."""
    return await storage.models(user)


@router.get("/{name}", response_model=ModelDetail)
async def show_model(name: str, user: CurrentUser, storage: StorageDep):
    """One model (a family name gives its latest version) with all versions of its family and
    its confusion matrix."""
    model = await _visible_model(name, user, storage, with_versions=True)
    model["confusion_matrix"] = (await storage.model_benchmark(model["name"]))["confusion_matrix"]
    return model


@router.get("/{name}/benchmark", response_model=Benchmark)
async def benchmark(name: str, user: CurrentUser, storage: StorageDep):
    """Test metrics: per label P/R/F1 and support, micro and macro, the confusion matrix."""
    await _visible_model(name, user, storage)
    return await storage.model_benchmark(name)


@router.get("/{name}/confusion_matrix.png", response_class=FileResponse, responses={**PNG})
async def confusion_png(name: str, user: CurrentUser, storage: StorageDep):
    """The confusion matrix as a picture (classification, assertion, relation)."""
    model = await _visible_model(name, user, storage)
    path = Path(model["path"]) / "confusion_matrix.png"
    if not path.exists():
        raise NotFound(f"model {model['name']!r} has no confusion matrix picture ({model['type']})")
    return FileResponse(path, media_type="image/png")


@router.post("/{name}/predict", response_model=Predictions)
async def predict(
    name: str, body: PredictRequest, request: Request, user: CurrentUser, storage: StorageDep, jobs: JobsDep
):
    """Pre-annotate: one result list per input, in the export's result format. The model is
    loaded once per replica. A Visual NER model takes `images` (data URIs) and needs a license
    with scope ocr:inference."""
    model = await _visible_model(name, user, storage)
    if model["type"] == "visual_ner":
        inputs = visual_inputs(body)
        if not await jobs.licensed("ocr:inference"):
            raise Forbidden(
                f"model {model['name']!r} is a Visual NER model: pre-annotation needs a license with "
                "scope ocr:inference"
            )
        predictor = await run_in_threadpool(_loaded, request.app.state, model)
        return {"model": model["name"], "results": await run_in_threadpool(predictor.predict, inputs)}
    if body.images is not None:
        raise ValidationError(f"'images' are for Visual NER models; {model['name']!r} is a {model['type']} model")
    inputs = body.texts if body.texts is not None else body.inputs
    if not inputs:
        raise ValidationError("give 'texts' (NER, classification) or 'inputs' (assertion, relation)")
    if model["type"] in ("assertion", "relation") and body.inputs is None:
        raise ValidationError(f'a {model["type"]} model takes \'inputs\': [{{"text", "entities": [...]}}]')
    predictor = await run_in_threadpool(_loaded, request.app.state, model)
    return {"model": model["name"], "results": await run_in_threadpool(predictor.predict, inputs)}


def visual_inputs(body: PredictRequest) -> list:
    """`images`: data URIs, or {"image": data URI, "ocr": [...]}; never a path on this machine."""
    if not body.images:
        raise ValidationError('a visual_ner model takes \'images\': [data URI or {"image", "ocr"}, ...]')
    for i, item in enumerate(body.images):
        image = item if isinstance(item, str) else item.get("image")
        if image is None and isinstance(item, dict) and item.get("ocr"):
            continue
        if not isinstance(image, str) or not image.startswith("data:image/"):
            raise ValidationError(
                f"images[{i}]: give the image as a data URI (data:image/png;base64,...); "
                "paths on the service's machine are not read"
            )
    return body.images


def _loaded(state, model: dict):
    """The model's predictor, loaded once per replica: from the artifact store when the model is kept
    in one (a local copy on this node, see storage.artifacts.cached_folder), else from the home."""
    from trainers.predict import load

    cache = state.__dict__.setdefault("predictors", {})
    key = (model["name"], model["path"], model["trained_at"])
    if key not in cache:
        if len(cache) >= LOADED_MODELS:
            cache.pop(next(iter(cache)))
        cache[key] = load(cached_folder(model["artifact_uri"]) if model.get("artifact_uri") else model["path"])
    cache[key] = cache.pop(key)  # most recently used last
    return cache[key]
