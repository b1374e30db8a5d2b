"""Tuning and the train-curve through `labtrain serve`: on CoNLL-2003 English (NER, `bilstm`) and
the SMS Spam Collection (single choice, `minilm`), a training with the default parameters against a
Ray Tune search (`tune: trials=N`, the default space) on the same project, the same tasks and the
same Test-tagged test part: test F1 and total wall time of each; then the CoNLL train-curve, whose
plot is written next to the table. Prints the tables.

    .venv/bin/python bench/tuning.py [--trials 8] [--conll-train 4000] [--sms-train 1000] [--out DIR]

It starts its own service on a temporary home (port 8793, `--num-cpus`, default 2) and stops it at
the end. The test parts are the official CoNLL test set and the shared SMS test split, tagged
`Test`; the train parts are the first N sentences / messages of the official train files (the
service holds 10 % of them out for validation, the score a search ranks its trials by).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import SHARED, minutes, serve, stop  # noqa: E402
from ner_vs_spacy import LABELS, read_conll, to_row  # noqa: E402

CONLL_CONFIG = (
    """<View>
  <Labels name="label" toName="text">"""
    + "".join(f'<Label value="{x}"/>' for x in LABELS)
    + """</Labels>
  <Text name="text" value="$text"/>
</View>"""
)
SMS_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text" choice="single"><Choice value="ham"/><Choice value="spam"/></Choices>
</View>"""
SELECTION = {"test_tag": "Test"}
ENDED = ("succeeded", "failed", "cancelled")


def task(task_id: int, text: str, result: list, test: bool) -> dict:
    return {
        "id": task_id,
        "data": {"text": text},
        "tags": ["Test"] if test else [],
        "completions": [
            {"id": task_id, "created_username": "bench", "submitted_at": "2024-01-01T00:00:00", "result": result}
        ],
    }


def conll_export(n_train: int) -> list[dict]:
    train = [s for doc in read_conll(SHARED / "conll2003" / "eng.train.conll") for s in doc][:n_train]
    test = [s for doc in read_conll(SHARED / "conll2003" / "eng.test.conll") for s in doc]
    tasks = []
    for split, sentences in (("train", train), ("test", test)):
        for sentence in sentences:
            row = to_row(len(tasks) + 1, split, sentence)
            tasks.append(task(row["task_id"], row["text"], json.loads(row["result"]), split == "test"))
    return tasks


def sms_export(n_train: int) -> list[dict]:
    tasks = []
    for split in ("train", "test"):
        with open(SHARED / "sms_spam" / f"{split}.csv", newline="") as f:
            for i, r in enumerate(csv.DictReader(f)):
                if split == "train" and i >= n_train:
                    break
                result = [
                    {
                        "id": "c",
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [r["label"]]},
                    }
                ]
                tasks.append(task(len(tasks) + 1, r["text"], result, split == "test"))
    return tasks


def wait(http: httpx.Client, training_id: int, poll_s: float = 5) -> dict:
    while True:
        training = http.get(f"/api/trainings/{training_id}").json()
        if training["status"] in ENDED:
            return training
        time.sleep(poll_s)


def train(http: httpx.Client, project: str, body: dict) -> tuple[dict, float]:
    """One training through the API, from the request to its end; (the training, wall seconds)."""
    started = time.monotonic()
    answer = http.post(f"/api/projects/{project}/trainings", json={**body, "selection": SELECTION})
    answer.raise_for_status()
    done = wait(http, answer.json()["id"])
    if done["status"] != "succeeded":
        raise SystemExit(f"training {done['id']} of {project} {done['status']}: {done['jobs'][0]['reason']}")
    return done, time.monotonic() - started


def project(http: httpx.Client, name: str, config: str, tasks: list[dict]) -> None:
    http.post("/api/projects", json={"name": name, "config": config}).raise_for_status()
    http.post(f"/api/projects/{name}/import", content=json.dumps(tasks)).raise_for_status()


def micro_f1(job: dict) -> float:
    return job["metrics"]["micro"]["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--conll-train", type=int, default=4000, help="CoNLL training sentences (of 14,041)")
    parser.add_argument("--sms-train", type=int, default=1000, help="SMS training messages (of 4,459)")
    parser.add_argument("--points", default="10,25,50,100", help="the CoNLL train-curve's points")
    parser.add_argument("--seeds", type=int, default=2, help="the train-curve's runs per point")
    parser.add_argument("--only", choices=["conll", "sms", "curve"], action="append")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where the curve's PNG goes")
    args = parser.parse_args()
    only = set(args.only or ["conll", "sms", "curve"])
    home = Path(tempfile.mkdtemp(prefix="labtrain-tuning-"))
    info = serve(home, args.num_cpus, 8793)
    rows, curve = [], None
    try:
        http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['admin_token']}"}, timeout=300
        )
        sets = []
        if only & {"conll", "curve"}:
            project(http, "conll", CONLL_CONFIG, conll_export(args.conll_train))
        if "conll" in only:
            sets.append(("CoNLL-2003 NER", "conll", {"types": ["ner"], "embeddings": "bilstm"}))
        if "sms" in only:
            project(http, "sms", SMS_CONFIG, sms_export(args.sms_train))
            sets.append(("SMS Spam", "sms", {"types": ["classification"], "embeddings": "minilm"}))
        for title, name, body in sets:
            tasks = http.get(f"/api/projects/{name}").json()["tasks"]
            default, default_s = train(http, name, body)
            print(
                f"{title}: default parameters: test F1 {micro_f1(default['jobs'][0]):.3f} in {minutes(default_s)}",
                flush=True,
            )
            tuned, tuned_s = train(http, name, {**body, "tune": {"trials": args.trials}})
            job = tuned["jobs"][0]
            tuning = job["metrics"]["tuning"]
            ended = [t["end"] for t in tuning["trials"]]
            print(
                f"{title}: search of {args.trials} trials: test F1 {micro_f1(job):.3f} in {minutes(tuned_s)}; "
                f"best {tuning['best_params']}",
                flush=True,
            )
            rows.append(
                {
                    "set": title,
                    "embeddings": body["embeddings"],
                    "tasks": tasks,
                    "default_f1": micro_f1(default["jobs"][0]),
                    "default_s": default_s,
                    "default_params": json.loads(
                        (Path(default["jobs"][0]["output_dir"]) / "labtrain.json").read_text()
                    )["parameters"],
                    "tuned_f1": micro_f1(job),
                    "tuned_s": tuned_s,
                    "best": tuning["best_params"],
                    "best_val": max(t["val_f1"] or 0 for t in tuning["trials"] if t.get("best")),
                    "finished": ended.count("finished"),
                    "asha": ended.count("stopped early (ASHA)"),
                    "slots": tuning["slots"],
                    "space": tuning["space"],
                }
            )
        if "curve" in only:
            body = {"types": ["ner"], "embeddings": "bilstm", "curve": {"points": args.points, "seeds": args.seeds}}
            done, curve_s = train(http, "conll", body)
            curve = {**done["jobs"][0]["metrics"]["curve"], "seconds": curve_s}
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            png = http.get(f"/api/trainings/{done['id']}/curve.png")
            png.raise_for_status()
            (out / "conll_curve.png").write_bytes(png.content)
            curve["png"] = str(out / "conll_curve.png")
    finally:
        stop(home)

    if rows:
        print(
            f"\n{args.num_cpus} CPUs; the same project, tasks and Test-tagged test part for both; times are from "
            "the request to the end of the training"
        )
        print(
            "| set | tasks (train + test) | default: test F1 | time | tuned: test F1 | time | best parameters "
            "(validation F1) | trials finished / stopped by ASHA |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            best = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["best"].items())
            print(
                f"| {r['set']} ({r['embeddings']}) | {r['tasks']} | {r['default_f1']:.3f} | "
                f"{minutes(r['default_s'])} | {r['tuned_f1']:.3f} | {minutes(r['tuned_s'])} | {best} "
                f"({r['best_val']:.3f}) | {r['finished']} / {r['asha']} (at most {r['slots']} at once) |"
            )
        for r in rows:
            print(f"{r['set']}: default parameters {json.dumps(r['default_params'])}; space {r['space']}")
    if curve:
        print(f"\nCoNLL-2003 train-curve (bilstm, {args.seeds} seeds per point, {minutes(curve['seconds'])}):")
        print("| train % | tasks | test F1 (mean) | spread | runs |")
        print("|---|---|---|---|---|")
        for p in curve["points"]:
            mean = f"{p['mean']:.3f}" if p["mean"] is not None else "failed"
            print(
                f"| {p['percent']} | {p['tasks']} | {mean} | {p['spread']:.3f} | "
                f"{', '.join(f'{f:.3f}' for f in p['f1'])} |"
            )
        print(f"verdict: {curve['verdict']}\nplot: {curve['png']}")


if __name__ == "__main__":
    main()
