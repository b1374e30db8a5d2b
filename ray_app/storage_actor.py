"""The one process that owns the DuckDB catalog: a named Ray actor; everything else asks it, through
its typed client (`ray_app.clients.Storage`)."""

from __future__ import annotations

import ray

from storage.catalog import Catalog
from trainers.data_check import check_snapshot


@ray.remote(num_cpus=0, max_restarts=-1)
class StorageActor(Catalog):
    """The catalog's own methods, one call at a time (a sync actor), so DuckDB has one writer."""

    def __init__(self, home):
        super().__init__(home, data_check=check_snapshot)
