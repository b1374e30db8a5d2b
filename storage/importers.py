"""Export files (Generative AI Lab, Label Studio) -> validated task, completion and label rows.

Parsing is all-or-nothing: any malformed task rejects the whole file with its index and
the reason, before anything is written. One small adapter per format reads the author,
submission and review state, because those field names differ between tools and versions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labtrain.errors import ImportError_

GENAI_LAB = "genai_lab"
LABEL_STUDIO = "label_studio"
LABEL_STUDIO_LEGACY = "label_studio_legacy"
SPAN_TYPES = {"labels", "hypertextlabels"}
REGION_TYPES = {"rectanglelabels", "polygonlabels"}


@dataclass
class ReviewState:
    verdict: str | None = None  # "accepted" | "rejected" | None
    reviewer: str | None = None
    reviewed_at: datetime | None = None


@dataclass
class ParsedExport:
    """Everything one export file adds, ready to be written in one transaction."""

    formats: set[str] = field(default_factory=set)
    tasks: list[dict] = field(default_factory=list)
    completions: list[dict] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    images: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # task id -> (bytes, suffix)


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 in the variants exports use ('Z', offsets, no zone = UTC) -> naive UTC."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=UTC).replace(tzinfo=None)
        if not isinstance(value, str):
            raise ValueError("not a string")
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"timestamp {repr(value)[:60]} is not an ISO 8601 date and time") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _user_name(value: Any) -> str | None:
    """Label Studio's `completed_by` / `created_by`: an id or a user object (email wins)."""
    if value is None:
        return None
    if isinstance(value, dict):
        for key in ("email", "username", "id"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return None
    return str(value)


# --- review adapters: one per format -------------------------------------------------------


def review_genai_lab(completion: dict) -> ReviewState:
    """Generative AI Lab: `review_status` is {approved: bool, reviewer, reviewed_at|updated_at}
    (older versions: a string 'approved'/'accepted'/'rejected')."""
    status = completion.get("review_status")
    if isinstance(status, str):
        verdict = {"approved": "accepted", "accepted": "accepted", "rejected": "rejected"}.get(status.lower())
        return ReviewState(verdict)
    if not isinstance(status, dict) or status.get("approved") is None:
        return ReviewState()
    verdict = "accepted" if status["approved"] in (True, "true", 1) else "rejected"
    return ReviewState(
        verdict,
        _user_name(status.get("reviewer") or status.get("reviewed_by")),
        parse_timestamp(status.get("reviewed_at") or status.get("updated_at")),
    )


def review_label_studio(annotation: dict) -> ReviewState:
    """Label Studio (Enterprise review stage): `reviews[]` with `accepted` bool; the latest wins."""
    reviews = [r for r in annotation.get("reviews") or [] if isinstance(r, dict) and r.get("accepted") is not None]
    if not reviews:
        return ReviewState()
    latest = max(reviews, key=lambda r: parse_timestamp(r.get("updated_at") or r.get("created_at")) or datetime.min)
    return ReviewState(
        "accepted" if latest["accepted"] else "rejected",
        _user_name(latest.get("created_by") or latest.get("reviewer")),
        parse_timestamp(latest.get("updated_at") or latest.get("created_at")),
    )


@dataclass(frozen=True)
class FormatAdapter:
    name: str
    completions_key: str
    author: Callable[[dict], str | None]
    submitted: Callable[[dict], bool]
    submitted_at: Callable[[dict], Any]
    review: Callable[[dict], ReviewState]


ADAPTERS = {
    GENAI_LAB: FormatAdapter(
        GENAI_LAB,
        "completions",
        author=lambda c: _user_name(c.get("created_username")),
        submitted=lambda c: c.get("submitted_at") not in (None, "") and not c.get("cancelled"),
        submitted_at=lambda c: c.get("submitted_at"),
        review=review_genai_lab,
    ),
    LABEL_STUDIO: FormatAdapter(
        LABEL_STUDIO,
        "annotations",
        author=lambda c: _user_name(c.get("completed_by")),
        submitted=lambda c: not c.get("was_cancelled"),
        submitted_at=lambda c: c.get("updated_at") or c.get("created_at"),
        review=review_label_studio,
    ),
    LABEL_STUDIO_LEGACY: FormatAdapter(
        LABEL_STUDIO_LEGACY,
        "completions",
        author=lambda c: _user_name(c.get("completed_by")),
        submitted=lambda c: not c.get("was_cancelled"),
        submitted_at=lambda c: c.get("created_at") or c.get("updated_at"),
        review=review_label_studio,
    ),
}


def detect_format(task: dict) -> FormatAdapter:
    if isinstance(task.get("annotations"), list):
        return ADAPTERS[LABEL_STUDIO]
    completions = task.get("completions")
    if isinstance(completions, list):
        genai = any(isinstance(c, dict) and ("created_username" in c or "submitted_at" in c) for c in completions)
        return ADAPTERS[GENAI_LAB if genai else LABEL_STUDIO_LEGACY]
    raise ValueError("has neither 'completions' (Generative AI Lab) nor 'annotations' (Label Studio)")


# --- parsing ---------------------------------------------------------------------------------


def load_export(raw: bytes | str) -> list[dict]:
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportError_(f"the file is not valid JSON: {exc}") from None
    except RecursionError:
        raise ImportError_("the file is not valid JSON for labtrain: it is nested too deeply") from None
    if isinstance(payload, dict):
        payload = payload.get("tasks", [payload]) if "data" not in payload else [payload]
    if not isinstance(payload, list):
        raise ImportError_("the file must hold a list of tasks (or one task object)")
    return payload


def _int_id(value: Any, what: str) -> int:
    """An integer id (or its decimal string) that fits the catalog's BIGINT."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{what} {value!r} is not an integer id")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value) if not isinstance(value, str) else repr(value[:50])
        raise ValueError(f"{what} {shown[:60]} is missing or not an integer id") from None
    if not -(2**63) <= number < 2**63:
        raise ValueError(f"{what} {number} is out of range (ids are 64-bit integers)")
    return number


def _tags(task: dict) -> list[str]:
    tags = task.get("tags")
    if tags is None and isinstance(task.get("meta"), dict):
        tags = task["meta"].get("tags")
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [t for t in tags.split(",")]
    if not isinstance(tags, list):
        raise ValueError(f"'tags' must be a list of strings, got {type(tags).__name__}")
    return sorted({str(t.get("name") if isinstance(t, dict) else t).strip() for t in tags} - {""})


def read_image(value: str, search_dirs: list[Path] | None) -> tuple[bytes, str]:
    """`data.image` as a data URI, or (`search_dirs` given: a local import, not an HTTP request)
    a path, absolute or inside one of `search_dirs`."""
    if value.startswith("data:"):
        header, _, body = value.partition(",")
        if ";base64" not in header:
            raise ValueError("image data URI must be base64-encoded")
        suffix = mimetypes.guess_extension(header[5:].split(";")[0]) or ".bin"
        return base64.b64decode(body, validate=False), suffix
    if search_dirs is None:
        raise ValueError(
            f"image {value[:200]!r} is not a data URI: over HTTP give images as data URIs "
            "(`labtrain import` inlines the files next to the export); the service reads no paths "
            "named by a request"
        )
    path = find_image_file(value, search_dirs)
    if path is None:
        raise ValueError(f"image {value!r} is neither a data URI nor a readable file")
    return path.read_bytes(), path.suffix or ".bin"


def find_image_file(name: str, search_dirs: list[Path]) -> Path | None:
    """An absolute path as is; else the path, or its file name, under one of `search_dirs`
    (Label Studio exports name uploads like `/data/upload/3/page.png`)."""
    candidates = [Path(name)] if Path(name).is_absolute() else []
    for base in search_dirs:
        inside = Path(base).resolve()
        candidates += [
            c for c in (base / name.lstrip("/"), base / Path(name).name) if c.resolve().is_relative_to(inside)
        ]  # no way out with '..' or a link
    return next((c for c in candidates if c.is_file()), None)


def _check_result(result: Any, text: str | None, ids: set[str]) -> list[tuple[str, str | None]]:
    """Validate one result; return its (kind, label) pairs for the label index."""
    if not isinstance(result, dict) or not isinstance(result.get("type"), str):
        raise ValueError("a result must be an object with a 'type'")
    kind = result["type"].lower()
    value = result.get("value") or {}
    rid = result.get("id")
    where = f"result {repr(rid)[:60]}" if rid else f"a {kind[:60]!r} result"
    if not isinstance(result.get("from_name", ""), str):
        raise ValueError(f"{where}: 'from_name' must be a string")
    if kind == "relation":
        for end in ("from_id", "to_id"):
            if not isinstance(result.get(end), str) or result[end] not in ids:
                raise ValueError(f"relation {end} {repr(result.get(end))[:60]} names no result of the same completion")
        labels = result.get("labels") or [None]
        if not isinstance(labels, list) or not all(isinstance(lab, str) or lab is None for lab in labels):
            raise ValueError("relation 'labels' must be a list of strings")
        return [(kind, lab) for lab in labels]
    if not isinstance(value, dict):
        raise ValueError(f"{where}: 'value' must be an object")
    if kind in SPAN_TYPES and "start" in value:
        start, end = value.get("start"), value.get("end")
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end:
            raise ValueError(f"{where}: span start/end {start!r}/{end!r} are not offsets with start < end")
        if text is not None and end > len(text):
            raise ValueError(f"{where}: span end {end} is past the end of the text ({len(text)} characters)")
    if kind in REGION_TYPES | {"rectangle"} or (kind in SPAN_TYPES and "x" in value):
        _check_box(value, f"{where}: value")
    label_key = {"choices": "choices", "taxonomy": "taxonomy"}.get(kind, kind if kind in value else "labels")
    labels = value.get(label_key)
    if kind in SPAN_TYPES | REGION_TYPES | {"choices"}:
        if not isinstance(labels, list) or not labels:
            raise ValueError(f"{where}: value.{label_key} must be a non-empty list")
        return [(kind, str(lab)) for lab in labels]
    return []


def _check_box(value: dict, where: str) -> None:
    """An image region: x, y, width, height in percent of the page (polygons: `points`)."""
    if "points" in value and "x" not in value:
        return
    numbers = [value.get(k) for k in ("x", "y", "width", "height")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise ValueError(f"{where} needs numbers x, y, width, height (percent of the image)")
    x, y, w, h = numbers
    if not (-0.5 <= x <= 100 and -0.5 <= y <= 100 and 0 <= w and 0 <= h and x + w <= 100.5 and y + h <= 100.5):
        raise ValueError(f"{where}: region x={x}, y={y}, width={w}, height={h} lies outside the image (percent)")


def check_ocr(ocr: Any) -> None:
    """`data.ocr`: words as {"text", "bbox": [x0, y0, x1, y1]} (pixels) or {"text", x, y, width, height}."""
    if not isinstance(ocr, list):
        raise ValueError("data.ocr must be a list of words")
    for i, word in enumerate(ocr):
        if not isinstance(word, dict) or not isinstance(word.get("text"), str):
            raise ValueError(f"data.ocr[{i}] must be an object with a string 'text'")
        box = word.get("bbox")
        if box is not None:
            if not (
                isinstance(box, list)
                and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in box)
            ):
                raise ValueError(f"data.ocr[{i}].bbox must be [x0, y0, x1, y1], pixels >= 0")
        else:
            _check_box(word, f"data.ocr[{i}]")


def parse_export(raw: bytes | str, image_dirs: list[Path] | None = None) -> ParsedExport:
    """Parse and validate a whole export; raises `ImportError_` naming the task index at fault.
    Images are data URIs; with `image_dirs` (a local import) also files: absolute paths, or
    names inside those folders."""
    tasks = load_export(raw)
    parsed = ParsedExport()
    seen_tasks: set[int] = set()
    for index, task in enumerate(tasks):
        try:
            _parse_task(task, parsed, seen_tasks, image_dirs)
        except ValueError as exc:
            task_id = task.get("id") if isinstance(task, dict) else None
            raise ImportError_(
                f"task #{index} (id {repr(task_id)[:60]}): {str(exc)[:2000]}; nothing was imported"
            ) from None
    return parsed


def _parse_task(task: Any, parsed: ParsedExport, seen_tasks: set[int], image_dirs: list[Path] | None) -> None:
    if not isinstance(task, dict):
        raise ValueError("a task must be a JSON object")
    if not isinstance(task.get("data"), dict):
        raise ValueError("'data' is missing or not an object")
    task_id = _int_id(task.get("id"), "task 'id'")
    if task_id in seen_tasks:
        raise ValueError(f"task id {task_id} appears twice in the file")
    seen_tasks.add(task_id)
    adapter = detect_format(task)
    parsed.formats.add(adapter.name)
    data = task["data"]
    text = data.get("text") if isinstance(data.get("text"), str) else None
    if "ocr" in data:
        check_ocr(data["ocr"])
    image = data.get("image") or data.get("ocr_image")
    if isinstance(image, str) and image:
        parsed.images[task_id] = read_image(image, image_dirs)
    parsed.tasks.append(
        {"task_id": task_id, "data": json.dumps(data, sort_keys=True), "tags": _tags(task), "format": adapter.name}
    )
    seen_completions: set[int] = set()
    for completion in task[adapter.completions_key]:
        if not isinstance(completion, dict):
            raise ValueError(f"each of '{adapter.completions_key}' must be an object")
        cid = _int_id(completion.get("id"), "completion 'id'")
        if cid in seen_completions:
            raise ValueError(f"completion id {cid} appears twice")
        seen_completions.add(cid)
        result = completion.get("result")
        if not isinstance(result, list):
            raise ValueError(f"completion {cid}: 'result' must be a list")
        ids = {r.get("id") for r in result if isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("id")}
        try:
            submitted = adapter.submitted(completion)
            review = adapter.review(completion)
            submitted_at = parse_timestamp(adapter.submitted_at(completion))
            updated_at = parse_timestamp(completion.get("updated_at"))
            for r in result:
                for kind, label in _check_result(r, text, ids):
                    parsed.labels.append(
                        {
                            "task_id": task_id,
                            "completion_id": cid,
                            "from_name": r.get("from_name") or "",
                            "result_type": kind,
                            "label": label,
                        }
                    )
        except ValueError as exc:
            raise ValueError(f"completion {cid}: {exc}") from None
        row = {
            "task_id": task_id,
            "completion_id": cid,
            "author": adapter.author(completion),
            "submitted": submitted,
            "submitted_at": submitted_at,
            "updated_at": updated_at,
            "honeypot": bool(completion.get("honeypot")),
            "review": review.verdict,
            "reviewer": review.reviewer,
            "reviewed_at": review.reviewed_at,
            "result": json.dumps(result, sort_keys=True),
        }
        row["row_hash"] = hashlib.sha256(repr(sorted(row.items())).encode()).hexdigest()[:16]
        parsed.completions.append(row)
