"""The FastAPI application and the Ray Serve deployment that serves it."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from ray import serve

from labtrain.errors import LabtrainError
from ray_app import __version__
from ray_app.api import (
    cluster,
    embeddings,
    imports,
    link,
    members,
    ml_backend,
    projects,
    registry,
    scripts,
    selection,
    trainings,
    users,
)
from ray_app.api.answers import REJECTED, HealthPublic
from ray_app.job_worker import last_line
from ray_app.settings import ON_THE_HEAD

log = logging.getLogger("labtrain.api")

app = FastAPI(
    title="labtrain", version=__version__, description="Train NLP models from the completions of an annotation project."
)
for module in (
    users,
    projects,
    members,
    imports,
    selection,
    scripts,
    trainings,
    registry,
    embeddings,
    cluster,
    link,
    ml_backend,
):
    app.include_router(module.router, responses=REJECTED)  # a rule of the domain broken: 422, one sentence


@app.exception_handler(LabtrainError)
async def domain_error(request: Request, exc: LabtrainError) -> JSONResponse:
    kind = getattr(exc, "kind", type(exc).__name__)
    return JSONResponse(status_code=exc.status_code, content={"detail": str(exc), "error": kind})


@app.exception_handler(Exception)
async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A fault of labtrain's own (not the caller's): a 500 that still says what went wrong, in JSON like
    every other answer, and its traceback in the replica's log."""
    log.exception("%s %s failed", request.method, request.url.path)
    reason = f"{type(exc).__name__}: {last_line(exc)[:300]}"
    return JSONResponse(
        status_code=500, content={"detail": f"labtrain failed answering: {reason}", "error": "internal"}
    )


WEB = Path(__file__).resolve().parents[1] / "web"
app.mount("/ui", StaticFiles(directory=WEB, html=True), name="ui")


@app.get("/", include_in_schema=False)
async def root():
    """The Train page."""
    return RedirectResponse("/ui/")


@app.get("/api/health", response_model=HealthPublic, tags=["health"])
async def health():
    """Liveness: answers without a token."""
    return {"status": "ok", "version": __version__}


@serve.deployment(name="api", ray_actor_options={"num_cpus": 0, "resources": ON_THE_HEAD}, max_ongoing_requests=256)
@serve.ingress(app)
class LabtrainApi:
    """The API replica; it takes no CPU (trainings need them) and reaches the catalog through
    the storage actor (`deps.get_storage`). It stays on the head, beside the home it reads logs and
    models from, so that worker nodes carry only trainings and an idle one can be retired. Its
    handlers await actors, so it takes many requests at once: with Serve's default of 5, 200
    clients got 5 requests/s (bench/load.py), 44 with 256."""
