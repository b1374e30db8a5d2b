"""Words on a page image and their boxes, the input of Visual NER: from the task (`data.ocr`, or
Label Studio's OCR transcriptions: `rectangle` + `textarea` results sharing an id) or else from
Tesseract (`pytesseract`), cached per image beside it in the blob store.

Boxes are (x0, y0, x1, y1) normalised to 0..1000 of the page, as LayoutLM reads them. Words keep
the order their source gives: `data.ocr` as the task lists them (an OCR engine's reading order, or
the annotators'), Tesseract's as it reads them (in mode TESSERACT_PSM, one block: lines top to
bottom). Only transcriptions, which have no order of their own, are put in geometric reading
order (lines top to bottom, words left to right). The order matters: an entity is a run of words
in it, and where a run ends is what the model learns from the order (FUNSD: 75 % of the entity
boundaries in the annotators' order are jumps on the page, 3 % of the steps inside an entity)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from labtrain.errors import LabtrainError

TESSERACT_LANGUAGES = {"en": "eng", "de": "deu", "es": "spa", "pt": "por", "it": "ita", "da": "dan", "ro": "ron"}
SCALE = 1000
# Tesseract reads the page enlarged this many times, in this page-segmentation mode: on the 20 FUNSD
# test scans (about 100 dpi) these find and read 68.7 % and 62.4 % of FUNSD's own words, against
# 52.7 % and 42.5 % at 1x in the automatic mode 3 (bench/tesseract_settings.py, docs/benchmarks.md)
TESSERACT_UPSCALE = 2
TESSERACT_PSM = 6


class OcrError(LabtrainError):
    status_code = 422


@dataclass(frozen=True)
class Word:
    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in 0..1000 of the page


def clamp_box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    c = [max(0, min(SCALE, round(v))) for v in (x0, y0, x1, y1)]
    return c[0], c[1], max(c[0], c[2]), max(c[1], c[3])


def percent_box(value: dict) -> tuple[int, int, int, int]:
    """A Label Studio region value (x, y, width, height in percent of the page)."""
    x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
    return clamp_box(x * 10, y * 10, (x + w) * 10, (y + h) * 10)


def reading_order(words: list[Word]) -> list[Word]:
    """Lines top to bottom, words left to right within a line. Taken by vertical centre, a word
    joins the line above when its centre lies within half a word height of the line's mean centre
    (scans are skewed: a line's words share neither one top nor one bottom)."""
    lines: list[list] = []  # [sum of centres, sum of heights, words]
    for word in sorted(words, key=lambda w: (w.box[1] + w.box[3], w.box[0])):
        centre, height = (word.box[1] + word.box[3]) / 2, max(1, word.box[3] - word.box[1])
        if lines:
            line = lines[-1]
            n = len(line[2])
            if abs(centre - line[0] / n) <= 0.5 * max(height, line[1] / n):
                line[0], line[1] = line[0] + centre, line[1] + height
                line[2].append(word)
                continue
        lines.append([centre, height, [word]])
    return [w for _, _, line in lines for w in sorted(line, key=lambda w: w.box[0])]


SEGMENT_GAP = 0.8  # line heights: the widest gap between two words of one line segment


def segment_starts(boxes: list[tuple[int, int, int, int]]) -> list[bool]:
    """Whether each word starts a line segment: a segment is a run of consecutive words on one
    line (centres within half a word height) with gaps of at most SEGMENT_GAP line heights. In
    the order annotators read a form, a new segment is where a phrase ends (on FUNSD's test
    forms 98 % of these segments lie inside one entity, and 82 % of the entities are exactly one
    segment)."""
    starts = []
    for i, box in enumerate(boxes):
        if i == 0:
            starts.append(True)
            continue
        last = boxes[i - 1]
        height = max(1, box[3] - box[1], last[3] - last[1])
        same_line = abs((box[1] + box[3]) - (last[1] + last[3])) / 2 <= 0.5 * height
        starts.append(not (same_line and -0.5 * height <= box[0] - last[2] <= SEGMENT_GAP * height))
    return starts


def words_from_data(ocr, size: tuple[int, int] | None, where: str) -> list[Word]:
    """`data.ocr`: a list of {"text", "bbox": [x0, y0, x1, y1]} in pixels of the image, or of
    {"text", "x", "y", "width", "height"} in percent (Label Studio's unit)."""
    if not isinstance(ocr, list):
        raise OcrError(f"{where}: data.ocr must be a list of words")
    words = []
    for i, entry in enumerate(ocr):
        at = f"{where}: data.ocr[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise OcrError(f"{at} must be an object with a string 'text'")
        try:
            if "bbox" in entry:
                if size is None:
                    raise OcrError(
                        f"{at}: a pixel 'bbox' needs the page size (the image, or data.width and data.height)"
                    )
                x0, y0, x1, y1 = (float(v) for v in entry["bbox"])
                box = clamp_box(x0 / size[0] * SCALE, y0 / size[1] * SCALE, x1 / size[0] * SCALE, y1 / size[1] * SCALE)
            else:
                box = percent_box(entry)
        except (KeyError, TypeError, ValueError):
            raise OcrError(f"{at} needs 'bbox' [x0, y0, x1, y1] (pixels) or x, y, width, height (percent)") from None
        if entry["text"].strip():
            words.append(Word(entry["text"].strip(), box))
    return words


def words_from_transcriptions(results: list[dict]) -> list[Word]:
    """Label Studio's OCR template: a `textarea` result holds the text of the region with the same
    id (a `rectangle`, `rectanglelabels` or `labels` result). A region's text is split into words
    that share its box in proportion to their length."""
    boxes = {
        r.get("id"): r.get("value") or {}
        for r in results
        if (r.get("type") or "").lower() in ("rectangle", "rectanglelabels", "labels")
    }
    words = []
    for r in results:
        value = r.get("value") or {}
        if (r.get("type") or "").lower() != "textarea" or not value.get("text"):
            continue
        region = value if "width" in value else boxes.get(r.get("id"))
        if not region or "width" not in region:
            continue
        x0, y0, x1, y1 = percent_box(region)
        tokens = " ".join(value["text"]).split()
        total, at = max(1, len(" ".join(tokens))), 0
        for token in tokens:
            words.append(
                Word(token, clamp_box(x0 + (x1 - x0) * at / total, y0, x0 + (x1 - x0) * (at + len(token)) / total, y1))
            )
            at += len(token) + 1
    return words


def tesseract_words(image, language: str, cache: Path | None = None) -> list[Word]:
    """Tesseract's words (confidence >= 0) on a PIL image, in Tesseract's order, read at
    TESSERACT_UPSCALE times the size in mode TESSERACT_PSM; `cache` keeps them as JSON."""
    if cache is not None and cache.exists():
        return [Word(t, tuple(b)) for t, b in json.loads(cache.read_text())]
    try:
        import pytesseract
    except ImportError:
        raise OcrError("pytesseract is not installed: pip install pytesseract") from None
    from PIL import Image

    lang = TESSERACT_LANGUAGES.get(language, language)
    page = image.convert("RGB")
    if TESSERACT_UPSCALE != 1:
        page = page.resize((page.width * TESSERACT_UPSCALE, page.height * TESSERACT_UPSCALE), Image.LANCZOS)
    try:
        data = pytesseract.image_to_data(
            page, lang=lang, config=f"--psm {TESSERACT_PSM}", output_type=pytesseract.Output.DICT
        )
    except pytesseract.TesseractNotFoundError:
        raise OcrError(
            f"Tesseract is not installed (Debian: apt-get install tesseract-ocr tesseract-ocr-{lang})"
        ) from None
    except pytesseract.TesseractError as exc:
        raise OcrError(f"Tesseract failed with language {lang!r}: {exc.message}") from None
    width, height = page.size
    words = [
        Word(
            text.strip(),
            clamp_box(
                left / width * SCALE, top / height * SCALE, (left + w) / width * SCALE, (top + h) / height * SCALE
            ),
        )
        for text, left, top, w, h, conf in zip(
            data["text"], data["left"], data["top"], data["width"], data["height"], data["conf"]
        )
        if text.strip() and float(conf) >= 0
    ]
    if cache is not None:
        try:
            tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps([[w.text, list(w.box)] for w in words]))
            tmp.replace(cache)
        except OSError:
            pass  # a read-only store: OCR again next time
    return words


def open_image(source):
    """A PIL image from a path or a file object; OcrError when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(source)
        image.load()
        return image
    except (OSError, UnidentifiedImageError) as exc:
        name = source if isinstance(source, (str, Path)) else "given"
        raise OcrError(f"cannot read the image {name}: {exc}") from None


def image_from(value: str, where: str):
    """A PIL image from a data URI (base64) or a readable file path."""
    import base64
    import binascii
    import io

    if value.startswith("data:"):
        head, _, payload = value.partition(",")
        if ";base64" not in head:
            raise OcrError(f"{where}: an image data URI must be base64-encoded")
        try:
            return open_image(io.BytesIO(base64.b64decode(payload, validate=True)))
        except binascii.Error:
            raise OcrError(f"{where}: the image data URI is not valid base64") from None
    return open_image(value)


def page_words(
    data: dict, results: list[dict], image, language: str, where: str, cache: Path | None = None
) -> tuple[list[Word], tuple[int, int] | None, str]:
    """The page's words in their source's order (see the module), its size in pixels (when known) and where the words
    came from: "data.ocr", "transcriptions" or "tesseract" (on `image`, a PIL image; `cache`
    keeps Tesseract's words)."""
    size = image.size if image is not None else None
    if size is None and isinstance(data.get("width"), (int, float)) and isinstance(data.get("height"), (int, float)):
        size = (int(data["width"]), int(data["height"]))
    if data.get("ocr"):
        return words_from_data(data["ocr"], size, where), size, "data.ocr"
    transcribed = words_from_transcriptions(results)
    if transcribed:
        return reading_order(transcribed), size, "transcriptions"
    if image is None:
        raise OcrError(f"{where} has no OCR words (data.ocr) and no image to read them from")
    return tesseract_words(image, language, cache), size, "tesseract"


def cache_path(image_path: str | Path, language: str) -> Path:
    """Where Tesseract's words of a stored image are kept (beside it: blob keys are content hashes;
    the settings are in the name, so a cache of other settings is not read)."""
    lang = TESSERACT_LANGUAGES.get(language, language)
    return Path(f"{image_path}.ocr-{lang}-psm{TESSERACT_PSM}-x{TESSERACT_UPSCALE}.json")
