"""Parameter search (Ray Tune, ASHA) and the train-curve, through the running service: real Ray,
real Ray Train runs under Tune, the HTTP API and the `labtrain` CLI, on the tiny toy project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.ray_cluster import HANG_S, AnotherRayCluster
from tests.test_training_service import BILSTM, start, toy_project, wait, wait_for_free_cpus

SPACE = "lr=3e-3:3e-2:log,batch_size=4|8"


def test_a_search_runs_its_trials_on_ray_tune_and_keeps_the_best_trials_model(service):
    project = toy_project(service)
    with service.client() as http:
        training = start(
            http,
            project,
            types=["ner"],
            embeddings="bilstm",
            params={**BILSTM, "epochs": 4},
            tune={"trials": 2, "space": SPACE},
        )
        assert training["source"] == "tuning"
        done = wait(http, training["id"])
        assert done["status"] == "succeeded", done
        (job,) = done["jobs"]
        tuning = job["metrics"]["tuning"]
        assert tuning["space"] == "learning_rate=0.003:0.03:log, batch_size=4|8"
        assert tuning["slots"] == 2  # two CPU bundles free: two trials at once
        trials = tuning["trials"]
        assert [t["trial"] for t in trials] == [1, 2]
        assert all(3e-3 <= t["params"]["learning_rate"] <= 3e-2 and t["params"]["batch_size"] in (4, 8) for t in trials)
        (best,) = [t for t in trials if t.get("best")]
        finished = [t for t in trials if t["end"] == "finished"]
        assert best["val_f1"] == max(t["val_f1"] for t in finished)
        assert tuning["best_params"] == best["params"]
        assert job["model_name"] == f"ner_{project}" and job["metrics"]["micro"]["f1"] > 0.5

        # the registered model is the best trial's: its parameters are the ones searched
        model = http.get(f"/api/models/{job['model_name']}").json()
        kept = json.loads((service.home / "trainings" / str(done["id"]) / "ner" / "labtrain.json").read_text())
        assert kept["parameters"]["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
        assert kept["parameters"]["batch_size"] == best["params"]["batch_size"]
        assert model["metrics"]["micro"] == job["metrics"]["micro"]

        log = http.get(f"/api/trainings/{done['id']}/logs", params={"follow": False}).text
        assert "parameter search: 2 trials over learning_rate=0.003:0.03:log, batch_size=4|8; at most 2 at once" in log
        assert "TRIAL  LEARNING_RATE  BATCH_SIZE  EPOCHS  VAL F1  END" in log
        assert f"best: trial {best['trial']}" in log
        history = http.get(f"/api/projects/{project}/trainings").json()
        assert history[0]["id"] == done["id"] and history[0]["source"] == "tuning"


def test_the_curve_trains_on_growing_shares_plots_and_gives_a_verdict_without_registering_a_model(service):
    project = toy_project(service)
    answer = service.cli(
        "curve",
        project,
        "--type",
        "ner",
        "--embeddings",
        "bilstm",
        "--epochs",
        "3",
        "--learning-rate",
        "0.01",
        "--batch-size",
        "4",
        "--points",
        "50,100",
        "--seeds",
        "2",
        "--follow",
        token=service.token,
    )
    assert answer.returncode == 0, answer.stderr + answer.stdout
    assert "TRAIN %   TASKS   TEST F1" in answer.stdout and "verdict: " in answer.stdout
    with service.client() as http:
        (training,) = http.get(f"/api/projects/{project}/trainings").json()
        assert training["source"] == "curve" and training["status"] == "succeeded"
        (job,) = training["jobs"]
        assert job["model_name"] is None
        curve = job["metrics"]["curve"]
        assert [p["percent"] for p in curve["points"]] == [50, 100] and curve["seeds"] == 2
        half, full = curve["points"]
        assert full["tasks"] == 48 and half["tasks"] == 24  # 60 tasks, 20 % test
        assert len(full["f1"]) == 2 and all(0 <= f <= 1 for f in full["f1"] + half["f1"])
        assert curve["verdict"].split(" ")[0] in ("still", "flat", "falling")
        assert curve["verdict"] in answer.stdout
        png = http.get(f"/api/trainings/{training['id']}/curve.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        assert not [m for m in http.get("/api/models").json() if m["project"] == project]
        log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
        assert "train-curve: 50 %, 100 % of the train part x 2 seed(s)" in log and "verdict: " in log


def test_cancel_stops_every_trial_and_frees_the_bundles(service):
    # With another Ray cluster on the machine: Ray Train's cleaner, which frees a cancelled run's
    # bundles, must still find its own cluster (it guessed, and gave up on two, before labtrain
    # gave its workers the cluster's address).
    other = AnotherRayCluster()
    try:
        _cancel_a_search(service)
    finally:
        other.stop()


def _cancel_a_search(service) -> None:
    project = toy_project(service)
    with service.client() as http:
        training = start(
            http,
            project,
            types=["ner"],
            embeddings="bilstm",
            params={**BILSTM, "epochs": 300},
            tune={"trials": 4, "space": SPACE},
        )
        wait(http, training["id"], until=lambda t: t["progress"] > 0)
        (server,) = http.get("/api/cluster").json()["training_servers"]
        assert server["bundle"] == "2 CPU"
        assert http.post(f"/api/trainings/{training['id']}/cancel").status_code == 200
        done = wait(http, training["id"])
        assert done["status"] == "cancelled", done
        # Ray's own view: no trial's group (Tune's) or worker group (a Train controller's, even one
        # still starting when the search was cancelled) is left, and no worker holds a CPU
        wait_for_no_placement_groups(http)
        wait_for_free_cpus(http, 2)


def wait_for_no_placement_groups(http) -> None:
    dashboard = http.get("/api/cluster").json()["dashboard_url"]
    deadline = time.monotonic() + HANG_S
    while (groups := live_placement_groups(dashboard)) and time.monotonic() < deadline:
        time.sleep(1)
    assert groups == [], groups


def live_placement_groups(dashboard: str) -> list[dict]:
    """The placement groups Ray has not removed, from its state API (the service's dashboard)."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from ray.util.state import list_placement_groups; "
            "print(json.dumps([{'id': g.placement_group_id, 'state': g.state, 'bundles': g.bundles} "
            "for g in list_placement_groups(address=sys.argv[1], detail=True, limit=1000) if g.state != 'REMOVED']))",
            dashboard,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
        timeout=HANG_S,
    )
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "body, message",
    [
        ({"types": ["ner", "classification"], "tune": {"trials": 2}}, "tune: give one training type"),
        ({"types": ["ner"], "tune": {"trials": 2, "space": "momentum=0.1:0.9"}}, "'momentum' cannot be searched"),
        (
            {"types": ["ner"], "tune": {"trials": 2, "space": "dropout=0.2:1.5"}},
            "dropout=1.5 must be a number in [0, 1)",
        ),
        ({"types": ["ner"], "tune": {"trials": 2, "space": "batch_size=4:16"}}, "batch_size is an integer"),
        ({"types": ["ner"], "tune": {"trials": 2, "budget": "soon"}}, "tune budget 'soon' is not a duration"),
        ({"types": ["ner"], "tune": {"trials": 0}}, "trials"),
        ({"types": ["ner"], "tune": {"trials": 2}, "submit": True}, "cannot be submitted as a Ray job"),
        ({"types": ["ner"], "tune": {"trials": 2}, "curve": {}}, "ask for one of them"),
        ({"types": ["ner"], "curve": {"points": "50"}}, "at least two different percentages"),
        ({"types": ["ner"], "curve": {"points": [0, 100]}}, "'0' must be a whole percentage in 1..100"),
        ({"types": ["ner"], "curve": {}, "deploy": True}, "deploy does not apply"),
        ({"types": ["ner"], "curve": {}, "script": "mine"}, "curve: not with a custom script"),
    ],
)
def test_bad_search_and_curve_requests_name_the_field(service, body, message):
    project = toy_project(service, 20)
    with service.client() as http:
        answer = http.post(f"/api/projects/{project}/trainings", json=body)
        assert answer.status_code == 422, answer.text
        assert message in answer.text
        assert http.get(f"/api/projects/{project}/trainings").json() == []


def test_the_cli_refuses_a_tune_without_a_number_of_trials(service):
    answer = service.cli("train", "anything", "--type", "ner", "--tune", "many", token=service.token)
    assert answer.returncode != 0 and "--tune many: give the number of trials, e.g. --tune trials=8" in answer.stderr


def test_the_verdict_reads_the_last_step_of_the_curve_against_its_noise():
    from trainers.sweep import CurvePoint, verdict

    rising = [CurvePoint(50, 100, [0.70, 0.72]), CurvePoint(100, 200, [0.80, 0.81])]
    flat = [CurvePoint(50, 100, [0.80, 0.81]), CurvePoint(100, 200, [0.805, 0.81])]
    noisy = [CurvePoint(50, 100, [0.60, 0.80]), CurvePoint(100, 200, [0.72, 0.74])]
    assert verdict(rising).startswith("still rising (+0.095 F1 from 50 % to 100 %)")
    assert verdict(flat).startswith("flat")
    assert verdict(noisy).startswith("flat")  # +0.030 is inside the spread of the 50 % seeds
    assert verdict([CurvePoint(50, 100, [0.7]), CurvePoint(100, 200, [])]).startswith("no verdict")


def test_a_curve_point_keeps_its_share_of_the_train_part_and_every_test_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainers.sweep import write_subset

    rows = [{"task_id": i, "split": "test" if i % 5 == 0 else "train", "text": f"t{i}"} for i in range(1, 101)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "all.parquet")
    kept = write_subset(tmp_path / "all.parquet", 25, 3, tmp_path / "quarter.parquet")
    quarter = pq.read_table(tmp_path / "quarter.parquet").to_pylist()
    assert kept == 20 == sum(r["split"] == "train" for r in quarter)
    assert sum(r["split"] == "test" for r in quarter) == 20
    assert write_subset(tmp_path / "all.parquet", 25, 3, tmp_path / "again.parquet") == 20
    assert pq.read_table(tmp_path / "again.parquet").to_pylist() == quarter  # a seed draws the same tasks


def test_the_default_space_is_a_space_the_parser_would_give():
    from trainers.sweep import default_space, describe_space, parse_space

    space = default_space(1e-3)
    assert describe_space(space) == "learning_rate=0.0001:0.01:log, dropout=0.1:0.5, batch_size=8|16|32"
    assert parse_space(describe_space(space)) == space


def test_a_search_whose_budget_ends_before_any_trial_finishes_fails_saying_so(service):
    project = toy_project(service)
    with service.client() as http:
        training = start(
            http,
            project,
            types=["ner"],
            embeddings="bilstm",
            params={**BILSTM, "epochs": 2000},
            tune={"trials": 3, "space": SPACE, "budget": "15s"},
        )
        done = wait(http, training["id"])
        assert done["status"] == "failed", done
        assert (
            done["jobs"][0]["reason"] == "no trial of the search finished within the time budget of 15 s; "
            "give it more time"
        )
        assert done["jobs"][0]["model_name"] is None
        log = http.get(f"/api/trainings/{done['id']}/logs", params={"follow": False}).text
        # every trial ended by the budget: stopped in its epochs or never started (how many of each depends on the
        # machine's speed), none finished
        assert log.count("stopped by the time budget") + log.count("not started (time budget)") == 3, log
        wait_for_free_cpus(http, 2)  # nothing of the stopped trials holds a CPU (Tune's own budget left some)
