"""NER through `labtrain serve` with nothing but the defaults, as a user runs it: a project holds
the official training sentences of a CoNLL set and its test sentences tagged `Test`, and one
training asks only for the type and the tagged test part (`labtrain train PROJECT --type ner
--test-tag Test`); the service holds out its default 10 % of the training tasks for validation and
uses the `ner` + `minilm` recipe (trainers.recipes). Prints test entity F1 per type, the wall time
from the request to the end, the training job's own time and its parameters.

    .venv/bin/python bench/service_ner.py [--only conll2003 | --only conll2002_es] [--num-cpus 2]
        [--language es] [--register e5=FOLDER:multilingual] [--embeddings minilm --embeddings e5 ...]
        [--backend sparknlp] [--sentences 1350] [--seed 1]

`--backend sparknlp` trains Spark NLP's NerDL instead (the `ner` + `minilm_words` recipe), still
with nothing else set; `--sentences N` keeps the first training documents that hold N sentences
(the test part stays whole): a small project, as a user starts one. `--seed N` sets the one
parameter the seed spread needs.

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


def first_documents(documents: list, sentences: int | None) -> list:
    """The first documents that hold `sentences` sentences (all of them for None); a first document
    longer than that is cut (CoNLL-2002 Spanish is one document of 8,323 sentences)."""
    kept, n = [], 0
    for document in documents:
        if sentences is not None and n >= sentences:
            break
        kept.append(document[:sentences] if sentences is not None and not kept else document)
        n += len(kept[-1])
    return kept


def export(train: Path, test: Path, sentences: int | None = None) -> list[dict]:
    tasks = []
    for is_test, path in ((False, train), (True, test)):
        documents = read_conll(path) if is_test else first_documents(read_conll(path), sentences)
        for sentence in (s for document in documents for s in document):
            row = to_row(len(tasks) + 1, "test" if is_test else "train", sentence)
            tasks.append(task(row["task_id"], row["text"], json.loads(row["result"]), is_test))
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(SETS), action="append")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--backend", choices=["pytorch", "sparknlp"], default=None, help="default: the service's")
    parser.add_argument("--sentences", type=int, help="train on the first documents holding this many sentences")
    parser.add_argument("--seed", type=int, help="the training's seed (default: the recipe's, 0): the seed spread")
    parser.add_argument("--language", default="en", help="the projects' language (it picks the default embeddings)")
    parser.add_argument(
        "--register",
        action="append",
        default=[],
        metavar="NAME=FOLDER[:LANG,...]",
        help="register an encoder first (labtrain embeddings add), e.g. e5=/tmp/e5-small:multilingual",
    )
    parser.add_argument(
        "--embeddings",
        action="append",
        help="train once per value on the same project (default: once, with the defaults); 'default' names them",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labtrain-service-ner-"))
    info = serve(home, args.num_cpus, 8794)
    rows = []
    try:
        http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['admin_token']}"}, timeout=600
        )
        for entry in args.register:
            encoder, _, where = entry.partition("=")
            folder, _, languages = where.partition(":")
            body = {"name": encoder, "source": folder, "languages": [x for x in languages.split(",") if x]}
            http.post("/api/embeddings", json=body).raise_for_status()
        for name, embeddings in [
            (n, e) for n in args.only or sorted(SETS, reverse=True) for e in args.embeddings or [None]
        ]:
            title, train, test = SETS[name]
            tasks = export(train, test, args.sentences)
            if http.get(f"/api/projects/{name}").status_code == 404:
                project = {"name": name, "config": CONLL_CONFIG, "language": args.language}
                http.post("/api/projects", json=project).raise_for_status()
                http.post(f"/api/projects/{name}/import", content=json.dumps(tasks)).raise_for_status()
            started = time.monotonic()
            body = {"types": ["ner"], "selection": {"test_tag": "Test"}}
            if embeddings and embeddings != "default":
                body["embeddings"] = embeddings
            if args.backend:
                body["backend"] = args.backend
            if args.seed is not None:
                body["params"] = {"seed": args.seed}
            answer = http.post(f"/api/projects/{name}/trainings", json=body)
            answer.raise_for_status()
            done = wait(http, answer.json()["id"], poll_s=10)
            wall = time.monotonic() - started
            job = done["jobs"][0]
            if done["status"] != "succeeded":
                raise SystemExit(f"{title}: training {done['id']} {done['status']}: {job.get('reason')}")
            saved = json.loads((Path(job["output_dir"]) / "labtrain.json").read_text())
            metrics = json.loads((Path(job["output_dir"]) / "metrics.json").read_text())  # per type too
            entity = metrics.get("entity", metrics)
            size = sum(f.stat().st_size for f in (Path(job["output_dir"]) / "model").rglob("*") if f.is_file())
            rows.append((title, len(tasks), entity, wall, saved, job["embeddings"], size))
            print(
                f"{title} ({job['embeddings']}): test entity F1 {entity['micro']['f1']:.3f} in {minutes(wall)}",
                flush=True,
            )
            print(f"  parameters: {saved['parameters']}", flush=True)
    finally:
        stop(home)
    head = f"\n{'set':<22}{'embeddings':<14}{'tasks':>7}{'test F1':>9}" + "".join(f"{label:>7}" for label in LABELS)
    print(head + f"{'job':>10}{'wall':>10}{'model MB':>10}")
    for title, n, entity, wall, saved, embeddings, size in rows:
        per_type = "".join(f"{entity['per_label'][label]['f1']:7.3f}" for label in LABELS)
        print(
            f"{title:<22}{embeddings:<14}{n:>7}{entity['micro']['f1']:9.3f}{per_type}"
            f"{minutes(saved['seconds']):>10}{minutes(wall):>10}{size / 1e6:10.0f}"
        )
    backend = args.backend or "the default backend"
    sentences = f", the first {args.sentences} training sentences" if args.sentences else ""
    print(f"\nlabtrain serve --num-cpus {args.num_cpus}, {backend}{sentences}, defaults only; home {home}")


if __name__ == "__main__":
    main()
