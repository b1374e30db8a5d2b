"""The service's cost per training job: submit-to-start latency and the time a job spends in
labtrain and Ray outside the trainer, for 1, 2, 4 and 8 concurrent tiny jobs, against the same
trainer run directly (`python -m trainers.run`). Prints a table.

    .venv/bin/python bench/scheduler.py [--counts 1,2,4,8] [--num-cpus 2]

It starts its own `labtrain serve` on a temporary home and stops it at the end. Each job is a
1-epoch `bilstm` NER training on the same tiny project (40 tasks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import serve, stop  # noqa: E402

from tests.trainer_data import CONFIG, toy_tasks  # noqa: E402

PARAMS = {"epochs": 1, "batch_size": 8}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def run_direct(home: Path, snapshot: str) -> tuple[float, float]:
    """Wall time of `python -m trainers.run` and the trainer's own seconds."""
    out_dir = home / "direct"
    spec = {
        "type": "ner",
        "snapshot": snapshot,
        "output_dir": str(out_dir),
        "labels": ["PER", "LOC"],
        "embeddings": "bilstm",
        "params": PARAMS,
    }
    (home / "direct.json").write_text(json.dumps(spec))
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "trainers.run", str(home / "direct.json")],
        check=True,
        capture_output=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    return time.monotonic() - started, json.loads((out_dir / "labtrain.json").read_text())["seconds"]


RAY_TRAIN_FLOOR = """
import os, time
os.environ.setdefault("RAY_AUTH_MODE", "token")
import ray
from ray.train import ScalingConfig, RunConfig
from ray.train.torch import TorchTrainer

def loop(config):
    import torch  # what every trainer imports
    import ray.train
    ray.train.report({"done": 1})

ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
walls = []
for i in range(2):
    started = time.monotonic()
    TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                 run_config=RunConfig(name=f"floor-{i}", storage_path=os.environ["FLOOR_DIR"])).fit()
    walls.append(time.monotonic() - started)
print(min(walls))
"""


def ray_train_floor(home: Path) -> float:
    """A bare `TorchTrainer.fit()` whose worker only imports torch: Ray Train's fixed cost here."""
    out = subprocess.run(
        [sys.executable, "-c", RAY_TRAIN_FLOOR],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "FLOOR_DIR": str(home / "floor")},
    )
    return float(out.stdout.strip().splitlines()[-1])


def run_batch(http: httpx.Client, project: str, n: int) -> dict:
    submitted, ids = [], []
    for _ in range(n):
        submitted.append(datetime.now(UTC))
        answer = http.post(
            f"/api/projects/{project}/trainings", json={"types": ["ner"], "embeddings": "bilstm", "params": PARAMS}
        )
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    t0 = time.monotonic()
    while True:
        trainings = [http.get(f"/api/trainings/{i}").json() for i in ids]
        if all(t["status"] in ("succeeded", "failed", "cancelled") for t in trainings):
            break
        time.sleep(0.5)
    wall = time.monotonic() - t0
    latency, overhead, inside = [], [], []
    for sent, training in zip(submitted, trainings):
        job = training["jobs"][0]
        if job["status"] != "succeeded":
            raise SystemExit(f"job {job['job_id']} {job['status']}: {job['reason']}")
        trainer_s = json.loads((Path(job["output_dir"]) / "labtrain.json").read_text())["seconds"]
        ran = (utc(job["ended_at"]) - utc(job["started_at"])).total_seconds()
        latency.append((utc(job["started_at"]) - sent).total_seconds())
        overhead.append(ran - trainer_s)
        inside.append(trainer_s)
    return {"n": n, "wall": wall, "latency": latency, "overhead": overhead, "trainer": inside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labtrain_sched_"))
    floor = ray_train_floor(home)
    print(f"Ray Train floor: a bare TorchTrainer.fit() (worker imports torch) takes {floor:.1f} s", flush=True)
    info = serve(home, args.num_cpus, 8791)
    try:
        http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['admin_token']}"}, timeout=120
        )
        http.post("/api/projects", json={"name": "bench", "config": CONFIG}).raise_for_status()
        http.post("/api/projects/bench/import", content=json.dumps(toy_tasks(40))).raise_for_status()
        snapshot = http.post("/api/projects/bench/snapshots", json={"types": ["ner"]}).json()["files"]["ner"]["path"]
        direct_wall, direct_inside = run_direct(home, snapshot)
        print(
            f"direct: `python -m trainers.run` {direct_wall:.1f} s wall, of which the trainer {direct_inside:.1f} s",
            flush=True,
        )
        rows = []
        for n in (int(c) for c in args.counts.split(",")):
            rows.append(run_batch(http, "bench", n))
            print(rows[-1], flush=True)
    finally:
        stop(home)
    med = statistics.median
    print(
        f"\n{args.num_cpus} CPU bundles; each job: 1-epoch bilstm NER on 40 tasks; direct run of the same "
        f"trainer: {direct_wall:.1f} s wall ({direct_inside:.1f} s in the trainer); a bare TorchTrainer.fit(): "
        f"{floor:.1f} s"
    )
    print(
        f"{'jobs':>5}{'all done':>10}{'submit->start p50':>19}{'max':>7}{'overhead/job p50':>18}{'max':>7}"
        f"{'trainer p50':>13}"
    )
    for r in rows:
        print(
            f"{r['n']:>5}{r['wall']:>9.1f}s{med(r['latency']):>18.1f}s{max(r['latency']):>6.1f}s"
            f"{med(r['overhead']):>17.1f}s{max(r['overhead']):>6.1f}s{med(r['trainer']):>12.1f}s"
        )
    print(
        "\nsubmit->start: from the HTTP request to the job's start (includes waiting for a free bundle); "
        "overhead: the job's running time minus the trainer's own seconds (Ray Train start-up, worker "
        "imports, reporting). One run on this machine."
    )


if __name__ == "__main__":
    main()
