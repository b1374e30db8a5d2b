"""The artifact store of `labtrain serve --artifacts URI`: a place every node of the cluster reaches,
an object store (`s3://bucket/prefix`, `gs://bucket/prefix`) or a path mounted on every node,
through pyarrow's filesystems. Trained models are kept there (the catalog records each model's URI)
and Ray Train keeps its epoch checkpoints there. Credentials come from each node's environment
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an instance role, GOOGLE_APPLICATION_CREDENTIALS), never
from the URI, so that no secret reaches the catalog, a log or an answer."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from labtrain.errors import ValidationError

SECRET_PARAMETERS = ("access_key", "secret_key", "session_token", "credentials", "token", "password")
MODEL_FILES = (
    "model",
    "labtrain.json",
    "metrics.json",
    "confusion_matrix.json",
    "confusion_matrix.png",
    "training.log",
)
CACHE = Path(os.environ.get("LABTRAIN_MODEL_CACHE", "~/.cache/labtrain/models")).expanduser()


def check_uri(uri: str) -> str:
    """The URI, if it names a store and carries no secret; else ValidationError naming the fault."""
    parts = urlsplit(uri)
    secret = [k for k, _ in parse_qsl(parts.query) if k.lower() in SECRET_PARAMETERS]
    if secret or parts.password:
        raise ValidationError(
            f"--artifacts: the URI carries credentials ({', '.join(secret) or 'a password'}); "
            "give them to every node's environment instead (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, an instance role, GOOGLE_APPLICATION_CREDENTIALS)"
        )
    if parts.scheme not in ("", "file", "s3", "gs", "gcs", "hdfs", "abfs"):
        raise ValidationError(f"--artifacts: scheme {parts.scheme!r} is not one of s3, gs, hdfs, abfs or a path")
    if not parts.scheme and not Path(uri).is_absolute():
        raise ValidationError(f"--artifacts: {uri!r} must be an absolute path (mounted on every node) or a URI")
    return uri.rstrip("/")


def open_uri(uri: str):
    """(pyarrow filesystem, path in it) of a store URI or of a file or folder in it."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri if urlsplit(uri).scheme else f"file://{uri}")


class ArtifactStore:
    def __init__(self, uri: str):
        self.uri = check_uri(uri)
        parts = urlsplit(self.uri)
        self._base, self._query = (
            f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else self.uri,
            f"?{parts.query}" if parts.query else "",
        )
        self.fs, self.root = open_uri(self.uri)

    def uri_of(self, *parts: str) -> str:
        """The URI of a file or folder of the store (with the store's own options, e.g. its endpoint)."""
        return "/".join([self._base, *parts]) + self._query

    def path(self, *parts: str) -> str:
        """The path of a file or folder of the store inside its filesystem (Ray Train's storage_path)."""
        return "/".join([self.root.rstrip("/"), *parts])

    def check(self) -> None:
        """Write, read and delete a marker: a store that cannot be written is refused at start."""
        marker = self.path(".labtrain", f"check-{uuid.uuid4().hex}")
        try:
            self.fs.create_dir(self.path(".labtrain"), recursive=True)
            with self.fs.open_output_stream(marker) as out:
                out.write(b"labtrain")
            with self.fs.open_input_stream(marker) as data:
                assert data.read() == b"labtrain"
            self.fs.delete_file(marker)
        except Exception as exc:
            raise ValidationError(
                f"--artifacts {self.uri}: the store cannot be written: {' '.join(str(exc).split())[:300]}"
            ) from None

    def put_model(self, output_dir: Path, *parts: str) -> str:
        """Copy a job's model into the store (its `model/` folder and the files that describe it, what
        `trainers.predict.load` reads); return the URI of the copy."""
        from pyarrow import fs

        target = self.path(*parts)
        self.fs.create_dir(target, recursive=True)
        local = fs.LocalFileSystem()
        for item in sorted(output_dir.iterdir()):
            if item.name in MODEL_FILES:
                fs.copy_files(
                    str(item), f"{target}/{item.name}", source_filesystem=local, destination_filesystem=self.fs
                )
        return self.uri_of(*parts)


def cached_folder(uri: str) -> Path:
    """A local copy of a folder of a store, on this node (downloaded once; a model's folder in a
    store never changes: a new training writes a new one)."""
    from pyarrow import fs

    local = CACHE / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if local.exists():
        return local
    CACHE.mkdir(parents=True, exist_ok=True)
    source, path = open_uri(uri)
    partial = Path(tempfile.mkdtemp(prefix=local.name + ".", dir=CACHE))
    try:
        fs.copy_files(path, str(partial), source_filesystem=source, destination_filesystem=fs.LocalFileSystem())
        if not any(partial.iterdir()):
            raise ValidationError(f"{uri} holds no files")
        partial.rename(local)
    except FileExistsError:  # another request downloaded it meanwhile
        pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return local
