"""The one process that owns the DuckDB catalog: a named Ray actor; everything else asks it."""

from __future__ import annotations

from typing import Any

import ray

from storage.catalog import Catalog
from storage.errors import LabtrainError


@ray.remote(num_cpus=0, max_restarts=-1)
class StorageActor:
    """Serialises every catalog call (one method at a time), so DuckDB has one writer."""

    def __init__(self, home: str):
        self.catalog = Catalog(home)

    def call(self, method: str, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        """Run `Catalog.<method>`; domain errors come back as values so that callers can map
        them to HTTP statuses without unwrapping Ray's exception types."""
        try:
            return "ok", getattr(self.catalog, method)(*args, **kwargs)
        except LabtrainError as exc:
            return "error", (type(exc).__name__, exc.status_code, str(exc))


class StorageClient:
    """Async facade over an actor with a `call(method, ...)` (the storage actor, the job
    manager): domain errors come back raised as `LabtrainError` with their HTTP status."""

    def __init__(self, actor: "ray.actor.ActorHandle"):
        self.actor = actor

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        status, value = await self.actor.call.remote(method, *args, **kwargs)
        if status == "error":
            name, code, message = value
            error = LabtrainError(message)
            error.status_code = code
            error.kind = name
            raise error
        return value
