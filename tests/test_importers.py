import base64
import json
import re
from pathlib import Path

import pytest

from labtrain.errors import ImportError_
from storage.catalog import Catalog
from storage.importers import parse_export
from tests.conftest import genai_completion, genai_task, import_tasks, shared_file, span

TEXT = "Rita lives in Paris"
CLINICAL = Path(__file__).parent / "fixtures" / "clinical_config.xml"
STREET_NINJA_CONFIG = (
    '<View><Labels name="label" toName="text"><Label value="RESOURCE"/><Label value="ADDRESS"/>'
    '</Labels><Text name="text" value="$text"/></View>'
)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def ls_task(tid, annotations, **extra):
    return {"id": tid, "data": {"text": TEXT}, "annotations": annotations, **extra}


def ls_annotation(aid, user, result, **extra):
    return {
        "id": aid,
        "completed_by": user,
        "result": result,
        "was_cancelled": False,
        "created_at": "2025-01-25T05:10:37.253165Z",
        "updated_at": "2025-01-25T05:10:37.253165Z",
        **extra,
    }


def test_genai_lab_export_reads_author_submission_and_review():
    tasks = [
        genai_task(
            1,
            TEXT,
            [
                genai_completion(
                    11,
                    "alice",
                    [span(TEXT, "Rita", "PER")],
                    review={"approved": True, "reviewer": "rev", "reviewed_at": "2024-02-01T00:00:00Z"},
                ),
                genai_completion(12, "bob", [], submitted_at=None),
            ],
        )
    ]
    parsed = parse_export(json.dumps(tasks))
    assert parsed.formats == {"genai_lab"}
    first, second = parsed.completions
    assert (first["author"], first["submitted"], first["review"], first["reviewer"]) == (
        "alice",
        True,
        "accepted",
        "rev",
    )
    assert second["submitted"] is False
    assert parsed.labels == [
        {"task_id": 1, "completion_id": 11, "from_name": "label", "result_type": "labels", "label": "PER"}
    ]


def test_label_studio_export_reads_completed_by_cancelled_and_reviews():
    tasks = [
        ls_task(
            5,
            [
                ls_annotation(
                    1,
                    {"id": 3, "email": "ann@example.org"},
                    [span(TEXT, "Paris", "LOC")],
                    reviews=[
                        {"accepted": False, "created_at": "2025-01-26T00:00:00Z"},
                        {"accepted": True, "created_at": "2025-01-27T00:00:00Z", "created_by": 9},
                    ],
                ),
                ls_annotation(2, 4, [], was_cancelled=True),
            ],
            meta={"tags": ["train"]},
        )
    ]
    parsed = parse_export(json.dumps(tasks))
    assert parsed.formats == {"label_studio"}
    assert parsed.tasks[0]["tags"] == ["train"]
    first, second = parsed.completions
    assert (first["author"], first["review"], first["reviewer"]) == ("ann@example.org", "accepted", "9")
    assert second["submitted"] is False and second["author"] == "4"


@pytest.mark.parametrize(
    "payload, fault",
    [
        (b"{not json", "not valid JSON"),
        (json.dumps([{"id": 1, "completions": []}]), "task #0 (id 1): 'data' is missing"),
        (json.dumps([genai_task(1, TEXT, []), genai_task(1, TEXT, [])]), "task #1 (id 1): task id 1 appears twice"),
        (
            json.dumps([genai_task(1, TEXT, []), {"id": 2, "data": {"text": "x"}}]),
            "task #1 (id 2): has neither 'completions'",
        ),
        (json.dumps([genai_task("x", TEXT, [])]), "task #0 (id 'x'): task 'id' 'x'"),
        (
            json.dumps(
                [
                    genai_task(
                        1,
                        TEXT,
                        [
                            genai_completion(
                                7,
                                "a",
                                [
                                    {
                                        "id": "r",
                                        "from_name": "label",
                                        "to_name": "text",
                                        "type": "labels",
                                        "value": {"start": 5, "end": 99, "labels": ["PER"]},
                                    }
                                ],
                            )
                        ],
                    )
                ]
            ),
            "task #0 (id 1): completion 7: result 'r': span end 99 is past the end",
        ),
        (
            json.dumps(
                [
                    genai_task(
                        1,
                        TEXT,
                        [
                            genai_completion(
                                7, "a", [{"type": "relation", "from_id": "nope", "to_id": "nope", "labels": ["x"]}]
                            )
                        ],
                    )
                ]
            ),
            "completion 7: relation from_id 'nope' names no result",
        ),
        (
            json.dumps(
                [
                    genai_task(
                        1,
                        TEXT,
                        [
                            genai_completion(
                                7, "a", [{"id": "c", "from_name": "topic", "type": "choices", "value": {"choices": []}}]
                            )
                        ],
                    )
                ]
            ),
            "value.choices must be a non-empty list",
        ),
        (
            json.dumps([{"id": 1, "data": {"image": "/etc/hostname"}, "completions": []}]),
            "image '/etc/hostname' is not a data URI: over HTTP give images as data URIs",
        ),
    ],
)
def test_malformed_export_is_rejected_naming_task_and_reason(payload, fault):
    with pytest.raises(ImportError_, match=re.escape(fault)):
        parse_export(payload)


def test_a_local_import_reads_image_files_only_inside_its_folders(catalog: Catalog, tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "secret.png").write_bytes(PNG)
    for name in ("missing.png", "../secret.png", "../../../../etc/hostname"):
        with pytest.raises(ImportError_, match=re.escape(f"image {name!r} is neither a data URI nor a readable file")):
            catalog.import_file(
                "p",
                json.dumps([{"id": 1, "data": {"image": name}, "completions": []}]).encode(),
                image_dirs=[tmp_path / "exports"],
            )


def test_labels_the_config_does_not_list_are_refused_naming_task_completion_and_label(catalog: Catalog):
    import_tasks(catalog, [genai_task(1, TEXT, [genai_completion(11, "alice", [span(TEXT, "Rita", "PER")])])])
    bad = [genai_task(2, TEXT, [genai_completion(21, "bob", [span(TEXT, "Rita", "PERSON")])])]
    with pytest.raises(
        ImportError_, match="task 2, completion 21: label 'PERSON' of 'label' is not in the labeling config"
    ):
        import_tasks(catalog, bad)
    assert catalog.project("p")["completions"] == 1


def test_rejected_import_leaves_the_catalog_unchanged(catalog: Catalog):
    import_tasks(catalog, [genai_task(1, TEXT, [genai_completion(11, "alice", [span(TEXT, "Rita", "PER")])])])
    bad = [genai_task(2, TEXT, [genai_completion(21, "bob", [])]), {"id": 3, "completions": []}]
    with pytest.raises(ImportError_, match="task #1"):
        import_tasks(catalog, bad)
    project = catalog.project("p")
    assert (project["tasks"], project["completions"]) == (1, 1)


def test_reimporting_the_same_file_changes_nothing(catalog: Catalog):
    tasks = [genai_task(1, TEXT, [genai_completion(11, "alice", [span(TEXT, "Rita", "PER")])])]
    first = import_tasks(catalog, tasks)
    second = import_tasks(catalog, tasks)
    assert (first["inserted"], first["unchanged"]) == (1, 0)
    assert (second["inserted"], second["updated"], second["unchanged"]) == (0, 0, 1)
    assert catalog.project("p")["completions"] == 1
    (labels,) = catalog.con.execute("SELECT count(*) FROM completion_labels").fetchall()[0]
    assert labels == 1


def test_reimport_with_a_review_updates_the_completion(catalog: Catalog):
    completion = genai_completion(11, "alice", [span(TEXT, "Rita", "PER")])
    import_tasks(catalog, [genai_task(1, TEXT, [completion])])
    completion["review_status"] = {"approved": False, "reviewer": "rev"}
    answer = import_tasks(catalog, [genai_task(1, TEXT, [completion])])
    assert answer["updated"] == 1
    assert catalog.con.execute("SELECT review FROM completions").fetchall() == [("rejected",)]


def test_task_image_is_copied_into_the_blob_store(catalog: Catalog, tmp_path):
    (tmp_path / "scan.png").write_bytes(PNG)
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    tasks = [
        {"id": 1, "data": {"image": data_uri}, "completions": []},
        {"id": 2, "data": {"image": str(tmp_path / "scan.png")}, "completions": []},
    ]
    answer = import_tasks(catalog, tasks)
    assert answer["images"] == 2
    keys = [k for (k,) in catalog.con.execute("SELECT image FROM tasks ORDER BY task_id").fetchall()]
    assert keys[0] == keys[1] and keys[0].endswith(".png")
    assert catalog.blobs.path(keys[0]).read_bytes() == PNG


@pytest.mark.shared_data
def test_real_genai_lab_export_imports_every_completion(catalog: Catalog):
    raw = shared_file("genai_lab_export", "alab_demo.json").read_bytes()
    with pytest.raises(ImportError_, match="label 'DATE' of 'label' is not in the labeling config"):
        catalog.import_file("p", raw)  # its config lists other labels
    catalog.create_project("clinical", CLINICAL.read_text(), "en", "owner1")
    answer = catalog.import_file("clinical", raw)
    assert (answer["tasks"], answer["completions"], answer["formats"]) == (3, 14, ["genai_lab"])
    (submitted,) = catalog.con.execute("SELECT count(*) FROM completions WHERE submitted").fetchall()[0]
    assert submitted == 13  # completion 1002 carries no submitted_at
    kinds = dict(catalog.con.execute("SELECT result_type, count(*) FROM completion_labels GROUP BY 1").fetchall())
    assert kinds == {"labels": 139, "choices": 3, "relation": 20}


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name, tasks, completions, fmt",
    [
        ("street_ninja_project-1-at-2025-01-24-22-16-54047e52.json", 102, 102, "label_studio"),
        ("ls_legacy_completions_348.json", 1, 1, "label_studio_legacy"),
    ],
)
def test_real_label_studio_exports_import(catalog: Catalog, name, tasks, completions, fmt):
    export = shared_file("labelstudio_export", name)
    config = export.with_name(name.replace(".json", ".config.xml"))
    catalog.create_project("ls", config.read_text() if config.exists() else STREET_NINJA_CONFIG, "en", "owner1")
    answer = catalog.import_file("ls", export.read_bytes())
    assert (answer["tasks"], answer["completions"], answer["formats"]) == (tasks, completions, [fmt])
