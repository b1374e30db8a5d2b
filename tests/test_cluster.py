"""labtrain on a real multi-node Ray cluster on this machine: a head without CPUs and Ray's own fake
multi-node autoscaler (node types of 1 CPU and of 1 CPU + 1 GPU, from zero workers), then worker
nodes each in a mount namespace of its own with a tmpfs over the service's home (they share no
disk with the head), and a real S3 server (versitygw) as the artifact store. The tests run in this
order on one cluster: scale from zero and back, a job waiting for a license adds no node, every
kind of training on workers that cannot see the home, a lost node with and without retries."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HANG_S, Service, wait_until
from tests.ray_cluster import RayCluster, S3Server, WorkerNode, free_port, unshare_available, versitygw
from tests.test_training_service import BILSTM, DEFAULTS, toy_project, wait

NODE_TYPES = {
    "cpu_worker": {"resources": {"CPU": 1}, "max_workers": 2},
    "gpu_worker": {"resources": {"CPU": 1, "GPU": 1}, "max_workers": 1},
}
IDLE_TIMEOUT_S = 10
WORKER_CPUS = 2  # two such nodes hold the four jobs of the test below at once: no job waits for a node


class ClusterService(Service):
    def __init__(self, home, url, token, cluster, s3):
        super().__init__(home, url, token)
        self.cluster, self.s3 = cluster, s3

    def nodes(self) -> list[dict]:
        with self.client() as http:
            return [n for n in http.get("/api/cluster").json()["nodes"] if n["alive"]]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`labtrain serve --address` on the head of an autoscaling cluster that starts with no worker,
    with an S3 artifact store when versitygw is built (`.ci/setup`)."""
    folder = tmp_path_factory.mktemp("cluster")
    cluster, s3 = RayCluster(folder), None
    binary = versitygw()
    if binary:
        s3 = S3Server(folder / "s3").start(binary)
        cluster.extra_env.update(s3.env())
    home = folder / "home"
    try:
        cluster.start_head({"node_types": NODE_TYPES, "idle_timeout_s": IDLE_TIMEOUT_S})
        started = subprocess.run(
            [
                sys.executable,
                "-m",
                "ray_app.cli",
                "serve",
                "--detach",
                "--json",
                "--home",
                str(home),
                "--port",
                str(free_port()),
                "--address",
                cluster.address,
                *(["--artifacts", s3.uri("artifacts")] if s3 else []),
            ],
            capture_output=True,
            text=True,
            env=cluster.env(),
            timeout=HANG_S,
        )
        assert started.returncode == 0, started.stderr + started.stdout
        info = json.loads(started.stdout)
        yield ClusterService(home, info["url"], info["admin_token"], cluster, s3)
    finally:
        subprocess.run(
            [sys.executable, "-m", "ray_app.cli", "stop", "--home", str(home)], env=cluster.env(), timeout=HANG_S
        )
        cluster.stop()
        if s3:
            s3.stop()


def ray_actors(cluster: RayCluster) -> list[dict]:
    """Ray's own list of the cluster's alive actors: class, name and node."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                f"import json, ray; from ray.util.state import list_actors; ray.init(address={cluster.address!r}, log_to_driver=False); "
                "print(json.dumps([{'class': a.class_name, 'name': a.name, 'node': a.node_id} "
                f"for a in list_actors(address={cluster.address!r}, filters=[('state', '=', 'ALIVE')], limit=1000)]))"
            ),
        ],
        capture_output=True,
        text=True,
        env=cluster.env(),
        timeout=HANG_S,
    )
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout.strip().splitlines()[-1])


def test_the_api_the_proxy_the_catalog_and_the_job_manager_stay_on_the_head(service):
    (head,) = service.nodes()
    assert head["head"] and head["cpus"] == 0
    services = [
        a
        for a in ray_actors(service.cluster)
        if a["class"] in ("StorageActor", "JobManager", "ProxyActor", "ServeController")
        or a["class"].startswith("ServeReplica:labtrain")
    ]
    assert {a["class"].split(":")[0] for a in services} >= {
        "StorageActor",
        "JobManager",
        "ProxyActor",
        "ServeController",
        "ServeReplica",
    }
    assert {a["node"] for a in services} == {head["node_id"]}
    with service.client() as http:
        autoscaler = http.get("/api/cluster").json()["autoscaler"]
    assert autoscaler["config"].endswith("autoscaling.yaml")
    assert {t["name"]: t["resources"] for t in autoscaler["node_types"]} == {
        "cpu_worker": {"CPU": 1.0},
        "gpu_worker": {"CPU": 1.0, "GPU": 1.0},
    }


def test_a_cpu_and_a_gpu_training_each_make_the_autoscaler_add_a_node_and_idle_nodes_go(service):
    project = toy_project(service)
    seen = {}
    with service.client() as http:
        short = {**BILSTM, "epochs": 2}
        cpu = http.post(
            f"/api/projects/{project}/trainings", json={"types": ["ner"], "embeddings": "bilstm", "params": short}
        ).json()
        gpu = http.post(
            f"/api/projects/{project}/trainings",
            json={"types": ["ner"], "embeddings": "bilstm", "params": short, "gpu": True},
        ).json()
        assert cpu["jobs"][0]["reason"] == "waiting for 1 CPU (the autoscaler is adding a node)", cpu
        assert gpu["jobs"][0]["reason"] == "waiting for 1 CPU + 1 GPU (the autoscaler is adding a node)", gpu

        def both_ended():
            for node in service.nodes():
                seen[node["node_id"]] = (node["cpus"], node["gpus"])
            trainings = [http.get(f"/api/trainings/{t['id']}").json() for t in (cpu, gpu)]
            return trainings if all(t["status"] in ("succeeded", "failed") for t in trainings) else None

        cpu, gpu = wait_until(both_ended, "both trainings ended")
        assert cpu["status"] == gpu["status"] == "succeeded", (cpu, gpu)
        assert {(1.0, 0.0), (1.0, 1.0)} <= set(seen.values())  # a node of each type was added
        log = http.get(f"/api/trainings/{gpu['id']}/logs", params={"follow": False}).text
        assert "device: cuda was asked for but no GPU is present; training on cpu" in log  # a fake GPU node
        # idle workers are retired after the autoscaler's idle timeout, and no demand is left shown
        wait_until(lambda: len(service.nodes()) == 1, "the idle worker nodes were retired")
        assert http.get("/api/cluster").json()["autoscaler"]["demand"] == []


def test_a_job_waiting_for_a_license_asks_the_autoscaler_for_nothing(service):
    project = toy_project(service)
    license_file = service.home / "licenses.yaml"
    license_file.write_text("licenses:\n- {id: ner-only, scopes: [training:ner], max_jobs: 1}\n")
    try:
        with service.client() as http:
            training = http.post(
                f"/api/projects/{project}/trainings", json={"types": ["classification"], "params": DEFAULTS}
            ).json()
            assert training["jobs"][0]["reason"] == "waiting for a license with scope training:classification"
            asked = time.time()
            status = wait_until(
                lambda: _autoscaler_status_after(service.cluster, asked),
                "the autoscaler looked at the cluster after the request",
            )
            assert status["demand"] == [] and status["launches"] == {}, status
            assert http.get("/api/cluster").json()["autoscaler"]["demand"] == []
            assert len(service.nodes()) == 1
            assert http.post(f"/api/trainings/{training['id']}/cancel").status_code == 200
    finally:
        license_file.unlink()


def _autoscaler_status_after(cluster: RayCluster, since: float) -> dict | None:
    """What Ray's autoscaler last saw (its status in the GCS), once it is newer than `since`."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import json, ray; from ray.experimental.internal_kv import _internal_kv_get; "
                f"ray.init(address={cluster.address!r}, log_to_driver=False); print(_internal_kv_get('__autoscaling_status').decode())"
            ),
        ],
        capture_output=True,
        text=True,
        env=cluster.env(),
        timeout=HANG_S,
    )
    status = json.loads(probe.stdout.strip().splitlines()[-1])
    if status["time"] < since + 2:  # a whole update after the request was recorded
        return None
    load, report = status["load_metrics_report"], status.get("autoscaler_report") or {}
    demand = [
        d
        for d in (load.get("resource_demand") or [])
        + (load.get("request_demand") or [])
        + (load.get("pg_demand") or [])
    ]
    return {"demand": demand, "launches": report.get("pending_launches") or {}}


# --- worker nodes that share no disk with the head ------------------------------------------------


@pytest.fixture(scope="module")
def workers(service) -> list[WorkerNode]:
    reason = unshare_available()
    if reason:
        pytest.skip(reason)
    wait_until(lambda: len(service.nodes()) == 1, "the autoscaler's nodes were retired")
    hidden = [service.home]  # a fresh tmpfs over the home: these nodes cannot read or write it
    return [service.cluster.add_worker(WORKER_CPUS, hidden, ip) for ip in ("127.0.0.2", "127.0.0.3")]


def test_every_kind_of_training_runs_on_workers_that_do_not_see_the_home(service, workers, tmp_path):
    from tests.test_custom_scripts import EXAMPLE
    from tests.test_visual_ner import image_project

    project = toy_project(service)
    images = image_project(service, tmp_path, n=12)
    worker_ids = {w.node_id() for w in workers}
    with service.client() as http:
        assert (
            http.post(
                f"/api/projects/{project}/scripts", json={"name": "tagger", "source": EXAMPLE.read_text()}
            ).status_code
            == 201
        )
        # one epoch each: what is tested is where they train and how their files travel, not how well
        one = {**DEFAULTS, "epochs": 1}
        # each way in and out once: a PyTorch model folder (MiniLM; BiLSTM and the other types write the
        # same), a Spark NLP pipeline, a custom script sent to the node, page images and their OCR words
        requests = [
            (project, {"types": ["ner"], "params": one}),
            (project, {"types": ["classification"], "backend": "sparknlp", "params": {"epochs": 1}}),
            (project, {"types": ["ner"], "script": "tagger", "params": {"epochs": 1}}),
            (images, {"types": ["visual_ner"], "params": {**one, "eval_size": 0.2}}),
        ]
        started = []
        for name, body in requests:  # four jobs, four CPUs on the workers: the autoscaler is asked for nothing
            answer = http.post(f"/api/projects/{name}/trainings", json=body)
            assert answer.status_code == 201, answer.text
            started.append(answer.json())
        done = [wait(http, training["id"]) for training in started]
        assert [t["status"] for t in done] == ["succeeded"] * len(requests), done
    with service.client() as http:
        for training in done:
            log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
            # the trainer read its snapshot from a scratch folder of the worker, not from the home
            assert re.search(r"snapshot: /tmp/labtrain-job-\d+-\w+/trainings/", log), log
            assert str(service.home) not in log.split("snapshot: ")[1].splitlines()[0]
            archive = http.get(f"/api/trainings/{training['id']}/logs/download")
            assert archive.status_code == 200 and archive.content[:2] == b"PK"
            for job in training["jobs"]:
                folder = Path(job["output_dir"])  # the outputs came back into the home
                assert (folder / "model").is_dir() and (folder / "metrics.json").exists(), job
                assert (folder / "training.log").exists()
        assert len(service.nodes()) == 3  # the head and the two workers: no node was added
        predicted = http.post(f"/api/models/ner_{project}/predict", json={"texts": ["Greta lives in Oslo ."]})
        assert predicted.status_code == 200 and "results" in predicted.json(), predicted.text
        page = base64.b64encode((tmp_path / images / "form_4_0.png").read_bytes()).decode()
        regions = http.post(
            f"/api/models/visual_ner_{images}/predict", json={"images": ["data:image/png;base64," + page]}
        )
        assert regions.status_code == 200 and regions.json()["results"][0], regions.text
        if service.s3:  # the models are kept in the store too, and predict loaded them from there
            model = http.get(f"/api/models/ner_{project}").json()
            assert model["artifact_uri"].startswith("s3://labtrain/artifacts/trainings/")
            assert service.s3.secret_key not in json.dumps(model)
    assert worker_ids  # (every job ran on one of them: the head has no CPU)


def _node_of(service, training_id: int, workers: list[WorkerNode]) -> WorkerNode:
    """The worker node that runs the training's job."""

    def running_on():
        with service.client() as http:
            servers = http.get("/api/cluster").json()["training_servers"]
        mine = [s for s in servers if s["training_id"] == training_id and s["worker_node"]]
        return mine[0]["worker_node"] if mine else None

    node_id = wait_until(running_on, f"training {training_id} runs on a worker")
    return next(w for w in workers if w.node_id() == node_id)


def test_a_job_whose_node_is_lost_resumes_on_another_node_from_its_last_epoch(service, workers):
    if service.s3 is None:
        pytest.skip("no S3 server (versitygw, built by .ci/setup): checkpoints need an artifact store")
    project = toy_project(service)
    with service.client() as http:
        training = http.post(
            f"/api/projects/{project}/trainings", json={"types": ["ner"], "params": {**DEFAULTS, "epochs": 4}}
        ).json()
        wait(http, training["id"], until=lambda t: (t["jobs"][0]["epoch"] or 0) >= 2)
        lost = _node_of(service, training["id"], workers)
        lost.kill()
        workers.remove(lost)
        done = wait(http, training["id"])
        assert done["status"] == "succeeded", done
        log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
        found = re.search(
            r"node (\w+) lost at epoch (\d) of 4; resumed from the epoch-(\d) checkpoint on node (\w+)", log
        )
        assert found, log
        lost_at, resumed_from = int(found.group(2)), int(found.group(3))
        # Ray Train registers a checkpoint when its controller next hears from the worker: the last
        # one or the one before it
        assert 1 <= resumed_from <= lost_at and lost_at >= 2 and found.group(1) != found.group(4)
        # the second worker trained the epochs after its checkpoint only
        second = log.split(found.group(0))[1]
        epochs = [int(e) for e in re.findall(r"^\s+(\d)\s+\d+\.\d{4}\s", second, re.M)]
        assert epochs == list(range(resumed_from + 1, 5)), second
        assert done["jobs"][0]["metrics"]["micro"]["f1"] > 0.9


def test_a_job_whose_node_is_lost_with_no_retry_left_fails_naming_the_node(service, workers):
    project = toy_project(service)
    with service.client() as http:
        training = http.post(
            f"/api/projects/{project}/trainings",
            json={"types": ["ner"], "embeddings": "bilstm", "max_retries": 0, "params": {**BILSTM, "epochs": 400}},
        ).json()
        wait(http, training["id"], until=lambda t: t["jobs"][0]["progress"] > 1)
        lost = _node_of(service, training["id"], workers)
        lost_id = lost.node_id()
        lost.kill()
        done = wait(http, training["id"])
        assert done["status"] == "failed", done
        reason = done["jobs"][0]["reason"]
        assert reason.startswith(f"node {lost_id[:12]} (") and "no retry was left (max_retries 0)" in reason, reason
        with service.client() as again:  # the catalog is consistent and nothing stays held
            cluster = again.get("/api/cluster").json()
            assert cluster["training_servers"] == [] and cluster["queue"] == []
            assert all(lic["in_use"] == 0 for lic in cluster["licenses"])
