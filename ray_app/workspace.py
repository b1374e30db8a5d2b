"""A job's files on the node that trains it. Its inputs (snapshot, custom script, page images) and
outputs (model folder, metrics, training log) live in the service's home on the head; a worker
node that does not see the home gets the inputs through Ray and sends the outputs back in chunks
(a streamed actor call), so a cluster needs nothing mounted. On the head itself nothing moves."""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import ray

from ray_app.settings import JOB_MANAGER, NAMESPACE

CHUNK = 8 * 2**20  # bytes per call when outputs travel back


@dataclass(frozen=True)
class Home:
    """Where a job's files are: the service's home folder, on the node with this id."""

    path: str
    node_id: str


@contextmanager
def job_files(job_id: int, spec: dict, home: Home) -> Iterator[dict]:
    """The spec with its paths on this node. Away from the home: the inputs are fetched from the job
    manager into a scratch folder, the trainer writes its outputs there, and they are sent back into
    the job's folder in the home when the block ends (also when the training failed: its log)."""
    if ray.get_runtime_context().get_node_id() == home.node_id:
        yield with_encoder_on_this_node(spec)
        return
    manager = ray.get_actor(JOB_MANAGER, namespace=NAMESPACE)
    scratch = Path(tempfile.mkdtemp(prefix=f"labtrain-job-{job_id}-"))
    try:
        local = fetch_inputs(manager, job_id, spec, home, scratch)
        try:
            yield local
        finally:
            send_outputs(manager, job_id, Path(local["output_dir"]), spec["output_dir"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_inputs(manager, job_id: int, spec: dict, home: Home, scratch: Path) -> dict:
    def local(path: str) -> str:
        return str(scratch / Path(path).relative_to(home.path)) if Path(path).is_relative_to(home.path) else path

    wanted = [spec["snapshot"]] + ([spec["script"]["path"]] if spec.get("script") else [])
    _write(ray.get(manager.job_inputs.remote(job_id, wanted)), local)
    images = _image_paths(local(spec["snapshot"]))
    if images:
        _write(ray.get(manager.job_inputs.remote(job_id, images)), local)
        _relocate_images(local(spec["snapshot"]), local)
    encoder = spec.get("encoder")
    if encoder and Path(encoder["location"]).is_relative_to(home.path):  # the head's copy, no store
        files = [f"{encoder['location']}/{name}" for name in encoder["files"]]
        _write(ray.get(manager.job_inputs.remote(job_id, files)), local)
    moved = with_encoder_on_this_node(copy.deepcopy(spec))
    if encoder and Path(encoder["location"]).is_relative_to(home.path):
        moved["encoder"]["location"] = local(encoder["location"])
    moved["snapshot"], moved["output_dir"] = local(spec["snapshot"]), local(spec["output_dir"])
    if spec.get("script"):
        moved["script"]["path"] = local(spec["script"]["path"])
    Path(moved["output_dir"]).mkdir(parents=True, exist_ok=True)
    return moved


def with_encoder_on_this_node(spec: dict) -> dict:
    """A registered encoder kept in the artifact store: its copy on this node (downloaded once)."""
    encoder = spec.get("encoder")
    if not encoder or not urlsplit(encoder["location"]).scheme:
        return spec
    from storage.artifacts import cached_folder

    return {**spec, "encoder": {**encoder, "location": str(cached_folder(encoder["location"]))}}


def send_outputs(manager, job_id: int, folder: Path, target: str) -> int:
    """Every file the job wrote, in chunks, into `target` (the job's folder in the home); the bytes sent."""
    sent = 0
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative, offset = str(file.relative_to(folder)), 0
        with file.open("rb") as data:
            while True:
                chunk = data.read(CHUNK)
                last = len(chunk) < CHUNK
                ray.get(manager.receive_output.remote(job_id, target, relative, offset, chunk, last))
                offset, sent = offset + len(chunk), sent + len(chunk)
                if last:
                    break
    return sent


def _write(contents: dict[str, bytes], local) -> None:
    for path, data in contents.items():
        target = Path(local(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _image_paths(snapshot: str) -> list[str]:
    import pyarrow.parquet as pq

    if "image_path" not in pq.read_schema(snapshot).names:
        return []
    column = pq.read_table(snapshot, columns=["image_path"]).column("image_path").to_pylist()
    return sorted({p for p in column if p})


def _relocate_images(snapshot: str, local) -> None:
    """The snapshot's `image_path`s point into the scratch folder, where the images now are."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(snapshot)
    index = table.schema.get_field_index("image_path")
    moved = pa.array([local(p) if p else p for p in table.column(index).to_pylist()], type=pa.string())
    pq.write_table(table.set_column(index, "image_path", moved), snapshot)
