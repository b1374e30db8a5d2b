"""labtrain as Label Studio's ML backend, measured on this machine against a real Label Studio 1.23.2
(the one `.ci/setup` installs) and a `labtrain serve` of its own. Prints one table:

- the sync of a Label Studio project of N tasks with one annotation each (`labtrain link`, then
  `POST /api/projects/{p}/link/sync`), median of 3;
- `/predict` latency for 1, 10 and 100 tasks (p50, p95) with a MiniLM NER model deployed, called as
  Label Studio calls it (basic auth, its body);
- end to end: Label Studio's "Start Training" -> the training in labtrain -> deployed -> Label
  Studio's "Retrieve predictions" over every task -> predictions of the new version in Label Studio.

    .venv/bin/python bench/labelstudio.py [--tasks 1000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import serve, stop  # noqa: E402

from tests.label_studio_server import LabelStudioServer, installed  # noqa: E402
from tests.ray_cluster import free_port  # noqa: E402
from tests.test_label_studio import NER_CONFIG  # noqa: E402
from tests.trainer_data import toy_tasks  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait(check, every_s: float = 0.5):
    while True:
        value = check()
        if value:
            return value
        time.sleep(every_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1, help="of the MiniLM NER training (the defaults otherwise)")
    args = parser.parse_args()
    venv = installed()
    if venv is None:
        raise SystemExit("Label Studio is not installed: run .ci/setup")
    work = Path(tempfile.mkdtemp(prefix="labtrain-bench-ls-"))
    server = LabelStudioServer(work, venv).start()
    info = serve(work / "home", 2, free_port())
    rows = []
    try:
        http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['admin_token']}"}, timeout=600
        )
        ls = server.client()
        project = ls.post("/api/projects", json={"title": "bench", "label_config": NER_CONFIG}).json()["id"]
        tasks = [
            {
                "data": t["data"],
                "annotations": [
                    {
                        "result": [
                            r
                            for r in c["result"]
                            if r["type"] == "labels" and r["value"]["labels"][0] in ("PER", "LOC")
                        ]
                    }
                    for c in t["completions"]
                ],
            }
            for t in toy_tasks(args.tasks)
        ]
        ls.post(f"/api/projects/{project}/import", json=tasks).raise_for_status()

        started = time.monotonic()
        linked = http.post(
            "/api/projects/bench/link",
            json={"label_studio": server.url, "ls_project": project, "ls_token": server.token, "connect": True},
        )
        linked.raise_for_status()
        link_s = time.monotonic() - started
        syncs = []
        for _ in range(3):
            started = time.monotonic()
            http.post("/api/projects/bench/link/sync").raise_for_status()
            syncs.append(time.monotonic() - started)
        rows.append((f"link --connect: pull {args.tasks} tasks, register the backend", f"{link_s:.1f} s"))
        rows.append(
            (
                f"sync of {args.tasks} tasks (pulled again, nothing changed)",
                f"{statistics.median(syncs):.1f} s (median of 3: {', '.join(f'{s:.1f}' for s in syncs)})",
            )
        )

        # a manual MiniLM NER training: what "Start Training" trains again, and the model /predict uses
        manual = http.post(
            "/api/projects/bench/trainings", json={"types": ["ner"], "params": {"epochs": args.epochs}, "deploy": True}
        ).json()
        manual = wait(
            lambda: (t := http.get(f"/api/trainings/{manual['id']}").json())["status"] in ("succeeded", "failed") and t
        )
        assert manual["status"] == "succeeded", manual
        auth = {
            "Authorization": "Basic "
            + base64.b64encode(f"labtrain:{linked.json()['backend_password']}".encode()).decode()
        }
        texts = [t["data"] for t in tasks]
        http.post("/ml/bench/predict", headers=auth, json={"tasks": [{"id": 1, "data": texts[0]}]})  # loads it
        for n, repeats in ((1, 30), (10, 20), (100, 10)):
            seconds = []
            for r in range(repeats):
                batch = [{"id": i, "data": texts[(r * n + i) % len(texts)]} for i in range(n)]
                started = time.monotonic()
                answer = http.post("/ml/bench/predict", headers=auth, json={"tasks": batch, "project": f"{project}.0"})
                seconds.append(time.monotonic() - started)
                assert answer.status_code == 200 and len(answer.json()["results"]) == n, answer.text
            rows.append(
                (
                    f"/predict, {n} task(s), MiniLM NER ({repeats} calls)",
                    f"p50 {statistics.median(seconds) * 1000:.0f} ms, p95 {percentile(seconds, 0.95) * 1000:.0f} ms",
                )
            )

        [backend] = ls.get("/api/ml", params={"project": project}).json()
        started = time.monotonic()
        ls.post(f"/api/ml/{backend['id']}/train").raise_for_status()  # Label Studio's "Start Training"
        trained = wait(
            lambda: [
                t
                for t in http.get("/api/projects/bench/trainings").json()
                if t["source"] == "label studio" and t["status"] in ("succeeded", "failed")
            ]
        )[0]
        assert trained["status"] == "succeeded", trained
        trained_s = time.monotonic() - started
        version = trained["jobs"][0]["model_name"]
        retrieved = ls.post(
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project},
            json={"selectedItems": {"all": True, "excluded": []}},
            timeout=600,
        )
        retrieved.raise_for_status()
        total_s = time.monotonic() - started
        seen = ls.get("/api/tasks", params={"project": project, "fields": "all", "page_size": 100}).json()["tasks"]
        assert all(any(p["model_version"] == version for p in t["predictions"]) for t in seen), "predictions missing"
        rows.append(
            (
                "Start Training -> training succeeded and deployed (MiniLM NER, "
                f"{args.epochs} epoch(s), {args.tasks} tasks)",
                f"{trained_s:.1f} s",
            )
        )
        rows.append(
            (
                f"... -> Retrieve predictions: {version} on all {args.tasks} tasks in Label Studio",
                f"{total_s:.1f} s in all ({total_s - trained_s:.1f} s for the predictions)",
            )
        )
    finally:
        stop(work / "home")
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\nlabtrain as Label Studio 1.23.2's ML backend, this machine (2 CPUs)\n")
    print("| measure | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")
    print(json.dumps({"rows": rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
