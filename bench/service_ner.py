"""NER through `labtrain serve` with nothing but the defaults, as a user runs it: a project holds
the official training sentences of a CoNLL set and its test sentences tagged `Test`, and one
training asks only for the type and the tagged test part (`labtrain train PROJECT --type ner
--test-tag Test`); the service holds out its default 10 % of the training tasks for validation and
uses the `ner` + `minilm` recipe (trainers.recipes). Prints test entity F1 per type, the wall time
from the request to the end, the training job's own time and its parameters.

    .venv/bin/python bench/service_ner.py [--only conll2003 | --only conll2002_es] [--num-cpus 2]

It starts its own service on a temporary home (port 8794) and stops it at the end.
CoNLL-2003 English: eng.train.conll (14,041 sentences) and eng.test.conll (3,453);
CoNLL-2002 Spanish: esp.train (8,323) and esp.testb (1,517).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx
from common import SHARED, minutes, serve, stop
from ner_vs_spacy import LABELS, read_conll, to_row
from tuning import CONLL_CONFIG, task, wait

SETS = {
    "conll2003": (
        "CoNLL-2003 English",
        SHARED / "conll2003" / "eng.train.conll",
        SHARED / "conll2003" / "eng.test.conll",
    ),
    "conll2002_es": (
        "CoNLL-2002 Spanish",
        SHARED / "conll2002_es" / "esp.train",
        SHARED / "conll2002_es" / "esp.testb",
    ),
}


def export(train: Path, test: Path) -> list[dict]:
    tasks = []
    for is_test, path in ((False, train), (True, test)):
        for sentence in (s for document in read_conll(path) for s in document):
            row = to_row(len(tasks) + 1, "test" if is_test else "train", sentence)
            tasks.append(task(row["task_id"], row["text"], json.loads(row["result"]), is_test))
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(SETS), action="append")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labtrain-service-ner-"))
    info = serve(home, args.num_cpus, 8794)
    rows = []
    try:
        http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['admin_token']}"}, timeout=600
        )
        for name in args.only or sorted(SETS, reverse=True):
            title, train, test = SETS[name]
            tasks = export(train, test)
            http.post("/api/projects", json={"name": name, "config": CONLL_CONFIG}).raise_for_status()
            http.post(f"/api/projects/{name}/import", content=json.dumps(tasks)).raise_for_status()
            started = time.monotonic()
            answer = http.post(
                f"/api/projects/{name}/trainings", json={"types": ["ner"], "selection": {"test_tag": "Test"}}
            )
            answer.raise_for_status()
            done = wait(http, answer.json()["id"], poll_s=10)
            wall = time.monotonic() - started
            job = done["jobs"][0]
            if done["status"] != "succeeded":
                raise SystemExit(f"{title}: training {done['id']} {done['status']}: {job.get('reason')}")
            saved = json.loads((Path(job["output_dir"]) / "labtrain.json").read_text())
            entity = job["metrics"]["entity"] if "entity" in job["metrics"] else job["metrics"]
            rows.append((title, len(tasks), entity, wall, saved))
            print(f"{title}: test entity F1 {entity['micro']['f1']:.3f} in {minutes(wall)}", flush=True)
            print(f"  parameters: {saved['parameters']}", flush=True)
    finally:
        stop(home)
    print(f"\n{'set':<22}{'tasks':>7}{'test F1':>9}" + "".join(f"{label:>7}" for label in LABELS) + f"{'wall':>10}")
    for title, n, entity, wall, _ in rows:
        per_type = "".join(f"{entity['per_label'][label]['f1']:7.3f}" for label in LABELS)
        print(f"{title:<22}{n:>7}{entity['micro']['f1']:9.3f}{per_type}{minutes(wall):>10}")
    print(f"\nlabtrain serve --num-cpus {args.num_cpus}, defaults only; home {home}")


if __name__ == "__main__":
    main()
