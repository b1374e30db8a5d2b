"""The one process that owns the DuckDB catalog: a named Ray actor; everything else asks it."""

from __future__ import annotations

from typing import Any

import ray

from labtrain.errors import LabtrainError, StorageFull, disk_full
from storage.catalog import Catalog


@ray.remote(num_cpus=0, max_restarts=-1)
class StorageActor:
    """Serialises every catalog call (one method at a time), so DuckDB has one writer."""

    def __init__(self, home: str):
        self.catalog = Catalog(home)

    def call(self, method: str, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        """Run `Catalog.<method>`; domain errors come back as values so that callers can map
        them to HTTP statuses without unwrapping Ray's exception types. A full disk is one of
        them (507): nothing of the call was written, and it can be repeated once there is room."""
        try:
            return "ok", getattr(self.catalog, method)(*args, **kwargs)
        except LabtrainError as exc:
            return "error", (type(exc).__name__, exc.status_code, str(exc))
        except Exception as exc:
            if not disk_full(exc):
                raise
            full = StorageFull(
                f"the disk of labtrain's home {self.catalog.home} is full ({' '.join(str(exc).split())[:300]}); "
                "nothing of this request was written: free some space and try again"
            )
            return "error", (type(full).__name__, full.status_code, str(full))


class StorageClient:
    """Async facade over an actor with a `call(method, ...)` (the storage actor, the job
    manager): domain errors come back raised as `LabtrainError` with their HTTP status."""

    def __init__(self, actor: ray.actor.ActorHandle):
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
