"""Which completion of which task a training uses, as SQL over DuckDB, and its Parquet snapshot.

Per task: tag filter -> only submitted completions -> rejected ones never -> a
reviewer-accepted completion wins (the latest accepted) -> with `reviewed_only`, tasks
without one are left out -> else the author with the highest member priority (not a
member: lowest; ties: latest submitted). Then a seeded validation split or Test/Train tags.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from labtrain.errors import SelectionError
from storage.importers import REGION_TYPES, SPAN_TYPES
from storage.labeling_config import LabelingConfig

RECOMMENDED_EXAMPLES = 40
DEFAULT_VALIDATION_SPLIT = 0.2


@dataclass
class SelectionParams:
    tags: list[str] | None = None
    reviewed_only: bool = False
    validation_split: float | None = None
    split_seed: int = 0  # which tasks the validation split draws (not the training's seed)
    test_tag: str | None = None
    train_tag: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> SelectionParams:
        """From a request's `selection` (one stored before the rename names the split seed `seed`)."""
        data = dict(data)
        if "seed" in data:
            data.setdefault("split_seed", data.pop("seed"))
        return cls(**data)

    def checked(self) -> SelectionParams:
        """Validated copy with the default split filled in."""
        if self.test_tag and self.validation_split is not None:
            raise SelectionError("give either a validation split or a test tag, not both")
        if self.train_tag and not self.test_tag:
            raise SelectionError("a train tag needs a test tag (--test-tag) too")
        split = self.validation_split
        if not self.test_tag:
            split = DEFAULT_VALIDATION_SPLIT if split is None else split
            if not (isinstance(split, (int, float)) and 0 <= split < 1) or math.isnan(split):
                raise SelectionError(f"validation_split {split!r} must be a number in [0, 1)")
        tags = sorted({t.strip() for t in self.tags or [] if t.strip()}) or None
        return SelectionParams(
            tags, bool(self.reviewed_only), split, int(self.split_seed), self.test_tag or None, self.train_tag or None
        )


SELECTION_SQL = """
CREATE OR REPLACE TEMP TABLE selection AS
WITH candidates AS (
    SELECT c.task_id, c.completion_id, c.author, c.review, c.reviewer, c.reviewed_at, c.submitted_at,
           m.priority, t.tags
    FROM completions c
    JOIN tasks t ON t.project_id = c.project_id AND t.task_id = c.task_id
    LEFT JOIN members m ON m.project_id = c.project_id AND m.username = c.author
    WHERE c.project_id = $project
      AND c.submitted
      AND c.review IS DISTINCT FROM 'rejected'
      AND ($tags::VARCHAR[] IS NULL OR list_has_any(t.tags, $tags::VARCHAR[]))
),
chosen AS (
    SELECT * FROM candidates
    QUALIFY row_number() OVER (
        PARTITION BY task_id
        ORDER BY review IS NOT DISTINCT FROM 'accepted' DESC, reviewed_at DESC NULLS LAST,
                 priority DESC NULLS LAST, submitted_at DESC NULLS LAST, completion_id DESC) = 1
),
eligible AS (
    SELECT * FROM chosen WHERE NOT $reviewed_only OR review = 'accepted'
)
SELECT task_id, completion_id, author, review, priority,
       CASE WHEN review = 'accepted' THEN 'accepted by ' || coalesce(reviewer, 'a reviewer')
            WHEN priority IS NULL THEN 'author is not a member (lowest priority)'
            ELSE 'highest member priority (' || priority || ')' END AS reason,
       CASE WHEN $test_tag::VARCHAR IS NOT NULL THEN
                CASE WHEN list_contains(tags, $test_tag::VARCHAR) THEN 'test'
                     WHEN $train_tag::VARCHAR IS NULL OR list_contains(tags, $train_tag::VARCHAR) THEN 'train' END
            WHEN row_number() OVER (ORDER BY md5($seed::VARCHAR || ':' || task_id::VARCHAR))
                 <= round(count(*) OVER () * $split::DOUBLE) THEN 'test'
            ELSE 'train' END AS split
FROM eligible
"""


def select_completions(con: duckdb.DuckDBPyConnection, project_id: int, params: SelectionParams) -> int:
    """Build the temp table `selection` (one row per used task); return how many tasks it holds
    (tasks that fall in neither the train nor the test tag are kept with split NULL)."""
    p = params.checked()
    con.execute(
        SELECTION_SQL,
        {
            "project": project_id,
            "tags": p.tags,
            "reviewed_only": p.reviewed_only,
            "test_tag": p.test_tag,
            "train_tag": p.train_tag,
            "seed": p.split_seed,
            "split": p.validation_split or 0.0,
        },
    )
    return con.execute("SELECT count(*) FROM selection").fetchone()[0]


def _type_of_label(config: LabelingConfig, from_name: str, result_type: str, label: str | None) -> str | None:
    text_groups = {g.name for g in config.text_groups}
    image_groups = {g.name for g in config.label_groups if g.on_image}
    if result_type == "relation":
        return "relation" if label in config.relations else None
    if result_type == "choices":
        group = config.classification_group
        return "classification" if group and from_name == group.name and label in group.choices else None
    if from_name in image_groups and result_type in SPAN_TYPES | REGION_TYPES:
        return "visual_ner" if label in config.visual_labels else None
    if from_name in text_groups and result_type in SPAN_TYPES:
        if label in config.assertion_labels:
            return "assertion"
        if label in config.ner_labels:
            return "ner"
    return None


def label_counts(con: duckdb.DuckDBPyConnection, project_id: int, config: LabelingConfig) -> tuple[dict, list[str]]:
    """Examples per training type and label, split into train/test, over the current `selection`;
    and warnings for labels under the recommended count or missing from the config."""
    rows = con.execute(
        "SELECT l.from_name, l.result_type, l.label, s.split, count(*) FROM selection s "
        "JOIN completion_labels l ON l.project_id = ? AND l.task_id = s.task_id "
        "AND l.completion_id = s.completion_id WHERE s.split IS NOT NULL GROUP BY ALL",
        [project_id],
    ).fetchall()
    counts: dict[str, dict[str, dict[str, int]]] = {
        t: {lab: {"train": 0, "test": 0} for lab in config.labels_for(t)} for t in config.training_types()
    }
    unknown: dict[tuple[str, str | None], int] = {}
    for from_name, result_type, label, split, n in rows:
        training_type = _type_of_label(config, from_name, result_type, label)
        if training_type in counts:
            counts[training_type][label][split] += n
        else:
            key = (result_type, label)
            unknown[key] = unknown.get(key, 0) + n
    warnings = []
    for training_type, by_label in counts.items():
        for label, n in by_label.items():
            total = n["train"] + n["test"]
            if total < RECOMMENDED_EXAMPLES:
                warnings.append(
                    f"{training_type} label {label!r} has {total} examples; "
                    f"{RECOMMENDED_EXAMPLES}-50 per label are recommended"
                )
    for (result_type, label), n in sorted(unknown.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        warnings.append(f"label {label!r} ({result_type}) occurs {n} times but no training type of the config uses it")
    return counts, warnings


def preview(
    con: duckdb.DuckDBPyConnection,
    project_id: int,
    config: LabelingConfig,
    params: SelectionParams,
    limit: int | None = None,
) -> dict:
    """What a training would use: per task the chosen completion and its split, counts, warnings."""
    p = params.checked()
    select_completions(con, project_id, p)
    n_train, n_test, n_none = con.execute(
        "SELECT count(*) FILTER (split = 'train'), count(*) FILTER (split = 'test'), count(*) FILTER "
        "(split IS NULL) FROM selection"
    ).fetchone()
    (n_tasks,) = con.execute("SELECT count(*) FROM tasks WHERE project_id = ?", [project_id]).fetchone()
    counts, warnings = label_counts(con, project_id, config)
    if n_none:
        warnings.append(
            f"{n_none} tasks carry neither the test tag {p.test_tag!r} nor the train tag "
            f"{p.train_tag!r} and are left out"
        )
    if n_train + n_test == 0:
        warnings.append("no task qualifies: check the tags, the review filter and that completions are submitted")
    sql = (
        "SELECT task_id, completion_id, author, review, reason, split FROM selection "
        "WHERE split IS NOT NULL ORDER BY task_id"
    )
    rows = con.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
    return {
        "params": asdict(p),
        "tasks_in_project": n_tasks,
        "tasks_selected": n_train + n_test,
        "train": n_train,
        "test": n_test,
        "skipped": n_tasks - n_train - n_test,
        "tasks": [dict(zip(("task_id", "completion_id", "author", "review", "reason", "split"), r)) for r in rows],
        "label_counts": counts,
        "warnings": warnings,
    }


def write_snapshots(
    con: duckdb.DuckDBPyConnection,
    project_id: int,
    config: LabelingConfig,
    params: SelectionParams,
    out_dir: Path,
    types: list[str] | None = None,
    blob_root: Path | None = None,
) -> dict:
    """Snapshot the selection to Parquet, one file per training type, plus `manifest.json`.
    Each file holds the chosen completion of every selected task with only the results that
    type reads (see `LabelingConfig.result_rule`; Visual NER also keeps the OCR transcriptions,
    `textarea` and `rectangle` results), and `image_path`, the task image's file in the blob store
    under `blob_root`."""
    p = params.checked()
    offered = config.training_types()
    types = types or offered
    for t in types:
        if t not in offered:
            raise SelectionError(
                f"training type {t!r} is not offered by this project's config (offered: {', '.join(offered) or 'none'})"
            )
    select_completions(con, project_id, p)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text_key = next(iter(config.texts.values()), "text")
    files = {}
    for training_type in types:
        rule = config.result_rule(training_type)
        path = out_dir / f"{training_type}.parquet"
        con.execute(
            "CREATE OR REPLACE TEMP TABLE snapshot AS "
            "SELECT s.task_id, s.completion_id, s.author, s.split, t.data, "
            "json_extract_string(t.data, '$.' || $text_key) AS text, t.image, "
            "CASE WHEN t.image IS NOT NULL AND $blob_root::VARCHAR IS NOT NULL "
            "     THEN $blob_root::VARCHAR || '/' || substr(t.image, 1, 2) || '/' || t.image END AS image_path, "
            "to_json(list_filter(from_json(c.result, '[\"JSON\"]'), lambda r: "
            "  list_contains($types, lower(r->>'type')) "
            "  AND (lower(r->>'type') IN ('relation', 'textarea', 'rectangle') "
            "       OR list_contains($names, r->>'from_name')) "
            "  AND ($labels::VARCHAR[] IS NULL OR r->>'type' NOT IN ('labels', 'hypertextlabels') "
            "       OR list_contains($labels::VARCHAR[], json_extract_string(r, '$.value.labels[0]')))"
            "))::VARCHAR AS result "
            "FROM selection s JOIN tasks t ON t.project_id = $project AND t.task_id = s.task_id "
            "JOIN completions c ON c.project_id = $project AND c.task_id = s.task_id "
            "AND c.completion_id = s.completion_id WHERE s.split IS NOT NULL ORDER BY s.task_id",
            {
                "project": project_id,
                "text_key": text_key,
                "types": sorted(rule.result_types),
                "blob_root": None if blob_root is None else str(blob_root),
                "names": sorted(rule.from_names),
                "labels": None if rule.labels is None else sorted(rule.labels),
            },
        )
        con.execute(f"COPY snapshot TO '{_sql_path(path)}' (FORMAT parquet, COMPRESSION zstd)")
        (rows,) = con.execute("SELECT count(*) FROM snapshot").fetchone()
        files[training_type] = {"path": str(path), "rows": rows, "labels": config.labels_for(training_type)}
    con.execute("DROP TABLE IF EXISTS snapshot")
    manifest = {"params": asdict(p), "files": files}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
