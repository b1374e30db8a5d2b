"""The Spark NLP backend for real: a local SparkSession with Spark NLP 3.4.4's JARs trains tiny
NerDL, ClassifierDL and MultiClassifierDL models on toy projects; the pipeline folder loads back
with `PipelineModel.load` and annotates new text; through the service a sparknlp training, submitted
from the CLI as a Ray job, runs as a process of its own and is scored like a PyTorch one."""

from __future__ import annotations

import json

import pytest

from tests.test_training_service import toy_project
from tests.trainer_data import CONFIG, MULTI_CONFIG, build_snapshot, multi_tasks, toy_tasks
from trainers.predict import load
from trainers.run import run
from trainers.spark import unavailable_reason
from trainers.spec import SpecError, TrainSpec

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"Spark NLP cannot run here: {REASON}")
NERDL = {"epochs": 8, "learning_rate": 3e-3, "batch_size": 8}
CLASSIFIER = {"epochs": 12, "batch_size": 8, "learning_rate": 5e-3}  # fast on a separable toy set


@pytest.fixture(scope="module", autouse=True)
def _spark_ends_with_the_module():
    """The session this module's tests open in the test process ends with the module: its JVM
    (Spark NLP's TensorFlow beside a 4g heap: 7 GB resident) would stay until the worker exits."""
    yield
    from trainers.spark import stop_session

    stop_session()


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict:
    return {
        **build_snapshot(tmp_path_factory.mktemp("toy"), CONFIG, toy_tasks(80)),
        "multi": build_snapshot(tmp_path_factory.mktemp("multi"), MULTI_CONFIG, multi_tasks(90))["classification"],
    }


def test_nerdl_learns_the_toy_entities_and_its_pipeline_folder_annotates_new_text(snapshots, tmp_path):
    out = tmp_path / "ner"
    result = run(
        {
            "type": "ner",
            "snapshot": snapshots["ner"],
            "output_dir": str(out),
            "labels": ["PER", "LOC"],
            "backend": "sparknlp",
            "params": NERDL,
        }
    )
    assert result.metrics["entity"]["micro"]["f1"] > 0.9
    info = json.loads((out / "labtrain.json").read_text())
    assert info["backend"] == "sparknlp" and info["embeddings"] == "minilm_words"
    assert info["versions"]["spark-nlp"] == "3.4.4"
    log = (out / "training.log").read_text()
    assert "sparknlp | Name of the selected graph: ner-dl/blstm_10_300_128_120.pb" in log
    assert "sparknlp | Epoch 8/8" in log and "TEST ENTITY" in log
    assert list((out / "sparknlp_logs").glob("NerDLApproach_*.log"))
    assert len(result.metrics["epochs"]) == 8

    from pyspark.ml import PipelineModel

    from trainers.spark import session

    spark = session()
    pipeline = PipelineModel.load(str(out / "model"))
    rows = pipeline.transform(spark.createDataFrame([("Hugo lives in Dublin and travels often .",)], ["text"]))
    entities = rows.select("entities").collect()[0]["entities"]
    assert {(e["result"], e["metadata"]["entity"]) for e in entities} == {("Hugo", "PER"), ("Dublin", "LOC")}

    predicted = load(out).predict(["Ines has no fever in Vienna ."])[0]
    assert {(r["value"]["text"], r["value"]["labels"][0]) for r in predicted} == {("Ines", "PER"), ("Vienna", "LOC")}
    assert predicted[0]["from_name"] == "label" and predicted[0]["type"] == "labels"


def test_classifierdl_and_multiclassifierdl_learn_their_choices(snapshots, tmp_path):
    single = run(
        {
            "type": "classification",
            "snapshot": snapshots["classification"],
            "output_dir": str(tmp_path / "s"),
            "labels": ["travel", "health"],
            "from_name": "topic",
            "backend": "sparknlp",
            "params": CLASSIFIER,
        }
    )
    assert single.metrics["micro"]["f1"] > 0.9
    assert single.metrics["confusion_matrix"]["labels"] == ["travel", "health"]
    assert (tmp_path / "s" / "confusion_matrix.png").exists()
    assert "ClassifierDLApproach" in (tmp_path / "s" / "training.log").read_text()
    assert load(tmp_path / "s").predict(["Jonas lives in Rome and travels often ."])[0][0]["value"] == {
        "choices": ["travel"]
    }

    multi = run(
        {
            "type": "classification",
            "snapshot": snapshots["multi"],
            "output_dir": str(tmp_path / "m"),
            "labels": ["respiratory", "skin"],
            "from_name": "symptoms",
            "multiple": True,
            "backend": "sparknlp",
            "params": {**CLASSIFIER, "epochs": 18},
        }
    )
    assert multi.metrics["micro"]["f1"] > 0.9
    assert "MultiClassifierDLApproach" in (tmp_path / "m" / "training.log").read_text()
    both = load(tmp_path / "m").predict(["Carla reports a cough and a rash since May ."])[0][0]["value"]["choices"]
    assert sorted(both) == ["respiratory", "skin"]


def test_nerdl_and_classifierdl_train_on_tiny_data_with_their_defaults(tmp_path):
    from tests.test_tiny_data import LABELS, WITH_UNUSED

    one = build_snapshot(tmp_path / "one", WITH_UNUSED, toy_tasks(1), split=0.0)  # one task, no test part
    ner = run(
        {
            "type": "ner",
            "snapshot": one["ner"],
            "output_dir": str(tmp_path / "n"),
            "labels": LABELS["ner"],
            "backend": "sparknlp",
        }
    )
    assert "entity" not in ner.metrics and (tmp_path / "n" / "model").is_dir()
    assert all(r["value"]["labels"][0] in ("PER", "LOC") for r in load(tmp_path / "n").predict(["Anna has fever ."])[0])

    two = build_snapshot(tmp_path / "two", WITH_UNUSED, toy_tasks(2), split=0.0)  # one example per class
    classes = LABELS["classification"]
    run(
        {
            "type": "classification",
            "snapshot": two["classification"],
            "output_dir": str(tmp_path / "c"),
            "labels": classes,
            "from_name": "topic",
            "backend": "sparknlp",
        }
    )
    [[result]] = load(tmp_path / "c").predict(["Jonas lives in Rome and travels often ."])
    assert result["value"]["choices"][0] in ("travel", "health")


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"type": "assertion", "labels": ["Present"]}, "backend 'sparknlp' cannot train 'assertion'"),
        ({"type": "relation", "labels": ["lives_in"]}, "licensed in Spark NLP"),
        (
            {"type": "ner", "labels": ["PER"], "embeddings": "bilstm"},
            "embeddings 'bilstm' cannot train 'ner' with sparknlp",
        ),
        ({"type": "ner", "labels": ["PER"], "backend": "mxnet"}, "backend 'mxnet' is not one of pytorch, sparknlp"),
    ],
)
def test_spark_specs_that_cannot_train_are_refused_naming_the_field(snapshots, tmp_path, fields, words):
    with pytest.raises(SpecError, match=words):
        TrainSpec.from_dict(
            {"snapshot": snapshots["ner"], "output_dir": str(tmp_path), "backend": "sparknlp", **fields}
        )


def test_service_trains_nerdl_as_its_own_process_and_serves_its_model(service):
    project = toy_project(service, 80)
    with service.client() as http:
        options = http.get(f"/api/projects/{project}/training/options").json()
        backends = {t["type"]: {b["name"]: b for b in t["backends"]} for t in options["types"]}
        assert backends["ner"]["sparknlp"]["available"] and not backends["assertion"]["sparknlp"]["available"]
        assert backends["assertion"]["sparknlp"]["note"] == "licensed in Spark NLP: PyTorch only"
        assert [e["name"] for e in backends["classification"]["sparknlp"]["embeddings"]] == ["minilm_words"]
        for body, words in [
            ({"types": ["assertion"]}, "cannot use backend 'sparknlp'"),
            ({"types": ["ner"], "gpu": True}, "the sparknlp backend trains on CPU"),
        ]:
            answer = http.post(f"/api/projects/{project}/trainings", json={**body, "backend": "sparknlp"})
            assert answer.status_code == 422 and words in answer.json()["detail"], answer.text

    # submitted from the CLI as a Ray job, the way a cluster's users train
    trained = service.cli(
        "train",
        project,
        "--type",
        "ner",
        "--backend",
        "sparknlp",
        "--epochs",
        str(NERDL["epochs"]),
        "--learning-rate",
        str(NERDL["learning_rate"]),
        "--batch-size",
        str(NERDL["batch_size"]),
        "--submit",
        "--follow",
        token=service.token,
    )
    assert trained.returncode == 0, trained.stderr
    assert "as Ray job labtrain-job-" in trained.stderr
    training = json.loads(service.cli("history", project, "--json", token=service.token).stdout)[0]
    assert training["source"] == "ray job" and training["status"] == "succeeded", training
    job = training["jobs"][0]
    assert job["ray_job_id"].startswith("labtrain-job-") and training["request"]["params"] == NERDL, training
    assert job["embeddings"] == "minilm_words" and job["metrics"]["micro"]["f1"] > 0.9
    with service.client() as http:
        log = http.get(f"/api/trainings/{training['id']}/logs").text
        assert "sparknlp | Epoch 8/8" in log and "TEST ENTITY" in log
        predicted = http.post(
            f"/api/models/{job['model_name']}/predict", json={"texts": ["Greta lives in Oslo and travels often ."]}
        ).json()
        assert {(r["value"]["text"], r["value"]["labels"][0]) for r in predicted["results"][0]} == {
            ("Greta", "PER"),
            ("Oslo", "LOC"),
        }
