"""One test per completion-selection rule of the product page, on tiny real DuckDB projects."""

import json

import pyarrow.parquet as pq
import pytest

from labtrain.errors import SelectionError
from storage.catalog import Catalog, Member
from storage.selection import SelectionParams
from tests.conftest import NER_CONFIG, choice, genai_completion, genai_task, import_tasks, span

TEXT = "Rita lives in Paris"


def chosen(catalog: Catalog, **params) -> dict[int, int]:
    answer = catalog.select("p", SelectionParams(**params))
    return {t["task_id"]: t["completion_id"] for t in answer["tasks"]}


def entity(label="PER", word="Rita"):
    return [span(TEXT, word, label)]


def accepted(at="2024-03-01T00:00:00"):
    return {"approved": True, "reviewer": "rev", "reviewed_at": at}


def test_only_tasks_with_a_given_tag_are_used(catalog):
    import_tasks(
        catalog,
        [
            genai_task(1, TEXT, [genai_completion(11, "a", entity())], tags=["batch1"]),
            genai_task(2, TEXT, [genai_completion(21, "a", entity())], tags=["batch2"]),
            genai_task(3, TEXT, [genai_completion(31, "a", entity())]),
        ],
    )
    assert chosen(catalog, tags=["batch1"], validation_split=0) == {1: 11}
    assert chosen(catalog, tags=["batch1", "batch2"], validation_split=0) == {1: 11, 2: 21}
    assert chosen(catalog, validation_split=0) == {1: 11, 2: 21, 3: 31}


def test_unsubmitted_completion_is_never_used(catalog):
    catalog.set_members("p", [Member("drafter", "annotator", 9)])
    import_tasks(
        catalog,
        [
            genai_task(
                1,
                TEXT,
                [genai_completion(11, "a", entity()), genai_completion(12, "drafter", entity(), submitted_at=None)],
            ),
            genai_task(2, TEXT, [genai_completion(21, "drafter", entity(), submitted_at=None)]),
        ],
    )
    assert chosen(catalog, validation_split=0) == {1: 11}


def test_rejected_completion_is_never_used(catalog):
    catalog.set_members("p", [Member("top", "annotator", 9), Member("low", "annotator", 1)])
    rejected = {"approved": False, "reviewer": "rev"}
    import_tasks(
        catalog,
        [
            genai_task(
                1, TEXT, [genai_completion(11, "top", entity(), review=rejected), genai_completion(12, "low", entity())]
            ),
            genai_task(2, TEXT, [genai_completion(21, "top", entity(), review=rejected)]),
        ],
    )
    assert chosen(catalog, validation_split=0) == {1: 12}


def test_reviewer_accepted_completion_wins_over_priority(catalog):
    catalog.set_members("p", [Member("top", "annotator", 9), Member("low", "annotator", 1)])
    import_tasks(
        catalog,
        [
            genai_task(
                1,
                TEXT,
                [genai_completion(11, "top", entity()), genai_completion(12, "low", entity(), review=accepted())],
            )
        ],
    )
    answer = catalog.select("p", SelectionParams(validation_split=0))
    assert answer["tasks"][0]["completion_id"] == 12
    assert answer["tasks"][0]["reason"] == "accepted by rev"


def test_latest_accepted_completion_wins_when_several_are_accepted(catalog):
    import_tasks(
        catalog,
        [
            genai_task(
                1,
                TEXT,
                [
                    genai_completion(11, "a", entity(), review=accepted("2024-03-05T00:00:00")),
                    genai_completion(12, "b", entity(), review=accepted("2024-03-01T00:00:00")),
                ],
            )
        ],
    )
    assert chosen(catalog, validation_split=0) == {1: 11}


def test_reviewed_only_leaves_out_tasks_without_an_accepted_completion(catalog):
    import_tasks(
        catalog,
        [
            genai_task(1, TEXT, [genai_completion(11, "a", entity(), review=accepted())]),
            genai_task(2, TEXT, [genai_completion(21, "a", entity())]),
        ],
    )
    assert chosen(catalog, reviewed_only=True, validation_split=0) == {1: 11}
    assert chosen(catalog, reviewed_only=False, validation_split=0) == {1: 11, 2: 21}


def test_completion_of_the_highest_priority_member_wins(catalog):
    catalog.set_members("p", [Member("alice", "annotator", 3), Member("bob", "annotator", 1)])
    import_tasks(
        catalog,
        [
            genai_task(
                1,
                TEXT,
                [
                    genai_completion(11, "bob", entity(), submitted_at="2024-05-01T00:00:00"),
                    genai_completion(12, "alice", entity(), submitted_at="2024-01-01T00:00:00"),
                ],
            )
        ],
    )
    assert chosen(catalog, validation_split=0) == {1: 12}
    catalog.set_members("p", [Member("bob", "annotator", 5)])
    assert chosen(catalog, validation_split=0) == {1: 11}


def test_author_who_is_not_a_member_has_the_lowest_priority(catalog):
    catalog.set_members("p", [Member("alice", "annotator", -5)])
    import_tasks(
        catalog,
        [
            genai_task(
                1,
                TEXT,
                [
                    genai_completion(11, "stranger", entity(), submitted_at="2024-05-01T00:00:00"),
                    genai_completion(12, "alice", entity(), submitted_at="2024-01-01T00:00:00"),
                ],
            )
        ],
    )
    assert chosen(catalog, validation_split=0) == {1: 12}


def test_priority_tie_goes_to_the_latest_submitted(catalog):
    catalog.set_members("p", [Member("alice", "annotator", 2), Member("bob", "annotator", 2)])
    import_tasks(
        catalog,
        [
            genai_task(
                1,
                TEXT,
                [
                    genai_completion(11, "alice", entity(), submitted_at="2024-01-01T00:00:00"),
                    genai_completion(12, "bob", entity(), submitted_at="2024-02-01T00:00:00"),
                    genai_completion(13, "alice", entity(), submitted_at="2023-12-01T00:00:00"),
                ],
            )
        ],
    )
    assert chosen(catalog, validation_split=0) == {1: 12}


def test_validation_split_is_seeded_and_exact(catalog):
    import_tasks(catalog, [genai_task(i, TEXT, [genai_completion(i * 10, "a", entity())]) for i in range(1, 51)])
    first = catalog.select("p", SelectionParams(validation_split=0.2, split_seed=7))
    again = catalog.select("p", SelectionParams(validation_split=0.2, split_seed=7))
    other = catalog.select("p", SelectionParams(validation_split=0.2, split_seed=8))
    test_ids = {t["task_id"] for t in first["tasks"] if t["split"] == "test"}
    assert (first["train"], first["test"]) == (40, 10)
    assert test_ids == {t["task_id"] for t in again["tasks"] if t["split"] == "test"}
    assert test_ids != {t["task_id"] for t in other["tasks"] if t["split"] == "test"}


def test_test_and_train_tags_decide_the_split(catalog):
    import_tasks(
        catalog,
        [
            genai_task(1, TEXT, [genai_completion(11, "a", entity())], tags=["test"]),
            genai_task(2, TEXT, [genai_completion(21, "a", entity())], tags=["train"]),
            genai_task(3, TEXT, [genai_completion(31, "a", entity())], tags=["other"]),
        ],
    )
    with_train_tag = catalog.select("p", SelectionParams(test_tag="test", train_tag="train"))
    assert {t["task_id"]: t["split"] for t in with_train_tag["tasks"]} == {1: "test", 2: "train"}
    assert any("1 tasks carry neither" in w for w in with_train_tag["warnings"])
    test_tag_only = catalog.select("p", SelectionParams(test_tag="test"))
    assert {t["task_id"]: t["split"] for t in test_tag_only["tasks"]} == {1: "test", 2: "train", 3: "train"}


def test_labels_under_forty_examples_are_warned_about(catalog):
    with_loc = [entity("PER") + entity("LOC", "Paris") for _ in range(30)]
    tasks = [
        genai_task(i, TEXT, [genai_completion(i, "a", (with_loc[i - 1] if i <= 30 else entity("PER")))])
        for i in range(1, 46)
    ]
    import_tasks(catalog, tasks)
    # a label the config listed when it was imported, and no longer does
    catalog.set_config("p", NER_CONFIG.replace('<Label value="LOC"/>', '<Label value="LOC"/><Label value="CITY"/>'))
    import_tasks(catalog, [genai_task(100, TEXT, [genai_completion(100, "a", [span(TEXT, "Rita", "CITY")])])])
    catalog.set_config("p", NER_CONFIG)
    answer = catalog.select("p", SelectionParams())
    assert answer["label_counts"]["ner"]["PER"]["train"] + answer["label_counts"]["ner"]["PER"]["test"] == 45
    warnings = "\n".join(answer["warnings"])
    assert "ner label 'LOC' has 30 examples" in warnings
    assert "'PER'" not in warnings
    assert "label 'CITY' (labels) occurs 1 times but no training type of the config uses it" in warnings


def test_snapshot_writes_one_parquet_file_per_training_type_with_only_its_results(catalog, tmp_path):
    result = entity("PER") + [span(TEXT, "Paris", "ABSENT", rid="abs")] + [choice("news")]
    import_tasks(catalog, [genai_task(1, TEXT, [genai_completion(11, "a", result)])])
    manifest = catalog.snapshot("p", SelectionParams(validation_split=0), out_dir=tmp_path / "snap")
    assert set(manifest["files"]) == {"ner", "assertion", "classification"}
    rows = {t: pq.read_table(f["path"]).to_pylist() for t, f in manifest["files"].items()}
    labels = {
        t: [r["value"].get("labels", r["value"].get("choices")) for r in json.loads(rs[0]["result"])]
        for t, rs in rows.items()
    }
    assert labels == {"ner": [["PER"]], "assertion": [["PER"], ["ABSENT"]], "classification": [["news"]]}
    assert rows["ner"][0]["text"] == TEXT and rows["ner"][0]["split"] == "train"
    assert json.loads((tmp_path / "snap" / "manifest.json").read_text())["files"]["ner"]["rows"] == 1


@pytest.mark.parametrize(
    "params, fault",
    [
        (SelectionParams(validation_split=1.5), "validation_split 1.5 must be a number in [0, 1)"),
        (SelectionParams(validation_split=0.2, test_tag="test"), "either a validation split or a test tag"),
        (SelectionParams(train_tag="train"), "a train tag needs a test tag"),
    ],
)
def test_bad_selection_parameters_are_rejected(catalog, params, fault):
    with pytest.raises(SelectionError, match=fault.replace("[", r"\[").replace(")", r"\)")):
        catalog.select("p", params)


def test_snapshot_of_a_type_the_config_does_not_offer_is_rejected(catalog, tmp_path):
    with pytest.raises(SelectionError, match="'visual_ner' is not offered"):
        catalog.snapshot("p", SelectionParams(), types=["visual_ner"], out_dir=tmp_path)
