"""Visual NER on FUNSD forms (../shared/data/funsd: 50 train + 20 test scans, the official split):
labtrain's LayoutLM-from-MiniLM trained on the train forms, entity F1 per label on the test forms
(exact words and label, header / question / answer; FUNSD's "other" is left unlabelled), time per
epoch and in total, peak memory; and the training time per task next to the product page's
figures (714 tasks: 225 min on 14 CPU cores, 26 min on one T4).

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
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, minutes, run_trainer

sys.path.insert(0, str(ROOT))
from storage.catalog import Catalog  # noqa: E402
from storage.selection import SelectionParams  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ocr", choices=["given", "tesseract", "both"], default="both")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--eval-size", type=float, default=0.1)
    parser.add_argument("--work", help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing: this bench reads ../shared/data/funsd")
    work = Path(args.work or tempfile.mkdtemp(prefix="visual_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    params = {
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "eval_size": args.eval_size,
        "warmup": 0.1,
    }
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
                "params": params,
                "device": args.device,
                "from_name": "label",
                "to_name": "image",
                "result_type": "rectanglelabels",
            },
        )
        log = (work / f"out_{name}" / "training.log").read_text()
        epochs = metrics["epochs"]
        rows.append(
            {
                "ocr": source,
                "device": args.device,
                "f1": metrics["entity"]["micro"]["f1"],
                "macro": metrics["entity"]["macro"]["f1"],
                "word_f1": metrics["token"]["micro"]["f1"],
                "per": {lab: metrics["entity"]["per_label"][lab]["f1"] for lab in LABELS},
                "epochs": len(epochs),
                "epoch_s": sorted(e["seconds"] for e in epochs)[len(epochs) // 2],
                "seconds": wall,
                "import_s": time.monotonic() - started - wall,
                "peak_gb": peak,
                "train_tasks": n_train,
                "ocr_line": next(line for line in log.splitlines() if line.startswith("OCR words")),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nFUNSD, 50 train forms (eval_size {args.eval_size} of them validate), 20 test forms; params {params}")
    print(
        f"{'words':<10}{'device':<7}{'test F1':>8}{'macro':>7}{'word F1':>8}"
        + "".join(f"{lab:>10}" for lab in LABELS)
        + f"{'epochs':>7}{'s/epoch':>9}{'train time':>12}{'per task':>10}{'peak RSS':>10}"
    )
    for r in rows:
        per_task = r["seconds"] / r["train_tasks"]
        print(
            f"{r['ocr']:<10}{r['device']:<7}{r['f1']:8.3f}{r['macro']:7.3f}{r['word_f1']:8.3f}"
            + "".join(f"{r['per'][lab]:10.3f}" for lab in LABELS)
            + f"{r['epochs']:>7}{r['epoch_s']:9.1f}{minutes(r['seconds']):>12}{per_task:9.1f}s{r['peak_gb']:9.2f}G"
        )
    print(
        f"\nproduct page ({PAGE_TASKS} tasks, batch 8): {PAGE_CPU_MIN * 60 / PAGE_TASKS:.1f} s per task on 14 CPU "
        f"cores, {PAGE_GPU_MIN * 60 / PAGE_TASKS:.1f} s per task on one T4 (epochs not given)."
    )
    print(
        "test F1 is entity-level (exact words and label, micro); word F1 labels each word (micro). "
        "'per task' is our whole training command (start-up, every epoch with validation, test evaluation) over the "
        "training tasks; s/epoch is the median epoch. One run each, on this machine."
    )
    for r in rows:
        print(f"{r['ocr']}: {r['ocr_line']}; import + snapshot {r['import_s']:.1f} s")


if __name__ == "__main__":
    main()
