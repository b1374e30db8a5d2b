"""Registering an encoder (`labtrain embeddings add`): on the head node, in a Ray task of its own (a
model that crashes the loader takes no part of the service with it), the source is copied, checked
and described (`trainers.encoders`), then kept where every node finds it: the artifact store when
the service has one, else the home's `encoders/` folder. The catalog records it afterwards."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from labtrain.encoders import Encoder
from labtrain.errors import LabtrainError, NotFound, ValidationError
from trainers.encoders import KEPT

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
STORE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "file")
HUB_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "README.md", "LICENSE*")


def fetch(name: str, source: str, into: Path) -> Path:
    """Copy what `source` holds of a model folder into `into` (made here); ValidationError or
    NotFound naming the source when there is nothing to take."""
    parts = urlsplit(source)
    if parts.scheme in STORE_SCHEMES:
        return _from_store(name, source, into)
    if parts.scheme:
        raise ValidationError(
            f"encoder {name!r}: source {source!r}: scheme {parts.scheme!r} is not one of "
            f"{', '.join(STORE_SCHEMES)}, a folder or a hub id (org/name)"
        )
    folder = Path(source).expanduser()
    if folder.is_dir():
        return _from_folder(name, folder, into)
    if folder.exists():
        raise ValidationError(
            f"encoder {name!r}: {source} is a file; give the model's folder (its config.json beside it)"
        )
    if HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        return _from_hub(name, source, into)
    raise NotFound(f"encoder {name!r}: no such folder {source} (on the service's machine) and not a hub id (org/name)")


def _from_folder(name: str, folder: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    for item in sorted(folder.iterdir()):
        if item.is_file() and KEPT.match(item.name):
            shutil.copy2(item, into / item.name)
    return into


def _from_store(name: str, uri: str, into: Path) -> Path:
    from pyarrow import fs

    from storage.artifacts import check_uri, open_uri

    try:
        check_uri(uri)
    except ValidationError as exc:
        raise ValidationError(f"encoder {name!r}: {str(exc).replace('--artifacts: ', '')}") from None
    try:
        store, path = open_uri(uri)
        listed = store.get_file_info(fs.FileSelector(path.rstrip("/"), recursive=False, allow_not_found=True))
    except OSError as exc:
        raise ValidationError(f"encoder {name!r}: {uri} cannot be read: {' '.join(str(exc).split())[:300]}") from None
    files = [f for f in listed if f.type == fs.FileType.File and KEPT.match(f.base_name)]
    if not files:
        raise NotFound(f"encoder {name!r}: {uri} holds no model files (no such key or folder in the store)")
    into.mkdir(parents=True)
    local = fs.LocalFileSystem()
    for f in files:
        fs.copy_files(f.path, str(into / f.base_name), source_filesystem=store, destination_filesystem=local)
    return into


def _from_hub(name: str, repo_id: str, into: Path) -> Path:
    """The hub's snapshot of the model, when the service reaches the hub; else a clear refusal."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        huggingface_hub.snapshot_download(repo_id, local_dir=into, allow_patterns=list(HUB_PATTERNS), etag_timeout=10)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as exc:
        raise ValidationError(
            f"encoder {name!r}: the hub id {repo_id!r} cannot be fetched: the Hugging Face hub cannot be reached "
            f"from this service ({type(exc).__name__}); download the model where the hub is reachable and add its "
            "folder, or put it in the artifact store and add its s3:// or gs:// URI"
        ) from None
    except HfHubHTTPError as exc:
        raise NotFound(
            f"encoder {name!r}: the hub has no model {repo_id!r} ({' '.join(str(exc).split())[:200]})"
        ) from None
    return into


def prepare_encoder(
    name: str, source: str, home: str, artifacts: str | None, languages: list[str], description: str
) -> Encoder:
    """Copy, check and keep the encoder; the record the catalog will hold. Nothing is left behind when
    a check fails."""
    from trainers.encoders import describe

    encoders = Path(home) / "encoders"
    staging = encoders / ".incoming" / uuid.uuid4().hex
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        encoder = describe(name, fetch(name, source, staging), source)
        files = sorted(p.name for p in staging.iterdir())
        folder = f"{name}-{encoder.sha256[:12]}"
        if artifacts:
            location = _to_store(staging, artifacts, folder)
        else:
            target = encoders / folder
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            location = str(target)
        return encoder.model_copy(
            update={
                "location": location,
                "files": files,
                "languages": languages or encoder.languages,
                "description": description or f"{encoder.architecture} from {source}",
            }
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _to_store(folder: Path, artifacts: str, name: str) -> str:
    from pyarrow import fs

    from storage.artifacts import ArtifactStore

    store = ArtifactStore(artifacts)
    target = store.path("encoders", name)
    store.fs.create_dir(target, recursive=True)
    fs.copy_files(str(folder), target, source_filesystem=fs.LocalFileSystem(), destination_filesystem=store.fs)
    return store.uri_of("encoders", name)


def forget_files(encoder: Encoder, home: str) -> None:
    """Delete the copy labtrain kept of a removed encoder (in the home, or the artifact store)."""
    if urlsplit(encoder.location).scheme:
        from storage.artifacts import open_uri

        store, path = open_uri(encoder.location)
        store.delete_dir(path)
        return
    location = Path(encoder.location)
    if location.parent == Path(home) / "encoders":  # only what labtrain itself copied there
        shutil.rmtree(location, ignore_errors=True)


async def run_on_this_node(
    name: str, source: str, home: str, artifacts: str | None, languages: list[str], description: str
) -> Encoder:
    """`prepare_encoder` in a Ray task on this (the head) node, where a folder SOURCE is; its
    domain error comes back unwrapped."""
    task = ray.remote(num_cpus=0, max_retries=0)(prepare_encoder).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    )
    try:
        return await task.remote(name, source, home, artifacts, languages, description)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(getattr(exc, "cause", None), LabtrainError):
            raise exc.cause from None
        raise
