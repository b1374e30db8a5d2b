"""Custom NER training scripts: the contract (data in, model out, labtrain scores it on the test
part it kept), the limits (time, memory), the clean environment, and the service's routes, roles
and CLI. Real processes, a real MiniLM fine-tune by the example script, a real `labtrain serve`."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from labtrain.errors import LabtrainError
from tests.test_service import new_user
from tests.test_training_service import toy_project, wait
from tests.trainer_data import CONFIG, MULTI_CONFIG, build_snapshot, toy_tasks
from trainers import predict
from trainers.run import failure_reason, run

EXAMPLE = Path(__file__).resolve().parents[1] / "trainers" / "examples" / "minilm_token_classifier.py"
PARAMS = {"epochs": 3, "learning_rate": 1e-4, "batch_size": 4}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> str:
    return build_snapshot(tmp_path_factory.mktemp("scripts"), CONFIG, toy_tasks(60))["ner"]


def script_spec(snapshot: str, out: Path, path: Path, time_limit_s: int = 300, memory_mb: int = 3000) -> dict:
    return {
        "type": "ner",
        "snapshot": snapshot,
        "output_dir": str(out),
        "labels": ["PER", "LOC"],
        "params": PARAMS,
        "script": {
            "name": path.stem,
            "version": 1,
            "path": str(path),
            "time_limit_s": time_limit_s,
            "memory_mb": memory_mb,
        },
    }


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(
        "import argparse, json, os, sys, time\nfrom pathlib import Path\n"
        "p = argparse.ArgumentParser()\nfor a in ('--data', '--params', '--output'):\n"
        "    p.add_argument(a, type=Path)\nargs = p.parse_args()\n" + body
    )
    return path


def test_the_example_script_trains_and_labtrain_scores_it_on_the_test_part_it_kept(snapshot, tmp_path):
    lines = []
    result = run(
        script_spec(snapshot, tmp_path / "job", EXAMPLE),
        [lambda e: lines.append(e["line"]) if e["kind"] == "log" else None],
    )
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["scored_by"] == "labtrain" and metrics["entity"]["micro"]["f1"] > 0.9
    assert metrics["script_metrics"]["epochs"] == 3 and metrics["script_run"]["peak_memory_mb"] > 100
    assert any(line.startswith("script| epoch 3: loss") for line in lines)
    # the script saw train and validation, never the test part
    data = tmp_path / "job" / "data"
    given = set(pq.read_table(data / "train.parquet").column("task_id").to_pylist())
    test = {r["task_id"] for r in pq.read_table(snapshot).to_pylist() if r["split"] == "test"}
    assert given and test and not given & test
    documents = sum(part.read_text().count("\n\n") for part in (data / "train.conll", data / "dev.conll"))
    assert documents == len(given)
    assert json.loads((data / "params.json").read_text())["tags"] == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    info = json.loads((tmp_path / "job" / "labtrain.json").read_text())
    assert info["embeddings"] == "custom" and info["script"]["name"] == EXAMPLE.stem and info["scorable"]
    found = predict.load(result.output_dir).predict(["Greta lives in Oslo ."])[0]
    assert {(r["value"]["text"], r["value"]["labels"][0]) for r in found} == {("Greta", "PER"), ("Oslo", "LOC")}


@pytest.mark.parametrize(
    "name, body, limits, reason",
    [
        ("raises", "sys.exit('bad data: no tag column')\n", {}, "failed with exit code 1: bad data: no tag column"),
        (
            "hangs",
            "Path(PID).write_text(str(os.getpid()))\ntime.sleep(120)\n",
            {"time_limit_s": 2},
            "exceeded its time limit of 2 s and was stopped",
        ),
        (
            "hogs",
            "Path(PID).write_text(str(os.getpid()))\nblock = bytearray(600 * 2**20)\ntime.sleep(120)\n",
            {"memory_mb": 200},
            "exceeded its memory limit of 200 MB",
        ),
        ("writes_nothing", "print('done')\n", {}, "exited with code 0 but wrote nothing into its --output folder"),
        ("killed", "import signal\nos.kill(os.getpid(), signal.SIGKILL)\n", {}, "was killed by signal 9 (SIGKILL)"),
        (
            "leaves_a_child",
            "import subprocess\nsubprocess.Popen(['sleep', '120'])\n",
            {},
            "exited with code 0 but wrote nothing",
        ),
    ],
)
def test_a_failing_hanging_or_greedy_script_fails_with_its_reason_and_leaves_no_process(
    snapshot, tmp_path, name, body, limits, reason
):
    pid_file = tmp_path / "pid"
    script = write_script(tmp_path, name, body.replace("PID", repr(str(pid_file))))
    with pytest.raises(LabtrainError) as raised:
        run(script_spec(snapshot, tmp_path / "job", script, **limits))
    assert reason in failure_reason(raised.value) and f"custom script {name!r} v1" in str(raised.value)
    if name in ("hangs", "hogs") and pid_file.exists():  # (a slow start can meet its limit before it wrote it)
        assert not Path(f"/proc/{pid_file.read_text()}").exists(), "the stopped script still runs"
    assert reason.split(" and")[0] in (tmp_path / "job" / "training.log").read_text()


def test_the_script_runs_in_its_own_folder_without_labtrain_tokens_or_home(snapshot, tmp_path, monkeypatch):
    monkeypatch.setenv("LABTRAIN_TOKEN", "secret-token-1234")
    monkeypatch.setenv("LABTRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    script = write_script(
        tmp_path,
        "looks",
        "(args.output / 'seen.json').write_text(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))\n",
    )
    run(script_spec(snapshot, tmp_path / "job", script))
    seen = json.loads((tmp_path / "job" / "model" / "seen.json").read_text())
    assert not [k for k in seen["env"] if k.startswith(("LABTRAIN", "RAY_"))]
    assert "secret-token-1234" not in json.dumps(seen) and str(tmp_path / "home") not in json.dumps(seen)
    assert seen["cwd"] == seen["env"]["HOME"] and seen["cwd"].startswith(tempfile.gettempdir() + "/labtrain-script-")
    assert not Path(seen["cwd"]).exists()  # the scratch folder is gone; the model was copied out
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["scored_by"] is None and "no config.json" in metrics["not_scored"]
    with pytest.raises(LabtrainError, match="cannot load it to pre-annotate: the output folder has no config.json"):
        predict.load(tmp_path / "job")


def test_scripts_through_the_service_roles_versions_cli_training_and_predict(service, tmp_path):
    project = toy_project(service)
    manager, manager_token = new_user(service)
    annotator, annotator_token = new_user(service)
    source = EXAMPLE.read_text()
    with service.client() as http:
        http.put(
            f"/api/projects/{project}/members",
            json={"set": [{"username": manager, "role": "manager"}, {"username": annotator, "role": "annotator"}]},
        )
        other = "c" + uuid.uuid4().hex[:8]
        assert http.post("/api/projects", json={"name": other, "config": MULTI_CONFIG}).status_code == 201
        refused = http.post(f"/api/projects/{other}/scripts", json={"name": "x", "source": source})
        assert refused.status_code == 422 and "only NER projects take custom training scripts" in refused.text
        for body, words in [
            ({"name": "../up", "source": source}, "script name '../up'"),
            ({"name": "s", "source": "def f(:\n"}, "line 1"),
            ({"name": "s", "source": "  "}, "is empty"),
        ]:
            answer = http.post(f"/api/projects/{project}/scripts", json=body)
            assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
    with service.client(annotator_token) as http:
        assert http.post(f"/api/projects/{project}/scripts", json={"name": "s", "source": source}).status_code == 403
        assert http.get(f"/api/projects/{project}/scripts").status_code == 403
        answer = http.post(f"/api/projects/{project}/trainings", json={"types": ["ner"], "script": "tagger"})
        assert answer.status_code == 403
    with service.client(token=None) as http:
        assert http.get(f"/api/projects/{project}/scripts").status_code == 401

    file = tmp_path / "tagger.py"
    file.write_text(source)
    uploaded = service.cli("script", "upload", project, str(file), "--json", token=manager_token)
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["version"] == 1
    again = json.loads(service.cli("script", "upload", project, str(file), "--json", token=manager_token).stdout)
    assert again["version"] == 1  # same source, same version
    file.write_text(source + "\n# tuned\n")
    assert (
        json.loads(service.cli("script", "upload", project, str(file), "--json", token=manager_token).stdout)["version"]
        == 2
    )
    with service.client(manager_token) as http:
        listed = http.get(f"/api/projects/{project}/scripts").json()
        assert [(s["name"], s["version"]) for s in listed] == [("tagger", 2), ("tagger", 1)]
        assert (
            "path" not in listed[0]
            and http.get(f"/api/projects/{project}/scripts/tagger", params={"version": 1}).json()["source"] == source
        )
        options = http.get(f"/api/projects/{project}/training/options").json()
        assert options["types"][0]["custom_scripts"] == ["tagger"]
        for body, status, words in [
            ({"types": ["ner", "classification"], "script": "tagger"}, 422, "NER only"),
            ({"types": ["ner"], "script": "nope"}, 404, "has no script 'nope'"),
            ({"types": ["ner"], "script": "tagger", "script_version": 7}, 404, "version 7"),
            ({"types": ["ner"], "script": "tagger", "script_time_limit_s": 0}, 422, "script_time_limit_s"),
        ]:
            answer = http.post(f"/api/projects/{project}/trainings", json=body)
            assert answer.status_code == status and words in answer.text, answer.text

    trained = service.cli(
        "train",
        project,
        "--type",
        "ner",
        "--script",
        "tagger",
        "--script-version",
        "1",
        "--epochs",
        "3",
        "--learning-rate",
        "1e-4",
        "--batch-size",
        "4",
        "--follow",
        "--json",
        token=manager_token,
    )
    assert trained.returncode == 0, trained.stderr
    training = json.loads(trained.stdout)
    job = training["jobs"][0]
    assert training["status"] == "succeeded", training
    assert training["request"]["script"]["name"] == "tagger" and training["request"]["script"]["version"] == 1
    assert job["embeddings"] == "custom" and job["metrics"]["micro"]["f1"] > 0.9
    with service.client(manager_token) as http:
        log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
        assert "script| epoch 3: loss" in log and "labtrain scored the model on the" in log
        assert service.token not in log and manager_token not in log
        found = http.post(f"/api/models/{job['model_name']}/predict", json={"texts": ["Hugo flew to Rome ."]}).json()
        assert {r["value"]["text"] for r in found["results"][0]} == {"Hugo", "Rome"}


def test_a_script_that_fails_fails_its_job_and_the_service_goes_on(service, tmp_path):
    project = toy_project(service, 20)
    source = (
        "import os, sys\nprint('labtrain or Ray variables:', sorted(k for k in os.environ if k.startswith("
        "('LABTRAIN', 'RAY_'))))\nprint('environment:', dict(os.environ))\n"
        "sys.exit('cannot find my embeddings')\n"
    )
    with service.client() as http:
        assert (
            http.post(f"/api/projects/{project}/scripts", json={"name": "broken", "source": source}).status_code == 201
        )
        answer = http.post(f"/api/projects/{project}/trainings", json={"types": ["ner"], "script": "broken"})
        assert answer.status_code == 201, answer.text
        training = wait(http, answer.json()["id"])
        assert training["status"] == "failed"
        assert training["jobs"][0]["reason"] == (
            "custom script 'broken' v1 failed with exit code 1: cannot find my embeddings"
        )
        log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
        assert "script| labtrain or Ray variables: []" in log and "script| environment: {'PATH'" in log
        assert service.token not in log and str(service.home) not in log.split("script| environment:")[1]
        assert http.get("/api/health").status_code == 200
        assert os.path.exists(Path(training["jobs"][0]["output_dir"]) / "script.py")
    reason = "custom script 'broken' v1 failed with exit code 1: cannot find my embeddings"
    (listed,) = json.loads(service.cli("history", project, "--json").stdout)
    assert listed["status"] == "failed" and listed["jobs"][0]["reason"] == reason
    assert f"failed: {reason}" in service.cli("history", project).stdout
    assert f"failed: {reason}" in service.cli("status", str(training["id"])).stdout
