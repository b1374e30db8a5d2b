"""The embeddings a training can use: labtrain's own and the encoders users registered. Every user
lists them; admins, and owners or managers of a project, add and remove encoders."""

from __future__ import annotations

from fastapi import APIRouter

from labtrain.encoders import ENCODER_TYPES, Encoder
from ray_app.api.answers import EmbeddingsList, EncoderPublic
from ray_app.api.deps import CurrentUser, EncoderManager, JobsDep, StorageDep
from ray_app.api.models import EncoderAdd
from trainers.embeddings import available

router = APIRouter(prefix="/api/embeddings", tags=["embeddings"])


def public(encoder: Encoder) -> dict:
    return {**encoder.model_dump(exclude={"location"}), "types": list(ENCODER_TYPES)}


@router.get("", response_model=EmbeddingsList)
async def list_embeddings(user: CurrentUser, storage: StorageDep):
    """labtrain's own embeddings and every registered encoder."""
    return {"built_in": available(), "registered": [public(e) for e in await storage.encoders()]}


@router.post("", response_model=EncoderPublic, status_code=201)
async def add_encoder(body: EncoderAdd, user: EncoderManager, jobs: JobsDep):
    """Register an encoder: its source is copied, checked (config, weights, a fast tokenizer with
    offsets, an encoder architecture the trainers take) and kept where every node finds it. 404 for
    a source that does not exist, 409 for a name taken, 422 naming the file or architecture at fault."""
    return public(await jobs.add_encoder(body.name, body.source, body.languages, body.description, user.name))


@router.get("/{name}", response_model=EncoderPublic)
async def show_encoder(name: str, user: CurrentUser, storage: StorageDep):
    """One registered encoder."""
    return public(await storage.encoder(name))


@router.delete("/{name}", response_model=EncoderPublic)
async def remove_encoder(name: str, user: EncoderManager, jobs: JobsDep):
    """Forget an encoder and delete labtrain's copy; 409 while a training runs on it or a model
    trained on it is deployed."""
    return public(await jobs.remove_encoder(name))
