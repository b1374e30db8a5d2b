"""Placement groups left behind by a dead actor or an ended task are found and removed (on a Ray
cluster of the test's own, in a session of its own), and nothing a live actor holds is touched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ray_app.service import RAY_STARTS, RAY_STARTUP_TIMED_OUT
from tests.ray_cluster import HANG_S, _kill_session

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys, time, ray
from ray.util.placement_group import placement_group
from ray_app.placement_groups import leftovers, placement_groups, remove_leftovers

ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[1], log_to_driver=False)


@ray.remote(num_cpus=0)
class Maker:
    def make(self, cpus):
        group = placement_group([{"CPU": cpus}])
        ray.get(group.ready())
        return group.id.hex()


@ray.remote(num_cpus=0)
def make_in_a_task(cpus):
    group = placement_group([{"CPU": cpus}])
    ray.get(group.ready())
    return group.id.hex()


killed, alive = Maker.remote(), Maker.remote()
by_dead_actor = ray.get(killed.make.remote(1))
by_live_actor = ray.get(alive.make.remote(0.5))
by_task = ray.get(make_in_a_task.remote(0.25))
job = ray.get_runtime_context().get_job_id()
before = [r.id for r in leftovers(placement_groups(), job, runs_going=True)]
ray.kill(killed)
deadline = time.monotonic() + float(sys.argv[2])
while not any(r.id == by_dead_actor and r.creator_dead for r in placement_groups()):  # the GCS hears of it
    assert time.monotonic() < deadline, "the GCS never marked the actor dead"
    time.sleep(0.2)
print(json.dumps({
    "ids": {"dead actor": by_dead_actor, "live actor": by_live_actor, "task": by_task},
    "before the kill": before,
    "another job's": [r.id for r in leftovers(placement_groups(), "ffffffff", runs_going=False)],
    "removed while runs go": [r.id for r in remove_leftovers(runs_going=True)],
    "removed when none goes": [r.id for r in remove_leftovers(runs_going=False)],
    "live": sorted(r.id for r in placement_groups() if r.live),
}))
"""


def test_leftover_placement_groups_are_removed_and_a_live_actors_group_is_kept():
    for attempt in range(1, RAY_STARTS + 1):
        returncode, out, err = run_on_a_cluster_of_its_own()
        # Ray gives a new node's raylet a fixed 30 s to register: a loaded machine can outlast it
        if returncode == 0 or RAY_STARTUP_TIMED_OUT not in err or attempt == RAY_STARTS:
            break
    assert returncode == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    ids = seen["ids"]
    assert seen["before the kill"] == []  # a live actor's group, and a task's while runs go, stay
    assert seen["another job's"] == []
    assert seen["removed while runs go"] == [ids["dead actor"]]
    assert seen["removed when none goes"] == [ids["task"]]
    assert seen["live"] == [ids["live actor"]]


def run_on_a_cluster_of_its_own(script: str = SCRIPT) -> tuple[int, str, str]:
    """Run `script` (argv: its Ray temp dir, the hang limit) on a local Ray of its own, then end its session."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths have a limit
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(temp_dir), str(HANG_S)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=HANG_S)
    finally:
        _kill_session(process.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
    return process.returncode, out, err
