"""Placement groups that outlive what made them, and their removal. Ray removes a group with its
creator only once the creator's job has ended too (ray-project/ray#65881), and the service's Ray job
lasts as long as the service: a group made by a run that was cancelled or died would hold its
bundle until the service stops. Ray Train's own cleaner covers most of its runs, not all: a
cancelled search whose trial's Train controller was still starting left its worker group's
`{CPU: 1}` behind, and Tune's trial groups, made by the search's own task, have no cleaner at all."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacementGroupRecord:
    """What the GCS keeps of a placement group (the fields Ray's public table leaves out)."""

    id: str  # hex
    job_id: str  # hex: the Ray job of its creator
    by_actor: bool  # made by an actor (else by a task or a driver)
    creator_dead: bool  # the actor that made it is dead (always True for a task's or driver's)
    detached: bool
    live: bool  # not removed
    bundles: tuple[dict, ...]


def placement_groups() -> list[PlacementGroupRecord]:
    """Every placement group of the cluster, as the GCS records it (this process is connected)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    nil_actor = ray.ActorID.nil().binary()
    records = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        group = gcs_pb2.PlacementGroupTableData.FromString(raw)
        records.append(
            PlacementGroupRecord(
                id=group.placement_group_id.hex(),
                job_id=group.creator_job_id.hex(),
                by_actor=group.creator_actor_id != nil_actor,
                creator_dead=group.creator_actor_dead,
                detached=group.is_detached,
                live=group.state != gcs_pb2.PlacementGroupTableData.REMOVED,
                bundles=tuple(dict(b.unit_resources) for b in group.bundles),
            )
        )
    return records


def leftovers(records: list[PlacementGroupRecord], job_id: str, runs_going: bool) -> list[PlacementGroupRecord]:
    """The live groups of Ray job `job_id` that nothing can use any more: those whose actor died (a
    Train controller killed with its run), and, when no run of the service is going, those a task
    made (a cancelled search's Tune trials). A detached group is its maker's business."""
    return [
        r
        for r in records
        if r.live
        and not r.detached
        and r.job_id == job_id
        and ((r.by_actor and r.creator_dead) or (not r.by_actor and not runs_going))
    ]


def remove_leftovers(runs_going: bool) -> list[PlacementGroupRecord]:
    """Remove this Ray job's leftover groups (see `leftovers`); returns what was removed."""
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    removed = []
    for record in leftovers(placement_groups(), ray.get_runtime_context().get_job_id(), runs_going):
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(record.id))))
        except Exception as exc:  # removed meanwhile (Ray Train's cleaner): nothing is held
            log.warning("could not remove placement group %s: %s", record.id, exc)
            continue
        removed.append(record)
    return removed
