"""Which Tesseract settings read FUNSD's scanned forms best: for each (enlargement, page-segmentation
mode), the share of FUNSD's own words on the 20 test forms that Tesseract finds (a word of its
with box IoU >= 0.5, boxes in the scan's pixels) and finds and reads (the same letters and digits),
and how many labelled regions (header / question / answer) no Tesseract word falls in (at least
half of the word's box). trainers/ocr.py's TESSERACT_UPSCALE and TESSERACT_PSM come from this
table; bench/visual_ner.py reports the same figures for the setting in use.

    .venv/bin/python bench/tesseract_settings.py 1:3 1:11 2:3 2:6 3:6     # enlargement:mode ...
"""

from __future__ import annotations

import json
import sys
import time

import pytesseract
from common import SHARED
from PIL import Image
from visual_ner import iou, letters

from trainers.visual_ner import overlap

DATA = SHARED / "funsd" / "testing_data"
LABELS = ("header", "question", "answer")


def read(image, scale: float, psm: int) -> list[tuple[str, tuple]]:
    """Tesseract's words with their boxes in the original image's pixels."""
    page = image.convert("RGB")
    if scale != 1:
        page = page.resize((int(page.width * scale), int(page.height * scale)), Image.LANCZOS)
    data = pytesseract.image_to_data(page, lang="eng", config=f"--psm {psm}", output_type=pytesseract.Output.DICT)
    return [
        (text.strip(), (left / scale, top / scale, (left + w) / scale, (top + h) / scale))
        for text, left, top, w, h, conf in zip(
            data["text"], data["left"], data["top"], data["width"], data["height"], data["conf"]
        )
        if text.strip() and float(conf) >= 0
    ]


def main() -> None:
    settings = [(float(s), int(m)) for s, m in (arg.split(":") for arg in sys.argv[1:] or ["1:3", "2:6"])]
    print(f"{'enlarged':>9}{'mode':>6}{'found':>8}{'read':>8}{'empty regions':>15}{'seconds':>9}")
    for scale, psm in settings:
        started, n, found, right, regions, empty = time.monotonic(), 0, 0, 0, 0, 0
        for annotation in sorted((DATA / "annotations").glob("*.json")):
            form = json.loads(annotation.read_text())["form"]
            words = read(Image.open(DATA / "images" / (annotation.stem + ".png")), scale, psm)
            for entity in form:
                if entity["label"] in LABELS and entity["words"]:
                    regions += 1
                    empty += not any(overlap(box, entity["box"]) >= 0.5 for _, box in words)
                for word in entity["words"]:
                    if not word["text"].strip():
                        continue
                    n += 1
                    best = max(words, key=lambda w: iou(w[1], word["box"]), default=None)
                    if best is not None and iou(best[1], word["box"]) >= 0.5:
                        found += 1
                        right += letters(best[0]) == letters(word["text"])
        print(
            f"{scale:>8g}x{psm:>6}{found / n:8.1%}{right / n:8.1%}{empty:>9} of {regions}"
            f"{time.monotonic() - started:9.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
