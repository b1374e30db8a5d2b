"""Visual NER: OCR words (task, Label Studio transcriptions, real Tesseract), labels by region
overlap, a real LayoutLM-from-MiniLM training on drawn forms, predict on an image, the data
failures told apart; then through the service: license scope ocr:training, use_gpu, predict
with ocr:inference, and the CLI."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from pathlib import Path

import pytest

from labtrain.errors import ImportError_
from storage.catalog import Catalog
from storage.selection import SelectionParams
from tests.visual_data import CONFIG, draw_form, write_export
from trainers.dataset import TrainingDataError
from trainers.ocr import (
    OcrError,
    Word,
    page_words,
    reading_order,
    segment_starts,
    tesseract_words,
    words_from_data,
    words_from_transcriptions,
)
from trainers.run import failure_reason, run
from trainers.spec import SpecError
from trainers.visual_ner import Region, label_words

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Tesseract is not installed (apt-get install tesseract-ocr)"
)
FAST = {"epochs": 6, "batch_size": 4, "learning_rate": 1e-4}
LABELS = ["header", "question", "answer"]


def test_words_in_reading_order_take_the_label_of_the_region_that_covers_them():
    words = reading_order(
        [
            Word("Smith", (300, 102, 380, 118)),
            Word("Name:", (100, 100, 180, 120)),
            Word("John", (200, 101, 280, 119)),
            Word("FORM", (100, 20, 300, 60)),
            Word("Date:", (100, 200, 180, 220)),
            Word("1992", (200, 200, 260, 220)),
        ]
    )
    assert [w.text for w in words] == ["FORM", "Name:", "John", "Smith", "Date:", "1992"]
    regions = [
        Region((95, 15, 310, 65), "header"),
        Region((95, 95, 185, 125), "question"),
        Region((195, 95, 390, 125), "answer"),
        Region((95, 195, 185, 225), "question"),
        Region((600, 600, 700, 700), "answer"),
    ]  # covers no word
    tags, spans, missed = label_words(words, regions)
    assert tags == ["B-header", "B-question", "B-answer", "I-answer", "B-question", "O"]
    assert [(s.start, s.end, s.label) for s in spans] == [
        (0, 1, "header"),
        (1, 2, "question"),
        (2, 4, "answer"),
        (4, 5, "question"),
    ]
    assert missed == 1


def test_task_words_keep_their_given_order_and_transcriptions_take_reading_order():
    """A two-column form whose OCR reads the left column first: the column's two-line answer stays
    one run of words (geometric lines would interleave it with the right column's words)."""
    ocr = [
        {"text": "Address:", "x": 10, "y": 10, "width": 10, "height": 2},
        {"text": "12", "x": 10, "y": 13, "width": 3, "height": 2},
        {"text": "Elm", "x": 14, "y": 13, "width": 5, "height": 2},
        {"text": "Street", "x": 10, "y": 16, "width": 8, "height": 2},
        {"text": "Phone:", "x": 60, "y": 10, "width": 8, "height": 2},
        {"text": "555", "x": 60, "y": 13, "width": 5, "height": 2},
    ]
    words, _, source = page_words({"ocr": ocr}, [], None, "en", "task 3")
    assert source == "data.ocr" and [w.text for w in words] == ["Address:", "12", "Elm", "Street", "Phone:", "555"]
    tags, spans, _ = label_words(words, [Region((95, 125, 200, 185), "answer"), Region((595, 125, 660, 155), "answer")])
    assert [(s.start, s.end) for s in spans] == [(1, 4), (5, 6)]
    assert [w.text for w in reading_order(words)] == ["Address:", "Phone:", "12", "Elm", "555", "Street"]
    results = [
        {"id": "r2", "type": "rectangle", "value": {"x": 60, "y": 10, "width": 8, "height": 2}},
        {"id": "r2", "type": "textarea", "value": {"text": ["Phone:"]}},
        {"id": "r1", "type": "rectangle", "value": {"x": 10, "y": 10, "width": 10, "height": 2}},
        {"id": "r1", "type": "textarea", "value": {"text": ["Address:"]}},
    ]
    words, _, source = page_words({}, results, None, "en", "task 4")
    assert source == "transcriptions" and [w.text for w in words] == ["Address:", "Phone:"]


def test_a_wide_gap_or_a_new_line_starts_a_line_segment():
    words = [
        Word("Date:", (100, 100, 160, 120)),
        Word("12", (300, 100, 330, 120)),  # 140 apart: a gap of 7 line heights
        Word("May", (340, 101, 390, 121)),  # 10 apart, on the same line
        Word("1992", (100, 130, 160, 150)),  # next line
    ]
    assert segment_starts([w.box for w in words]) == [True, True, False, True]
    assert segment_starts([]) == []


def test_a_word_mostly_outside_a_region_stays_outside():
    tags, _, _ = label_words([Word("edge", (100, 100, 200, 120))], [Region((160, 90, 400, 130), "answer")])
    assert tags == ["O"]  # 40 % of the word lies in the region


def test_task_words_in_pixels_or_percent_and_bad_entries_named():
    words = words_from_data(
        [
            {"text": "Total", "bbox": [50, 100, 150, 120]},
            {"text": " ", "bbox": [0, 0, 1, 1]},
            {"text": "12", "x": 50, "y": 50, "width": 10, "height": 5},
        ],
        (500, 1000),
        "task 7",
    )
    assert words == [Word("Total", (100, 100, 300, 120)), Word("12", (500, 500, 600, 550))]
    with pytest.raises(OcrError, match=r"task 7: data.ocr\[1\] needs 'bbox'"):
        words_from_data([{"text": "a", "x": 1, "y": 1, "width": 1, "height": 1}, {"text": "b"}], None, "task 7")
    with pytest.raises(OcrError, match="needs the page size"):
        words_from_data([{"text": "a", "bbox": [1, 2, 3, 4]}], None, "task 7")


def test_label_studio_transcriptions_become_words_sharing_their_region():
    results = [
        {"id": "t1", "type": "rectangle", "value": {"x": 10, "y": 10, "width": 40, "height": 5}},
        {"id": "t1", "type": "textarea", "value": {"text": ["Invoice total"]}},
        {"id": "t2", "type": "textarea", "value": {"text": ["ignored: no box"]}},
    ]
    words = words_from_transcriptions(results)
    assert [w.text for w in words] == ["Invoice", "total"]
    assert words[0].box[0] == 100 and words[1].box[2] == 500 and words[0].box[2] < words[1].box[0]


@needs_tesseract
def test_tesseract_reads_a_drawn_form_and_the_words_are_cached(tmp_path):
    import random

    from PIL import Image

    truth, _ = draw_form(random.Random(3), tmp_path / "form.png")
    cache = tmp_path / "form.png.ocr-eng.json"
    words = tesseract_words(Image.open(tmp_path / "form.png"), "en", cache)
    read = {w.text for w in words}
    expected = {w["text"] for w in truth}
    assert len(read & expected) >= 0.8 * len(expected), (read, expected)
    assert cache.exists()
    cache.write_text(json.dumps([["cached", [1, 2, 3, 4]]]))
    assert tesseract_words(Image.open(tmp_path / "form.png"), "en", cache) == [Word("cached", (1, 2, 3, 4))]
    with pytest.raises(OcrError, match="Tesseract failed with language 'xxx'"):
        tesseract_words(Image.open(tmp_path / "form.png"), "xxx")


def test_import_refuses_bad_ocr_words_and_regions_naming_the_task(tmp_path):
    catalog = Catalog(tmp_path / "home")
    try:
        catalog.create_project("forms", CONFIG, "en", "owner")
        region = {
            "id": "r",
            "from_name": "label",
            "to_name": "image",
            "type": "rectanglelabels",
            "value": {"x": 10, "y": 10, "width": 20, "height": 5, "rectanglelabels": ["answer"]},
        }

        def task(tid, data, result):
            return {"id": tid, "data": data, "annotations": [{"id": tid * 10, "completed_by": 1, "result": result}]}

        good = task(1, {"ocr": [{"text": "a", "x": 10, "y": 10, "width": 2, "height": 2}]}, [region])
        bad_ocr = task(2, {"ocr": [{"text": "a", "bbox": [1, 2, "x", 4]}]}, [region])
        outside = task(3, {"ocr": []}, [{**region, "value": {**region["value"], "x": 95}}])
        for bad, words in (
            (bad_ocr, r"task #1 \(id 2\): data.ocr\[0\].bbox"),
            (outside, r"task #1 \(id 3\): completion 30: result 'r': value: region x=95"),
        ):
            with pytest.raises(ImportError_, match=words):
                catalog.import_file("forms", json.dumps([good, bad]).encode())
        assert catalog.con.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
    finally:
        catalog.close()


def snapshot_of(home: Path, export: Path, config: str = CONFIG, split: float = 0.25) -> str:
    catalog = Catalog(home)
    try:
        catalog.create_project("forms", config, "en", "owner")
        catalog.import_file("forms", export.read_bytes(), image_dirs=[export.parent])
        manifest = catalog.snapshot(
            "forms", SelectionParams(validation_split=split, split_seed=1), out_dir=home / "snap"
        )
    finally:
        catalog.close()
    return manifest["files"]["visual_ner"]["path"]


def spec(snapshot: str, out: Path, **params) -> dict:
    return {
        "type": "visual_ner",
        "snapshot": snapshot,
        "output_dir": str(out),
        "labels": LABELS,
        "from_name": "label",
        "to_name": "image",
        "result_type": "rectanglelabels",
        "params": {**FAST, **params},
    }


@needs_tesseract
def test_layout_model_learns_drawn_forms_and_predicts_regions_on_an_image(tmp_path):
    export = write_export(tmp_path / "forms", 24, seed=1)  # half with data.ocr, half read by Tesseract
    snapshot = snapshot_of(tmp_path / "home", export)
    lines = []
    result = run(spec(snapshot, tmp_path / "out"), [lambda e: lines.append(e["line"]) if e["kind"] == "log" else None])
    log = "\n".join(lines)
    assert "12 tasks from data.ocr, 12 tasks from tesseract" in log
    assert "LayoutLM recipe from MiniLM-L6" in log
    assert result.metrics["entity"]["micro"]["f1"] > 0.9, log
    assert set(result.metrics["entity"]["per_label"]) == set(LABELS)

    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "out" / "model")
    assert type(model).__name__ == "LayoutLMForTokenClassification"

    from trainers.predict import load

    uri = "data:image/png;base64," + base64.b64encode((export.parent / "form_1_3.png").read_bytes()).decode()
    [regions] = load(tmp_path / "out").predict([uri])
    labels = [r["value"]["rectanglelabels"][0] for r in regions]
    assert labels.count("question") == 4 and labels.count("answer") == 4 and labels.count("header") == 1, regions
    first = regions[0]
    assert first["type"] == "rectanglelabels" and first["from_name"] == "label" and first["to_name"] == "image"
    assert 0 <= first["value"]["x"] <= 100 and first["value"]["width"] > 0 and first["original_width"] == 900


def test_data_failures_are_told_apart(tmp_path):
    export = write_export(tmp_path / "forms", 6, seed=2, ocr_every=1)  # words given: no Tesseract needed
    tasks = json.loads(export.read_text())
    for t in tasks[1:]:
        t["annotations"][0]["result"] = []
    one = tmp_path / "one" / "export.json"
    one.parent.mkdir()
    one.write_text(json.dumps(tasks))
    for f in export.parent.glob("*.png"):
        shutil.copy(f, one.parent)
    with pytest.raises(TrainingDataError) as few:
        run(spec(snapshot_of(tmp_path / "h1", one, split=0.0), tmp_path / "o1"))
    assert failure_reason(few.value).startswith("too few completions: 1 task(s)")

    # a label without a training region trains with a note (test_tiny_data.py)
    with pytest.raises(SpecError) as wrong:
        run(spec(snapshot_of(tmp_path / "h3", export, split=0.0), tmp_path / "o3", eval_size=1.5))
    assert failure_reason(wrong.value) == "wrong parameters: parameter eval_size=1.5 must be a number in [0, 1)"


def test_out_of_memory_is_named_whether_torch_or_ray_reports_it():
    import ray
    import torch

    from ray_app.job_worker import ray_failure

    assert failure_reason(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")).startswith(
        "out of memory: CUDA out of memory"
    )
    assert ray_failure(
        ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.")
    ).startswith("out of memory: ")
    assert ray_failure(RuntimeError("boom")) == "RuntimeError: boom"


# --- through the service -----------------------------------------------------------------------


def image_project(service, tmp_path: Path, n: int = 16) -> str:
    name = "v" + uuid.uuid4().hex[:8]
    export = write_export(tmp_path / name, n, seed=4, ocr_every=1)
    with service.client() as http:
        assert http.post("/api/projects", json={"name": name, "config": CONFIG}).status_code == 201
    imported = service.cli("import", name, str(export), token=service.token)
    assert imported.returncode == 0, imported.stderr
    assert f"{n} images" in imported.stdout
    return name


def test_visual_ner_waits_for_an_ocr_license_then_trains_and_pre_annotates(service, tmp_path):
    from tests.test_training_service import wait, wait_for_license

    project = image_project(service, tmp_path)
    license_file = service.home / "licenses.yaml"
    image = tmp_path / project / "form_4_0.png"
    uri = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    try:
        with service.client() as http:
            options = http.get(f"/api/projects/{project}/training/options").json()
            [entry] = options["types"]
            assert entry["type"] == "visual_ner" and entry["available"] and "ocr:training" in entry["note"]
            assert [e["name"] for e in entry["embeddings"]] == ["minilm"]
            assert options["gpu_available"] is False
            for body, words in (
                ({"backend": "sparknlp"}, "licensed in Spark NLP"),
                ({"use_gpu": True}, "fits no node of this cluster (it has 0 GPU)"),
                ({"params": {"eval_size": 2}}, "eval_size=2"),
            ):
                answer = http.post(f"/api/projects/{project}/trainings", json={"types": ["visual_ner"], **body})
                assert answer.status_code == 422 and words in answer.json()["detail"], answer.text

            # the embedded default grants the OCR scopes; a license file limits them: one without
            # them makes the job wait
            text_only = (
                "licenses:\n- {id: text, scopes: [training:ner, training:assertion, "
                "training:classification, training:relation], max_jobs: 2}\n"
            )
            license_file.write_text(text_only)
            started = http.post(
                f"/api/projects/{project}/trainings",
                json={"types": ["visual_ner"], "params": {**FAST, "eval_size": 0.2}},
            )
            assert started.status_code == 201, started.text
            training = wait_for_license(http, started.json()["id"])
            assert training["jobs"][0]["reason"] == "waiting for a license with scope ocr:training"

            license_file.write_text(text_only + "- {id: visual, scopes: ['ocr:training'], max_jobs: 1}\n")
            training = wait(http, training["id"])
            assert training["status"] == "succeeded", training
            job = training["jobs"][0]
            assert job["metrics"]["micro"]["f1"] > 0.5
            assert job["license"] == "visual"
            model = job["model_name"]
            log = http.get(f"/api/trainings/{training['id']}/logs", params={"follow": False}).text
            assert "OCR words: 16 tasks from data.ocr" in log and "eval_size=0.2" in log

            denied = http.post(f"/api/models/{model}/predict", json={"images": [uri]})
            assert denied.status_code == 403 and "ocr:inference" in denied.json()["detail"]
            license_file.write_text(
                license_file.read_text().replace("'ocr:training'", "'ocr:training', 'ocr:inference'")
            )
            for body, words in (({"images": [str(image)]}, "data URI"), ({"texts": ["a"]}, "takes 'images'")):
                answer = http.post(f"/api/models/{model}/predict", json=body)
                assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
            answer = http.post(f"/api/models/{model}/predict", json={"images": [uri]})
            assert answer.status_code == 200, answer.text
            [regions] = answer.json()["results"]
            assert regions and {r["type"] for r in regions} == {"rectanglelabels"}
            assert {r["value"]["rectanglelabels"][0] for r in regions} <= set(LABELS)

        license_file.unlink()  # the embedded default grants ocr:inference too
        cli = service.cli("predict", model, "--image", str(image), token=service.token)
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["results"][0] == regions
    finally:
        license_file.unlink(missing_ok=True)
