"""`TrainingPlan`: a training request as the API checked it and the catalog keeps it (the JSON of
this model), read back by the job manager and turned into each job's `trainers.spec.TrainSpec`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ScriptPlan(BaseModel):
    """A custom training script of the project; the catalog adds its stored file's digest."""

    name: str
    version: int | None = None
    time_limit_s: int = Field(3600, ge=1)
    memory_mb: int = Field(4096, ge=64)
    sha256: str | None = None


class TrainingPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    types: list[str] = Field(min_length=1)
    embeddings: dict[str, str] = Field(default_factory=dict, description="per type; empty: each type's first option")
    embeddings_notes: dict[str, str] = Field(
        default_factory=dict,
        description="per type, why its default embeddings are a makeshift (the project's language)",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="the parameters the request gave (trainers.spec.TrainParams)"
    )
    selection: dict[str, Any] = Field(default_factory=dict, description="storage.selection.SelectionParams")
    deploy: bool = False
    gpu: bool = False
    cpus: int | None = Field(None, ge=1, description="CPUs of each job's bundle; None: 1, or a node's when alone")
    backend: str = "pytorch"
    runner: Literal["ray_train", "ray_job"] = "ray_train"
    max_retries: int = Field(1, ge=0)
    script: ScriptPlan | None = None
    tune: dict[str, Any] | None = None  # {"trials", "space", "budget_s"}
    curve: dict[str, Any] | None = None  # {"points", "seeds"}
