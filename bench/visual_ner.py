"""Visual NER on FUNSD forms (../shared/data/funsd: 50 train + 20 test scans, the official split):
labtrain's LayoutLM-from-MiniLM trained on the train forms with the service's default Visual NER
parameters (a flag overrides one), scored on the test forms two ways, per label (header / question
/ answer; FUNSD's "other" is left unlabelled):
- **field**: as the LayoutLM paper scores FUNSD, entity-level P/R/F1 over the data set's own entity
  word groups (an entity counts when the predicted words are exactly its words, with its label). With
  Tesseract's words, an entity's words are the Tesseract words that FUNSD's words of it cover (most
  of their area); an entity no Tesseract word falls on counts as missed ("unreachable");
- **strict**: the trainer's own test score, over the page's words as the trainer orders them, the
  entities being runs of words inside one labelled region.
Also time per epoch and in total, peak memory, the training and prediction time per page next to
the product page's figures (714 tasks: 225 min on 14 CPU cores, 26 min on one T4), and how close
Tesseract's words come to FUNSD's (words found, read, regions left without a word).

    .venv/bin/python bench/visual_ner.py [--ocr given|tesseract|both] [--device cpu|cuda] [--epochs N]

The forms go through labtrain's importer and selection like a project's export would: one Label
Studio task per form (`data.image` the scan; with `--ocr given` also `data.ocr`, FUNSD's own words
and boxes), one completion whose `rectanglelabels` regions are FUNSD's entity boxes, tags `train`
/ `test`. With `--ocr tesseract` the words come from Tesseract instead and take their labels by
overlap with the regions, as in a project without OCR words (the gold then follows Tesseract's
words too).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, minutes, run_trainer

sys.path.insert(0, str(ROOT))
from storage.catalog import Catalog  # noqa: E402
from storage.selection import SelectionParams  # noqa: E402
from trainers.metrics import score_sets  # noqa: E402
from trainers.ocr import SCALE, Word, open_image, tesseract_words, words_from_data  # noqa: E402
from trainers.text import spans_from_bio  # noqa: E402
from trainers.visual_ner import MIN_OVERLAP, overlap  # noqa: E402

DATA = SHARED / "funsd"
LABELS = ["header", "question", "answer"]
CONFIG = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="header"/><Label value="question"/><Label value="answer"/>
  </RectangleLabels></View>"""
PAGE_TASKS, PAGE_CPU_MIN, PAGE_GPU_MIN = 714, 225, 26  # the product page's Visual NER benchmark


def funsd_tasks(part: str, tag: str, with_words: bool, first_id: int) -> list[dict]:
    from PIL import Image

    tasks = []
    for n, annotation in enumerate(sorted((DATA / part / "annotations").glob("*.json"))):
        image = DATA / part / "images" / (annotation.stem + ".png")
        width, height = Image.open(image).size
        form = json.loads(annotation.read_text())["form"]
        regions = [
            {
                "id": f"e{e['id']}",
                "from_name": "label",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "value": {
                    "x": 100 * e["box"][0] / width,
                    "y": 100 * e["box"][1] / height,
                    "width": 100 * (e["box"][2] - e["box"][0]) / width,
                    "height": 100 * (e["box"][3] - e["box"][1]) / height,
                    "rotation": 0,
                    "rectanglelabels": [e["label"]],
                },
            }
            for e in form
            if e["label"] in LABELS and e["words"]
        ]
        data = {"image": str(image)}
        if with_words:
            data["ocr"] = [{"text": w["text"], "bbox": w["box"]} for e in form for w in e["words"] if w["text"].strip()]
        tasks.append(
            {
                "id": first_id + n,
                "data": data,
                "meta": {"tags": [tag]},
                "annotations": [
                    {
                        "id": 100000 + first_id + n,
                        "completed_by": 1,
                        "created_at": "2024-01-01T00:00:00Z",
                        "result": regions,
                    }
                ],
            }
        )
    return tasks


def snapshot(work: Path, with_words: bool) -> tuple[str, int]:
    """Import the forms into a fresh labtrain home and write the visual_ner snapshot."""
    tasks = funsd_tasks("training_data", "train", with_words, 1) + funsd_tasks("testing_data", "test", with_words, 1001)
    home = work / ("home_given" if with_words else "home_tesseract")
    catalog = Catalog(home)
    try:
        catalog.create_project("funsd", CONFIG, "en", "bench")
        catalog.import_file("funsd", json.dumps(tasks).encode())
        manifest = catalog.snapshot(
            "funsd", SelectionParams(test_tag="test", validation_split=None, split_seed=1), out_dir=home / "snap"
        )
    finally:
        catalog.close()
    return manifest["files"]["visual_ner"]["path"], sum(1 for t in tasks if t["meta"]["tags"] == ["train"])


def forms(part: str) -> list[tuple[str, Path, tuple[int, int], list[dict]]]:
    """(name, image, size in pixels, FUNSD's entities) of each form of a part."""
    from PIL import Image

    out = []
    for annotation in sorted((DATA / part / "annotations").glob("*.json")):
        image = DATA / part / "images" / (annotation.stem + ".png")
        out.append((annotation.stem, image, Image.open(image).size, json.loads(annotation.read_text())["form"]))
    return out


def scaled(box, size: tuple[int, int]) -> tuple[float, float, float, float]:
    return box[0] / size[0] * SCALE, box[1] / size[1] * SCALE, box[2] / size[0] * SCALE, box[3] / size[1] * SCALE


def given_page(form: list[dict], size: tuple[int, int]) -> tuple[list[Word], list[tuple[frozenset, str]]]:
    """FUNSD's words in the annotators' order (the task's data.ocr, read as the trainer reads it) and
    the labelled entities as sets of word positions (the field's gold)."""
    ocr = [{"text": w["text"], "bbox": w["box"]} for e in form for w in e["words"] if w["text"].strip()]
    words = words_from_data(ocr, size, "bench")
    gold, at = [], 0
    for e in form:
        n = sum(1 for w in e["words"] if w["text"].strip())
        if e["label"] in LABELS and n:
            gold.append((frozenset(range(at, at + n)), e["label"]))
        at += n
    return words, gold


def tesseract_gold(form: list[dict], size: tuple[int, int], words: list[Word]) -> list[tuple[object, str]]:
    """The field's entities over Tesseract's words: each Tesseract word belongs to the FUNSD entity
    (any label, "other" too) whose words cover the largest share of its box, if at least half, else
    to the entity whose box covers at least half of it. A labelled entity left without a word stays
    in the gold as an unreachable one (a miss whatever the model does)."""
    entities = [e for e in form if any(w["text"].strip() for w in e["words"])]
    owner = []
    for word in words:
        shares = [
            (sum(overlap(word.box, scaled(w["box"], size)) for w in e["words"] if w["text"].strip()), i)
            for i, e in enumerate(entities)
        ]
        share, best = max(shares, default=(0.0, -1))
        if share < MIN_OVERLAP:
            share, best = max(
                ((overlap(word.box, scaled(e["box"], size)), i) for i, e in enumerate(entities)), default=(0.0, -1)
            )
        owner.append(best if share >= MIN_OVERLAP else -1)
    gold = []
    for i, e in enumerate(entities):
        if e["label"] in LABELS:
            mine = frozenset(k for k, o in enumerate(owner) if o == i)
            gold.append((mine or ("unreachable", e["id"]), e["label"]))
    return gold


def field_scores(output_dir: Path, source: str, ocr_dir: Path) -> dict:
    """The trained model's field scores on the 20 test forms (see the module), with the prediction
    time per page; for Tesseract also the scores over the reachable entities only."""
    from trainers.predict import load

    pages, golds = [], []
    for name, image, size, form in forms("testing_data"):
        if source == "given":
            words, gold = given_page(form, size)
        else:
            words = tesseract_words(open_image(image), "en", ocr_dir / f"{name}.json")
            gold = tesseract_gold(form, size, words)
        pages.append(words)
        golds.append(gold)
    model = load(output_dir).model
    started = time.monotonic()
    tag_lists = model.predict_tags([[w.text for w in p] for p in pages], box_lists=[[w.box for w in p] for p in pages])
    seconds = (time.monotonic() - started) / len(pages)
    return {**score_pages(pages, tag_lists, golds), "predict_s_per_page": seconds}


def score_pages(pages: list[list[Word]], tag_lists: list[list[str]], golds: list[list]) -> dict:
    """Entity-level P/R/F1 (per label, micro, macro) of the predicted BIO tags against the field's
    gold (word-position sets; an unreachable entity's key matches nothing); with the count of
    unreachable entities and, when there are any, the scores over the reachable ones alone. The
    tags chunk as seqeval chunks them (an entity starts at B, at an I after O or another label)."""
    gold = [((n, key), label) for n, page in enumerate(golds) for key, label in page]
    predicted = [
        ((n, frozenset(range(s.start, s.end))), s.label)
        for n, (words, tags) in enumerate(zip(pages, tag_lists))
        for s in spans_from_bio([(w.text, i, i + 1) for i, w in enumerate(words)], tags)
    ]
    scores = {"all": score_sets(gold, predicted, LABELS)}
    reachable = [g for g in gold if isinstance(g[0][1], frozenset)]
    scores["unreachable"] = len(gold) - len(reachable)
    if scores["unreachable"]:
        scores["reachable"] = score_sets(reachable, predicted, LABELS)
    return scores


def iou(a, b) -> float:
    """Intersection over union of two boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def letters(text: str) -> str:
    """A word's letters and digits, lower case: what "read" compares."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def tesseract_recall(ocr_dir: Path) -> dict:
    """Tesseract's words against FUNSD's on the test forms: a FUNSD word is found when a Tesseract
    word's box overlaps it with IoU >= 0.5, read when that word also has its letters and digits;
    and the labelled regions that no Tesseract word falls in (at least half of a word's box)."""
    n = found = read = regions = empty = 0
    for name, image, size, form in forms("testing_data"):
        words = tesseract_words(open_image(image), "en", ocr_dir / f"{name}.json")
        for e in form:
            if e["label"] in LABELS and e["words"]:
                regions += 1
                empty += not any(overlap(w.box, scaled(e["box"], size)) >= MIN_OVERLAP for w in words)
            for w in e["words"]:
                if not w["text"].strip():
                    continue
                n += 1
                box = scaled(w["box"], size)
                best = max(words, key=lambda t: iou(t.box, box), default=None)
                if best is not None and iou(best.box, box) >= 0.5:
                    found += 1
                    read += letters(best.text) == letters(w["text"])
    return {"funsd_words": n, "found": found / n, "read": read / n, "regions": regions, "empty_regions": empty}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ocr", choices=["given", "tesseract", "both"], default="both")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, help="default: the service's")
    parser.add_argument("--lr", type=float, help="default: the service's")
    parser.add_argument("--batch-size", type=int, help="default: the service's")
    parser.add_argument("--max-length", type=int, help="default: the service's")
    parser.add_argument("--warmup", type=float, help="default: the service's")
    parser.add_argument("--eval-size", type=float, help="default: the service's")
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing: this bench reads ../shared/data/funsd")
    work = Path(args.work or tempfile.mkdtemp(prefix="visual_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    ocr_dir = work / "tesseract"
    ocr_dir.mkdir(exist_ok=True)
    given = {
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "warmup": args.warmup,
        "eval_size": args.eval_size,
    }
    given = {k: v for k, v in given.items() if v is not None}
    rows = []
    for source in ["given", "tesseract"] if args.ocr == "both" else [args.ocr]:
        started = time.monotonic()
        path, n_train = snapshot(work, source == "given")
        name = f"visual_{source}_{args.device}"
        metrics, wall, peak = run_trainer(
            work,
            name,
            {
                "type": "visual_ner",
                "snapshot": path,
                "labels": LABELS,
                "embeddings": "minilm",
                "params": given,
                "device": args.device,
                "from_name": "label",
                "to_name": "image",
                "result_type": "rectanglelabels",
            },
        )
        out = work / f"out_{name}"
        log = (out / "training.log").read_text()
        epochs = metrics["epochs"]
        field = field_scores(out, source, ocr_dir)
        rows.append(
            {
                "ocr": source,
                "device": args.device,
                "field": field["all"],
                "field_reachable": field.get("reachable"),
                "unreachable": field["unreachable"],
                "strict": metrics["entity"],
                "word_f1": metrics["token"]["micro"]["f1"],
                "epochs": len(epochs),
                "epoch_s": sorted(e["seconds"] for e in epochs)[len(epochs) // 2],
                "seconds": wall,
                "predict_s": field["predict_s_per_page"],
                "import_s": time.monotonic() - started - wall,
                "peak_gb": peak,
                "train_tasks": n_train,
                "params": json.loads((out / "labtrain.json").read_text()).get("parameters"),
                "ocr_line": next(line for line in log.splitlines() if line.startswith("OCR words")),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nFUNSD, 50 train forms, 20 test forms; parameters given: {given or 'none (the service defaults)'}")
    print(
        f"{'words':<10}{'scoring':<16}{'P':>7}{'R':>7}{'F1':>7}"
        + "".join(f"{lab:>10}" for lab in LABELS)
        + f"{'entities':>10}"
    )

    def line(ocr: str, scoring: str, s: dict) -> None:
        m = s["micro"]
        print(
            f"{ocr:<10}{scoring:<16}{m['precision']:7.3f}{m['recall']:7.3f}{m['f1']:7.3f}"
            + "".join(f"{s['per_label'][lab]['f1']:10.3f}" for lab in LABELS)
            + f"{m['support']:>10}"
        )

    for r in rows:
        line(r["ocr"], "field", r["field"])
        if r["field_reachable"]:
            line(r["ocr"], "field reachable", r["field_reachable"])
        line(r["ocr"], "strict", r["strict"])
    print(
        f"\n{'words':<10}{'device':<7}{'word F1':>8}{'epochs':>7}{'s/epoch':>9}{'train time':>12}"
        f"{'train/page':>11}{'predict/page':>13}{'peak RSS':>10}"
    )
    for r in rows:
        print(
            f"{r['ocr']:<10}{r['device']:<7}{r['word_f1']:8.3f}{r['epochs']:>7}{r['epoch_s']:9.1f}"
            f"{minutes(r['seconds']):>12}{r['seconds'] / r['train_tasks']:10.1f}s{r['predict_s']:12.2f}s{r['peak_gb']:9.2f}G"
        )
    print(
        f"\nproduct page ({PAGE_TASKS} tasks, batch 8): {PAGE_CPU_MIN * 60 / PAGE_TASKS:.1f} s per task on 14 CPU "
        f"cores, {PAGE_GPU_MIN * 60 / PAGE_TASKS:.1f} s per task on one T4 (epochs not given)."
    )
    print(
        "'train/page' is our whole training command (start-up, every epoch with validation, test evaluation) over "
        "the training pages; 'predict/page' tags a test page's words (OCR not included). One run each, on this machine."
    )
    if args.ocr != "given":
        t = tesseract_recall(ocr_dir)
        print(
            f"\nTesseract on the test forms: {t['found']:.1%} of FUNSD's {t['funsd_words']} words found (box IoU >= 0.5), "
            f"{t['read']:.1%} found and read; {t['empty_regions']} of {t['regions']} labelled regions cover no word"
        )
    for r in rows:
        print(f"{r['ocr']}: {r['ocr_line']}; import + snapshot {r['import_s']:.1f} s; parameters {r['params']}")


if __name__ == "__main__":
    main()
