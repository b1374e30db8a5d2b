"""Load: N concurrent API clients for T seconds against `labtrain serve` on loopback while two
trainings run. Each client loops over a mix of requests: a training's status (40 %), the
project's history (20 %), the import of a small export of its own (20 %: one new task with one
submitted completion) and a NER prediction (20 %). Prints per route the requests, p50 / p99 /
max latency, 5xx and connection errors, and checks that nothing imported was lost (every 200
import is in the catalog afterwards).

    .venv/bin/python bench/load.py [--clients 200] [--seconds 60] [--num-cpus 2]

It starts its own service on a temporary home (port 8792) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import serve, stop  # noqa: E402

from tests.test_training_service import wait  # noqa: E402
from tests.trainer_data import CONFIG, toy_tasks  # noqa: E402

LONG = {"epochs": 10_000, "batch_size": 4}
MIX = [("status", 0.4), ("history", 0.2), ("import", 0.2), ("predict", 0.2)]


def small_export(task_id: int) -> bytes:
    text = f"Anna lives in Paris and travels often {task_id} ."
    return json.dumps(
        [
            {
                "id": task_id,
                "data": {"text": text},
                "completions": [
                    {
                        "id": task_id,
                        "created_username": "load",
                        "submitted_at": "2024-01-01T00:00:00",
                        "result": [
                            {
                                "id": "p",
                                "from_name": "label",
                                "to_name": "text",
                                "type": "labels",
                                "value": {"start": 0, "end": 4, "text": "Anna", "labels": ["PER"]},
                            }
                        ],
                    }
                ],
            }
        ]
    ).encode()


async def client(
    number: int,
    url: str,
    token: str,
    project: str,
    training_id: int,
    model: str,
    until: float,
    samples: list,
    imported: list,
) -> None:
    rng = random.Random(number)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        k = 0
        while time.monotonic() < until:
            kind = rng.choices([m for m, _ in MIX], [w for _, w in MIX])[0]
            started = time.monotonic()
            try:
                if kind == "status":
                    answer = await http.get(f"/api/trainings/{training_id}")
                elif kind == "history":
                    answer = await http.get(f"/api/projects/{project}/trainings", params={"limit": 10})
                elif kind == "import":
                    task_id = 1_000_000 + number * 100_000 + k
                    k += 1
                    answer = await http.post(f"/api/projects/{project}/import", content=small_export(task_id))
                    if answer.status_code == 200:
                        imported.append(task_id)
                else:
                    answer = await http.post(
                        f"/api/models/{model}/predict", json={"texts": [f"Greta lives in Oslo {number} ."]}
                    )
                status = answer.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            samples.append((kind, status, time.monotonic() - started))


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument(
        "--trainings",
        type=int,
        default=2,
        choices=[0, 1, 2],
        help="trainings running during the load (0: the API alone, for comparison)",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labtrain-load-"))
    info = serve(home, args.num_cpus, 8792)
    try:
        http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['admin_token']}"}, timeout=120
        )
        project = "load"
        http.post("/api/projects", json={"name": project, "config": CONFIG}).raise_for_status()
        http.post(f"/api/projects/{project}/import", content=json.dumps(toy_tasks(60))).raise_for_status()
        first = http.post(
            f"/api/projects/{project}/trainings",
            json={"types": ["ner"], "embeddings": "bilstm", "params": {"epochs": 4, "batch_size": 4}},
        ).json()
        first = wait(http, first["id"], lambda t: t["status"] in ("succeeded", "failed"), timeout_s=300)
        model = first["jobs"][0]["model_name"]
        before = http.get(f"/api/projects/{project}").json()
        trainings = [
            http.post(f"/api/projects/{project}/trainings", json={"types": [kind], "params": LONG}).json()
            for kind in ("ner", "classification")[: args.trainings]
        ]
        for training in trainings:
            wait(http, training["id"], lambda t: (t["jobs"][0]["epoch"] or 0) >= 1, timeout_s=300)
        kinds = ", ".join(f"{t['id']} ({t['jobs'][0]['type']}, MiniLM)" for t in trainings)
        print(
            f"{args.clients} clients for {args.seconds:g} s against {info['url']} "
            + (f"while trainings {kinds} run" if trainings else "with no training running"),
            flush=True,
        )
        samples: list = []
        imported: list = []

        async def run_all() -> None:
            until = time.monotonic() + args.seconds
            watched = trainings[0]["id"] if trainings else first["id"]
            await asyncio.gather(
                *(
                    client(n, info["url"], info["admin_token"], project, watched, model, until, samples, imported)
                    for n in range(args.clients)
                )
            )

        started = time.monotonic()
        asyncio.run(run_all())
        elapsed = time.monotonic() - started
        states = [http.get(f"/api/trainings/{t['id']}").json() for t in trainings]
        after = http.get(f"/api/projects/{project}").json()
        for training in trainings:
            http.post(f"/api/trainings/{training['id']}/cancel")
    finally:
        stop(home)

    print(
        f"\n{'ROUTE':<10} {'REQUESTS':>8} {'OK':>8} {'P50 MS':>8} {'P99 MS':>8} {'MAX MS':>8} {'5XX':>5} {'ERRORS':>6}"
    )
    for kind in [m for m, _ in MIX] + ["all"]:
        rows = [s for s in samples if kind in ("all", s[0])]
        latencies = [s[2] * 1000 for s in rows]
        ok = sum(1 for s in rows if s[1] == 200)
        server = sum(1 for s in rows if isinstance(s[1], int) and s[1] >= 500)
        errors = sum(1 for s in rows if not isinstance(s[1], int))
        print(
            f"{kind:<10} {len(rows):>8} {ok:>8} {percentile(latencies, 0.5):>8.0f} {percentile(latencies, 0.99):>8.0f} "
            f"{max(latencies, default=float('nan')):>8.0f} {server:>5} {errors:>6}"
        )
    other = sorted({s[1] for s in samples if s[1] != 200}, key=str)
    print(
        f"\nthroughput {len(samples) / elapsed:.1f} requests/s over {elapsed:.1f} s; statuses other than 200: "
        f"{other or 'none'}"
    )
    lost_tasks = before["tasks"] + len(imported) - after["tasks"]
    lost_completions = before["completions"] + len(imported) - after["completions"]
    print(
        f"imports answered 200: {len(imported)}; tasks in the catalog {before['tasks']} -> {after['tasks']}, "
        f"completions {before['completions']} -> {after['completions']}; lost: {lost_tasks} tasks, "
        f"{lost_completions} completions"
    )
    print(
        "trainings during the load: "
        + ", ".join(
            f"{t['id']} {t['jobs'][0]['type']} {t['status']} ({t['jobs'][0]['progress']:.0f}%, epoch {t['jobs'][0]['epoch']})"
            for t in states
        )
    )


if __name__ == "__main__":
    main()
