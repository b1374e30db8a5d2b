"""Custom NER training scripts of a project: upload (a new version when the source changes),
list, and the file a training runs. The contract a script follows is `trainers.custom`'s."""

from __future__ import annotations

import hashlib
import re

from labtrain.errors import NotFound, ValidationError
from storage.blobs import BlobStore
from storage.history import now

SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SCRIPT_BYTES = 1_000_000


class ScriptStore:
    """Mixed into `Catalog` (which owns `con`, `home`, `project_id`, `config`)."""

    @property
    def script_blobs(self) -> BlobStore:
        return BlobStore(self.home / "scripts")

    def upload_script(self, project: str, name: str, source: str, uploaded_by: str | None) -> dict:
        """Keep a script for the project; only NER projects take scripts. The same source under
        the same name is the same version (an upload is idempotent)."""
        pid = self.project_id(project)
        offered = self.config(project).training_types()
        if "ner" not in offered:
            raise ValidationError(
                f"project {project!r} does not train NER (its config offers: "
                f"{', '.join(offered) or 'none'}); only NER projects take custom training scripts"
            )
        if not isinstance(name, str) or not SCRIPT_NAME.match(name):
            raise ValidationError(
                f"script name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        data = source.encode("utf-8")
        if not source.strip():
            raise ValidationError(f"script {name!r} is empty")
        if len(data) > MAX_SCRIPT_BYTES:
            raise ValidationError(f"script {name!r} has {len(data)} bytes; at most {MAX_SCRIPT_BYTES} are taken")
        try:
            compile(source, f"{name}.py", "exec")
        except SyntaxError as exc:
            raise ValidationError(f"script {name!r} is not valid Python: line {exc.lineno}: {exc.msg}") from None
        except ValueError as exc:  # e.g. a NUL byte
            raise ValidationError(f"script {name!r} is not valid Python: {exc}") from None
        sha = hashlib.sha256(data).hexdigest()
        latest = self.con.execute(
            "SELECT version, sha256 FROM scripts WHERE project_id = ? AND name = ? ORDER BY version DESC LIMIT 1",
            [pid, name],
        ).fetchone()
        if latest and latest[1] == sha:
            return self.script(project, name, latest[0])
        self.script_blobs.put(data, ".py")
        version = (latest[0] if latest else 0) + 1
        self.con.execute(
            "INSERT INTO scripts VALUES (?, ?, ?, ?, ?, ?, ?)", [pid, name, version, sha, len(data), uploaded_by, now()]
        )
        return self.script(project, name, version)

    def scripts(self, project: str) -> list[dict]:
        """Every script of the project, each with its latest version first among its versions."""
        pid = self.project_id(project)
        rows = self.con.execute(
            "SELECT name, version FROM scripts WHERE project_id = ? ORDER BY name, version DESC", [pid]
        ).fetchall()
        return [self.script(project, n, v) for n, v in rows]

    def script(self, project: str, name: str, version: int | None = None) -> dict:
        """One version of a script (the latest when `version` is None), with the path of its source."""
        pid = self.project_id(project)
        row = self.con.execute(
            "SELECT name, version, sha256, size, uploaded_by, uploaded_at FROM scripts WHERE project_id = ? AND "
            "name = ? AND (? IS NULL OR version = ?) ORDER BY version DESC LIMIT 1",
            [pid, name, version, version],
        ).fetchone()
        if not row:
            known = [
                n
                for (n,) in self.con.execute(
                    "SELECT DISTINCT name FROM scripts WHERE project_id = ? ORDER BY name", [pid]
                ).fetchall()
            ]
            raise NotFound(
                f"project {project!r} has no script {name!r}"
                + (f" version {version}" if version else "")
                + f" (its scripts: {', '.join(known) or 'none'}; upload one with `labtrain script upload`)"
            )
        keys = ("name", "version", "sha256", "size", "uploaded_by", "uploaded_at")
        script = dict(zip(keys, row))
        script["uploaded_at"] = str(script["uploaded_at"])
        script["project"] = project
        script["path"] = str(self.script_blobs.path(script["sha256"] + ".py"))
        return script

    def script_source(self, project: str, name: str, version: int | None = None) -> dict:
        script = self.script(project, name, version)
        with open(script["path"], encoding="utf-8") as f:
            return {**script, "source": f.read()}
