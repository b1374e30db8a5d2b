"""The DuckDB catalog: users and tokens, projects and their configs, members, imports; the
training history and models come from `storage.history`.

One `Catalog` owns one DuckDB file; in the service it lives inside the storage actor, so
the file has exactly one writer. Selection and snapshots live in `storage.selection`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import secrets
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from labtrain.errors import Conflict, Forbidden, ImportError_, LabtrainError, NotFound, ValidationError
from storage.blobs import BlobStore
from storage.encoders import EncoderStore
from storage.history import TrainingHistory
from storage.importers import ParsedExport, parse_export
from storage.labeling_config import LabelingConfig, parse_labeling_config
from storage.links import LabelStudioLinks
from storage.members import ROLE_RANK, ROLES, Member, User, hash_token, parse_member  # noqa: F401 (re-exported)
from storage.scripts import ScriptStore
from storage.selection import SelectionParams, preview, write_snapshots

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Catalog(TrainingHistory, ScriptStore, LabelStudioLinks, EncoderStore):
    def __init__(self, home: Path | str, data_check: Callable[[dict[str, dict], bool], dict] | None = None):
        """`data_check` judges a training's snapshot files before any job is recorded (it raises
        to refuse; it returns the checks the training keeps): the service's is
        `trainers.data_check.check_snapshot`. Without one, trainings record no checks."""
        self.home = Path(home).expanduser()
        self.data_check = data_check
        self.home.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.home / "blobs")
        self.con = duckdb.connect(str(self.home / "catalog.duckdb"))
        self.con.execute(importlib.resources.files("storage").joinpath("schema.sql").read_text())

    def close(self) -> None:
        self.con.close()

    @contextmanager
    def transaction(self):
        """All of the block's writes on `con`, or none of them."""
        self.con.begin()
        try:
            yield
            self.con.commit()
        except Exception:
            rollback(self.con)
            raise

    # --- users and tokens -----------------------------------------------------------------

    def create_user(self, name: str, is_admin: bool = False) -> str:
        """Create a user and return its bearer token (only its hash is kept)."""
        if not re.match(r"^[^\s:]{1,128}$", name or ""):
            raise LabtrainError(f"user name {name!r} must be 1-128 characters without spaces or ':'")
        if self.con.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
            raise Conflict(f"user {name!r} already exists")
        token = "lt_" + secrets.token_urlsafe(32)
        self.con.execute(
            "INSERT INTO users (name, token_hash, is_admin) VALUES (?, ?, ?)", [name, hash_token(token), is_admin]
        )
        return token

    def ensure_admin_token(self) -> str:
        """The admin token: created on first start and kept, readable by its owner only."""
        path = self.home / "admin_token"
        if path.exists():
            token = path.read_text().strip()
            if self.user_for_token(token):
                return token
            self.con.execute("DELETE FROM users WHERE name = 'admin'")
        token = self.create_user("admin", is_admin=True)
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

    def user_for_token(self, token: str) -> User | None:
        row = self.con.execute("SELECT name, is_admin FROM users WHERE token_hash = ?", [hash_token(token)]).fetchone()
        return User(*row) if row else None

    def list_users(self) -> list[dict]:
        rows = self.con.execute("SELECT name, is_admin, created_at FROM users ORDER BY name").fetchall()
        return [{"name": n, "is_admin": a, "created_at": str(c)} for n, a, c in rows]

    # --- projects, configs, members --------------------------------------------------------

    def create_project(self, name: str, config_xml: str, language: str, owner: str) -> dict:
        if not PROJECT_NAME.match(name or ""):
            raise ValidationError(f"project name {name[:100]!r}: use 1-64 letters, digits, '_', '.', '-'")
        parse_labeling_config(config_xml)
        if self.con.execute("SELECT 1 FROM projects WHERE name = ?", [name]).fetchone():
            raise Conflict(f"project {name!r} already exists")
        with self.transaction():
            (pid,) = self.con.execute(
                "INSERT INTO projects (name, language, config_xml, created_by) VALUES (?, ?, ?, ?) "
                "RETURNING project_id",
                [name, language, config_xml, owner],
            ).fetchone()
            self.con.execute("INSERT INTO members VALUES (?, ?, 'owner', 0)", [pid, owner])
        return self.project(name)

    def project_id(self, name: str) -> int:
        row = self.con.execute("SELECT project_id FROM projects WHERE name = ?", [name]).fetchone()
        if not row:
            raise NotFound(f"project {name!r} does not exist")
        return row[0]

    def project(self, name: str) -> dict:
        pid = self.project_id(name)
        name, language, created_by, created_at, xml = self.con.execute(
            "SELECT name, language, created_by, created_at, config_xml FROM projects WHERE project_id = ?", [pid]
        ).fetchone()
        tasks, completions, submitted = self.con.execute(
            "SELECT (SELECT count(*) FROM tasks WHERE project_id = $1), count(*), count(*) FILTER (submitted) "
            "FROM completions WHERE project_id = $1",
            [pid],
        ).fetchone()
        return {
            "name": name,
            "language": language,
            "created_by": created_by,
            "created_at": str(created_at),
            "tasks": tasks,
            "completions": completions,
            "submitted_completions": submitted,
            "training_types": parse_labeling_config(xml).training_types(),
        }

    def list_projects(self, user: User) -> list[dict]:
        names = self.con.execute(
            "SELECT name FROM projects p WHERE ? OR EXISTS (SELECT 1 FROM members m WHERE "
            "m.project_id = p.project_id AND m.username = ?) ORDER BY name",
            [user.is_admin, user.name],
        ).fetchall()
        return [self.project(n) for (n,) in names]

    def config(self, name: str) -> LabelingConfig:
        (xml,) = self.con.execute(
            "SELECT config_xml FROM projects WHERE project_id = ?", [self.project_id(name)]
        ).fetchone()
        return parse_labeling_config(xml)

    def set_config(self, name: str, config_xml: str) -> LabelingConfig:
        config = parse_labeling_config(config_xml)
        self.con.execute("UPDATE projects SET config_xml = ? WHERE project_id = ?", [config_xml, self.project_id(name)])
        return config

    def role_of(self, name: str, user: User) -> str | None:
        if user.is_admin:
            return "owner"
        row = self.con.execute(
            "SELECT role FROM members WHERE project_id = ? AND username = ?", [self.project_id(name), user.name]
        ).fetchone()
        return row[0] if row else None

    def require_role(self, name: str, user: User, least: str) -> str:
        """The user's role in the project, if it is at least `least`; else `Forbidden`."""
        role = self.role_of(name, user)
        if role is None:
            raise Forbidden(f"user {user.name!r} is not a member of project {name!r}")
        if ROLE_RANK[role] < ROLE_RANK[least]:
            raise Forbidden(f"user {user.name!r} is {role} of project {name!r}; this needs {least} or above")
        return role

    def members(self, name: str) -> list[dict]:
        rows = self.con.execute(
            "SELECT username, role, priority FROM members WHERE project_id = ? ORDER BY priority DESC, username",
            [self.project_id(name)],
        ).fetchall()
        return [{"username": u, "role": r, "priority": p} for u, r, p in rows]

    def set_members(self, name: str, members: list[Member], remove: list[str] = ()) -> list[dict]:
        pid = self.project_id(name)
        for member in members:
            if member.role not in ROLES:
                raise ValidationError(
                    f"member {member.username!r}: role {member.role!r} is not one of {', '.join(ROLES)}"
                )
        with self.transaction():
            for member in members:
                self.con.execute(
                    "INSERT INTO members VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET role = excluded.role, "
                    "priority = excluded.priority",
                    [pid, member.username, member.role, member.priority],
                )
            for username in remove:
                self.con.execute("DELETE FROM members WHERE project_id = ? AND username = ?", [pid, username])
            (owners,) = self.con.execute(
                "SELECT count(*) FROM members WHERE project_id = ? AND role = 'owner'", [pid]
            ).fetchone()
            if owners == 0:
                raise Conflict(f"project {name!r} would be left without an owner")
        return self.members(name)

    # --- import ----------------------------------------------------------------------------

    def import_file(
        self, name: str, raw: bytes, imported_by: str | None = None, image_dirs: list[Path] | None = None
    ) -> dict:
        """A local import: images may also be files (absolute paths, or inside `image_dirs`)."""
        parsed = parse_export(raw, list(image_dirs or []))
        return self.import_parsed(name, parsed, hashlib.sha256(raw).hexdigest(), imported_by)

    def import_parsed(
        self, name: str, parsed: ParsedExport, sha256: str, imported_by: str | None, mirror: bool = False
    ) -> dict:
        """Write a parsed export in one transaction; idempotent on (project, task, completion). With
        `mirror` (a linked Label Studio project's whole task list), the tasks and completions it no
        longer has are deleted in the same transaction."""
        pid = self.project_id(name)
        check_labels(self.config(name), parsed)
        image_keys = {tid: self.blobs.put(data, suffix) for tid, (data, suffix) in parsed.images.items()}
        tasks = pa.Table.from_pylist(
            [{**t, "image": image_keys.get(t["task_id"])} for t in parsed.tasks],
            schema=pa.schema(
                [
                    ("task_id", pa.int64()),
                    ("data", pa.string()),
                    ("tags", pa.list_(pa.string())),
                    ("format", pa.string()),
                    ("image", pa.string()),
                ]
            ),
        )
        completions = pa.Table.from_pylist(parsed.completions, schema=_COMPLETION_SCHEMA)
        labels = pa.Table.from_pylist(parsed.labels, schema=_LABEL_SCHEMA)
        con = self.con.cursor()  # its own cursor: views registered here stay private to the import
        con.register("new_tasks", tasks)
        con.register("new_completions", completions)
        con.register("new_labels", labels)
        con.begin()
        try:
            inserted, updated, unchanged = con.execute(
                "SELECT count(*) FILTER (c.row_hash IS NULL), count(*) FILTER (c.row_hash <> n.row_hash), "
                "count(*) FILTER (c.row_hash = n.row_hash) FROM new_completions n LEFT JOIN completions c "
                "ON c.project_id = ? AND c.task_id = n.task_id AND c.completion_id = n.completion_id",
                [pid],
            ).fetchone()
            con.execute(
                "INSERT INTO tasks SELECT ?, task_id, data, tags, image, format FROM new_tasks "
                "ON CONFLICT DO UPDATE SET data = excluded.data, tags = excluded.tags, "
                "image = excluded.image, format = excluded.format",
                [pid],
            )
            con.execute(
                "DELETE FROM completion_labels l USING new_completions n WHERE l.project_id = ? "
                "AND l.task_id = n.task_id AND l.completion_id = n.completion_id",
                [pid],
            )
            con.execute(
                "INSERT INTO completions SELECT ?, task_id, completion_id, author, submitted, submitted_at, "
                "updated_at, honeypot, review, reviewer, reviewed_at, result, row_hash FROM new_completions "
                "ON CONFLICT DO UPDATE SET author = excluded.author, submitted = excluded.submitted, "
                "submitted_at = excluded.submitted_at, updated_at = excluded.updated_at, "
                "honeypot = excluded.honeypot, review = excluded.review, reviewer = excluded.reviewer, "
                "reviewed_at = excluded.reviewed_at, result = excluded.result, row_hash = excluded.row_hash",
                [pid],
            )
            con.execute(
                "INSERT INTO completion_labels SELECT ?, task_id, completion_id, from_name, result_type, "
                "label FROM new_labels",
                [pid],
            )
            deleted = 0
            if mirror:
                (deleted,) = con.execute(
                    "SELECT count(*) FROM completions c WHERE c.project_id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM new_completions n WHERE n.task_id = c.task_id AND "
                    "n.completion_id = c.completion_id)",
                    [pid],
                ).fetchone()
                for table in ("completion_labels", "completions"):
                    con.execute(
                        f"DELETE FROM {table} x WHERE x.project_id = ? AND NOT EXISTS (SELECT 1 FROM "
                        "new_completions n WHERE n.task_id = x.task_id AND n.completion_id = x.completion_id)",
                        [pid],
                    )
                con.execute(
                    "DELETE FROM tasks x WHERE x.project_id = ? AND NOT EXISTS (SELECT 1 FROM new_tasks n "
                    "WHERE n.task_id = x.task_id)",
                    [pid],
                )
            con.execute(
                "INSERT INTO imports (project_id, sha256, formats, tasks, completions, inserted, updated, "
                "unchanged, imported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    pid,
                    sha256,
                    sorted(parsed.formats),
                    len(parsed.tasks),
                    len(parsed.completions),
                    inserted,
                    updated,
                    unchanged,
                    imported_by,
                ],
            )
            con.commit()
        except Exception:
            rollback(con)
            raise
        finally:
            con.close()
        return {
            "project": name,
            "formats": sorted(parsed.formats),
            "tasks": len(parsed.tasks),
            "completions": len(parsed.completions),
            "inserted": inserted,
            "updated": updated,
            "unchanged": unchanged,
            "images": len(image_keys),
            **({"deleted": deleted} if mirror else {}),
        }

    # --- selection and snapshots -------------------------------------------------------------

    def select(self, name: str, params: SelectionParams, limit: int | None = None) -> dict:
        return preview(self.con, self.project_id(name), self.config(name), params, limit)

    def snapshot(
        self, name: str, params: SelectionParams, types: list[str] | None = None, out_dir: Path | None = None
    ) -> dict:
        """Write the selection's Parquet snapshot (default: a new folder under the home)."""
        if out_dir is None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            out_dir = self.home / "snapshots" / name / stamp
        return write_snapshots(
            self.con, self.project_id(name), self.config(name), params, out_dir, types, self.blobs.root
        )


_COMPLETION_SCHEMA = pa.schema(
    [
        ("task_id", pa.int64()),
        ("completion_id", pa.int64()),
        ("author", pa.string()),
        ("submitted", pa.bool_()),
        ("submitted_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
        ("honeypot", pa.bool_()),
        ("review", pa.string()),
        ("reviewer", pa.string()),
        ("reviewed_at", pa.timestamp("us")),
        ("result", pa.string()),
        ("row_hash", pa.string()),
    ]
)


def rollback(con) -> None:
    """Roll back, unless the failure was the commit itself (DuckDB has then ended the transaction,
    e.g. when the disk is full): the original error is the one to raise."""
    try:
        con.rollback()
    except duckdb.TransactionException:
        pass


def check_labels(config: LabelingConfig, parsed: ParsedExport) -> None:
    """Every label of a control the config has must be one of that control's labels (a typo or
    a label of another project would otherwise train a model on it); nothing is imported if not."""
    allowed: dict[str, set[str]] = {g.name: {lab.value for lab in g.labels} for g in config.label_groups}
    allowed.update({g.name: set(g.choices) for g in config.choices})
    for row in parsed.labels:
        known = allowed.get(row["from_name"])
        if known is not None and row["label"] is not None and row["label"] not in known:
            raise ImportError_(
                f"task {row['task_id']}, completion {row['completion_id']}: label {row['label'][:200]!r} "
                f"of {row['from_name']!r} is not in the labeling config (its labels: "
                f"{', '.join(sorted(known))}); add it to the config first; nothing was imported"
            )


_LABEL_SCHEMA = pa.schema(
    [
        ("task_id", pa.int64()),
        ("completion_id", pa.int64()),
        ("from_name", pa.string()),
        ("result_type", pa.string()),
        ("label", pa.string()),
    ]
)
