"""The training history in the catalog (no Ray): trainings and jobs, model names under the
versioning rule, deploy into the labeling config, licenses and the resource ledger."""

import json

import pytest

from cluster.licenses import KNOWN_SCOPES, LicenseError, LicensePool, parse_licenses
from cluster.resources import Ledger, bundle_for
from cluster.scheduler import LicenseSlots
from labtrain.errors import Conflict, SelectionError, ValidationError
from storage.history import training_status
from storage.labeling_config import deploy_model, parse_labeling_config
from tests.trainer_data import CONFIG, toy_tasks

REQUEST = {
    "types": ["ner"],
    "embeddings": {"ner": "bilstm"},
    "params": {"epochs": 1},
    "selection": {},
    "deploy": False,
    "gpu": False,
}


@pytest.fixture
def project(catalog):
    catalog.create_project("toy", CONFIG, "en", "owner1")
    catalog.import_file("toy", json.dumps(toy_tasks(30)).encode())
    return catalog


def succeed(catalog, training: dict, f1: float = 0.9) -> list[dict]:
    done = []
    for job in training["jobs"]:
        catalog.update_job(job["job_id"], status="running")
        done.append(catalog.complete_job(job["job_id"], {"micro": {"f1": f1}}))
    return done


def test_a_training_snapshots_its_data_and_queues_one_job_per_type(project):
    training = project.create_training(
        "toy",
        {**REQUEST, "types": ["ner", "classification"], "embeddings": {"ner": "bilstm", "classification": "minilm"}},
        "owner1",
    )
    assert training["status"] == "queued"
    assert [j["type"] for j in training["jobs"]] == ["ner", "classification"]
    assert [j["scope"] for j in training["jobs"]] == ["training:ner", "training:classification"]
    assert training["data"]["rows"] == {"ner": 30, "classification": 30}
    spec = project.job_spec(training["jobs"][1]["job_id"])
    assert spec["labels"] == ["travel", "health"] and spec["from_name"] == "topic"
    assert spec["snapshot"].endswith("classification.parquet")


def test_a_type_the_config_does_not_offer_is_refused_and_nothing_is_recorded(project):
    with pytest.raises(ValidationError, match="visual_ner"):
        project.create_training("toy", {**REQUEST, "types": ["visual_ner"]}, "owner1")
    with pytest.raises(SelectionError, match="no task qualifies for ner"):
        project.create_training("toy", {**REQUEST, "selection": {"tags": ["nothing-has-this"]}}, "owner1")
    assert project.trainings("toy") == []
    assert not list((project.home / "trainings").glob("*/snapshot"))


def test_the_catalog_keeps_a_request_as_its_training_plan_and_refuses_a_malformed_one(project):
    from labtrain.training_plan import TrainingPlan
    from trainers.spec import TrainSpec

    training = project.create_training("toy", {**REQUEST, "params": {"epochs": 1, "warmup": 0.2}}, "owner1")
    (stored,) = project.con.execute("SELECT request FROM trainings WHERE training_id = ?", [training["id"]]).fetchone()
    plan = TrainingPlan.model_validate_json(stored)
    assert (plan.types, plan.embeddings, plan.runner, plan.max_retries) == (["ner"], {"ner": "bilstm"}, "ray_train", 1)
    assert training["request"] == plan.model_dump()
    spec = TrainSpec.from_dict({**project.job_spec(training["jobs"][0]["job_id"]), "output_dir": "/tmp/x"})
    assert (spec.params.epochs, spec.params.warmup, spec.given) == (1, 0.2, ("epochs", "warmup"))
    for wrong, field in (
        ({**REQUEST, "types": []}, "types"),
        ({**REQUEST, "runner": "cron"}, "runner"),
        ({**REQUEST, "colour": "red"}, "colour"),
        ({**REQUEST, "max_retries": -1}, "max_retries"),
    ):
        with pytest.raises(ValidationError, match=f"training request: {field}: "):
            project.create_training("toy", wrong, "owner1")
    assert len(project.trainings("toy")) == 1


def test_versioning_off_overwrites_the_model_and_on_counts_versions(project):
    first = succeed(project, project.create_training("toy", REQUEST, "owner1"), 0.5)[0]
    second = succeed(project, project.create_training("toy", REQUEST, "owner1"), 0.6)[0]
    assert first["model_name"] == second["model_name"] == "ner_toy"
    assert project.model("ner_toy")["metrics"]["micro"]["f1"] == 0.6
    project.set_training_settings("toy", versioning=True)
    names = [succeed(project, project.create_training("toy", REQUEST, "owner1"))[0]["model_name"] for _ in range(2)]
    assert names == ["ner_toy_v1", "ner_toy_v2"]
    project.set_training_settings("toy", versioning=False)
    project.set_training_settings("toy", versioning=True)
    assert succeed(project, project.create_training("toy", REQUEST, "owner1"))[0]["model_name"] == "ner_toy_v3"
    family = project.model("ner_toy_v2", with_versions=True)["versions"]
    assert [m["name"] for m in family] == ["ner_toy", "ner_toy_v1", "ner_toy_v2", "ner_toy_v3"]


def test_versioning_cannot_change_while_a_training_is_queued(project):
    training = project.create_training("toy", REQUEST, "owner1")
    with pytest.raises(Conflict, match="queued or running"):
        project.set_training_settings("toy", versioning=True)
    project.end_job(training["jobs"][0]["job_id"], "cancelled", "test")
    assert project.set_training_settings("toy", versioning=True)["versioning"] is True


def test_deploy_names_the_new_model_in_the_config_only_when_asked(project):
    succeed(project, project.create_training("toy", REQUEST, "owner1"))
    assert "ner_toy" not in project.config("toy").xml
    succeed(project, project.create_training("toy", {**REQUEST, "deploy": True}, "owner1"))
    config = project.config("toy")
    assert {lab.model for g in config.text_groups for lab in g.labels if not lab.assertion} == {"ner_toy"}
    assert {lab.model for g in config.text_groups for lab in g.labels if lab.assertion} == {None}
    assert project.model("ner_toy")["deployed"] is True


def test_deploy_rewrites_only_what_the_type_predicts():
    xml = deploy_model(CONFIG, "classification", "classification_toy_topic")
    config = parse_labeling_config(xml)
    assert config.classification_group.model == "classification_toy_topic"
    assert all(lab.model is None for g in config.label_groups for lab in g.labels)
    assertion = parse_labeling_config(deploy_model(CONFIG, "assertion", "assertion_toy"))
    assert {lab.model for g in assertion.text_groups for lab in g.labels if lab.assertion} == {"assertion_toy"}


def test_ended_jobs_keep_their_end_and_interrupted_ones_fail(project):
    training = project.create_training("toy", REQUEST, "owner1")
    job_id = training["jobs"][0]["job_id"]
    project.update_job(job_id, status="running")
    assert project.fail_interrupted_jobs("interrupted: test") == [job_id]
    project.update_job(job_id, progress=50.0)  # a late event changes nothing
    job = project.job(job_id)
    assert (job["status"], job["reason"], job["progress"]) == ("failed", "interrupted: test", 0.0)
    assert project.training(training["id"])["status"] == "failed"


@pytest.mark.parametrize(
    "states, expected",
    [
        (["queued", "queued"], "queued"),
        (["running", "queued"], "running"),
        (["succeeded", "queued"], "running"),
        (["succeeded", "failed"], "failed"),
        (["cancelled", "succeeded"], "cancelled"),
        (["succeeded"], "succeeded"),
    ],
)
def test_training_status_from_its_jobs(states, expected):
    assert training_status([{"status": s} for s in states]) == expected


def test_license_file_errors_name_the_license_and_field():
    with pytest.raises(LicenseError, match="license #0 .*unknown scope"):
        parse_licenses('{"licenses": [{"id": "a", "scopes": ["training:everything"]}]}', "f")
    with pytest.raises(LicenseError, match="license #1 .*'max_jobs'"):
        parse_licenses(
            "licenses:\n- {id: a, scopes: [training:ner]}\n- {id: b, scopes: [ocr:training], max_jobs: 0}\n", "f"
        )
    with pytest.raises(LicenseError, match="used twice"):
        parse_licenses("licenses:\n- {id: a, scopes: [training:ner]}\n- {id: a, scopes: [training:ner]}\n", "f")


def test_the_embedded_default_grants_every_scope_text_and_ocr_one_slot_per_cpu(tmp_path):
    pool = LicensePool(tmp_path, cpu_bundles=3)
    assert {s.scopes for s in pool.slots()} == {(scope,) for scope in KNOWN_SCOPES}
    assert ("ocr:training",) in {s.scopes for s in pool.slots()} and {s.free for s in pool.slots()} == {3}


def test_a_license_binds_one_job_per_slot_until_released(tmp_path):
    (tmp_path / "licenses.yaml").write_text("licenses:\n- {id: ocr, scopes: [ocr:training], max_jobs: 1}\n")
    pool = LicensePool(tmp_path, cpu_bundles=2)
    assert pool.slots() == [LicenseSlots("ocr", ("ocr:training",), 1)]  # the file replaces the embedded default
    pool.bind("ocr", 1)
    assert pool.slots()[0].free == 0
    pool.release(1)
    assert pool.slots()[0].free == 1


def test_ledger_counts_what_running_jobs_hold():
    ledger = Ledger(totals={"CPU": 2.0, "GPU": 0.0})
    ledger.take(1, bundle_for(False))
    ledger.take(2, bundle_for(False))
    assert ledger.free() == {"CPU": 0.0, "GPU": 0.0}
    ledger.give_back(1)
    assert ledger.free() == {"CPU": 1.0, "GPU": 0.0}
