"""Projects linked to a Label Studio project: the link (where, which project, its token sealed,
the ML backend's password hashed), its state, and the catalog side of keeping the two in sync."""

from __future__ import annotations

import secrets

from labtrain.errors import Conflict, NotFound, ValidationError
from storage.history import now
from storage.secrets import SecretBox

BACKEND_USER = "labtrain"  # the user of Label Studio's basic auth when it calls labtrain's ML backend
LINK_FIELDS = (
    "url",
    "ls_project",
    "backend_url",
    "ml_backend_id",
    "webhook_id",
    "linked_by",
    "linked_at",
    "last_sync",
    "last_sync_tasks",
    "last_error",
)
STATE_FIELDS = {"ml_backend_id", "webhook_id", "last_sync", "last_sync_tasks", "last_error"}


class LabelStudioLinks:
    """Mixed into `Catalog` (which owns `con`, `home`, `project_id`)."""

    @property
    def secret_box(self) -> SecretBox:
        return SecretBox(self.home)

    def link_project(
        self, name: str, url: str, ls_project: int, token: str, backend_url: str, linked_by: str | None
    ) -> dict:
        """Record (or renew) the link; returns it with `backend_password`, the ML backend's basic-auth
        password, which is shown this once (only its hash is kept)."""
        pid = self.project_id(name)
        other = self.con.execute(
            "SELECT p.name FROM label_studio_links l JOIN projects p USING (project_id) "
            "WHERE l.url = ? AND l.ls_project = ? AND l.project_id <> ?",
            [url, ls_project, pid],
        ).fetchone()
        if other:
            raise Conflict(f"Label Studio project {ls_project} at {url} is already linked to project {other[0]!r}")
        password = "ltb_" + secrets.token_urlsafe(32)
        from storage.members import hash_token

        self.con.execute(
            "INSERT INTO label_studio_links (project_id, url, ls_project, token_sealed, backend_hash, backend_url, "
            "linked_by, linked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET url = excluded.url, "
            "ls_project = excluded.ls_project, token_sealed = excluded.token_sealed, backend_hash = "
            "excluded.backend_hash, backend_url = excluded.backend_url, linked_by = excluded.linked_by, "
            "linked_at = excluded.linked_at, ml_backend_id = NULL, webhook_id = NULL, last_error = NULL",
            [pid, url, ls_project, self.secret_box.seal(token), hash_token(password), backend_url, linked_by, now()],
        )
        return {**self.link(name), "backend_password": password}

    def link(self, name: str) -> dict:
        """The link as answers show it: no token, no password."""
        row = self.con.execute(
            f"SELECT {', '.join(LINK_FIELDS)} FROM label_studio_links WHERE project_id = ?", [self.project_id(name)]
        ).fetchone()
        if not row:
            raise NotFound(
                f"project {name!r} is not linked to Label Studio (labtrain link {name} --label-studio URL "
                "--ls-project ID --ls-token TOKEN)"
            )
        link = dict(zip(LINK_FIELDS, row))
        for key in ("linked_at", "last_sync"):
            link[key] = str(link[key]) if link[key] else None
        return {"project": name, **link, "backend_user": BACKEND_USER}

    def link_token(self, name: str) -> str:
        """The Label Studio token, opened, for the service's own calls (never for an answer)."""
        (sealed,) = self.con.execute(
            "SELECT token_sealed FROM label_studio_links WHERE project_id = ?", [self.project_id(name)]
        ).fetchone() or (None,)
        if sealed is None:
            raise NotFound(f"project {name!r} is not linked to Label Studio")
        return self.secret_box.open(sealed)

    def set_link_state(self, name: str, **changes) -> dict:
        unknown = set(changes) - STATE_FIELDS
        if unknown:
            raise ValidationError(f"link fields {sorted(unknown)} cannot be set")
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            self.con.execute(
                f"UPDATE label_studio_links SET {sets} WHERE project_id = ?", [*changes.values(), self.project_id(name)]
            )
        return self.link(name)

    def unlink_project(self, name: str) -> None:
        self.link(name)
        self.con.execute("DELETE FROM label_studio_links WHERE project_id = ?", [self.project_id(name)])

    def backend_allows(self, name: str, user: str, password: str) -> bool:
        """Whether Label Studio's basic auth opens the project's ML backend routes."""
        from storage.members import hash_token

        row = self.con.execute(
            "SELECT l.backend_hash FROM label_studio_links l JOIN projects p USING (project_id) WHERE p.name = ?",
            [name],
        ).fetchone()
        return bool(row) and user == BACKEND_USER and secrets.compare_digest(row[0], hash_token(password))

    def delete_completions(self, name: str, completion_ids: list[int]) -> int:
        """Annotations deleted in Label Studio: gone from the catalog, so from the next selection."""
        pid = self.project_id(name)
        with self.transaction():
            (n,) = self.con.execute(
                "SELECT count(*) FROM completions WHERE project_id = ? AND completion_id IN "
                "(SELECT unnest(?::BIGINT[]))",
                [pid, completion_ids],
            ).fetchone()
            for table in ("completion_labels", "completions"):
                self.con.execute(
                    f"DELETE FROM {table} WHERE project_id = ? AND completion_id IN (SELECT unnest(?::BIGINT[]))",
                    [pid, completion_ids],
                )
        return n

    def synced(self, name: str, tasks: int) -> dict:
        return self.set_link_state(name, last_sync=now(), last_sync_tasks=tasks, last_error=None)
