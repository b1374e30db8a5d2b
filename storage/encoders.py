"""The encoders users registered (`labtrain embeddings add`): the catalog's record of each (what
`labtrain.encoders.Encoder` says of it), listed beside the built-in embeddings, removed unless a
deployed model was trained on it."""

from __future__ import annotations

from labtrain.encoders import BUILT_IN, ENCODER_NAME, Encoder
from labtrain.errors import Conflict, Forbidden, NotFound, ValidationError
from storage.labeling_config import parse_labeling_config


class EncoderStore:
    """Mixed into `Catalog` (which owns `con`)."""

    def check_encoder_name(self, name: str) -> None:
        """Refuse a name that is malformed, built in or taken, before anything is copied."""
        if not isinstance(name, str) or not ENCODER_NAME.match(name):
            raise ValidationError(
                f"encoder name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        if name in BUILT_IN:
            raise Conflict(f"encoder name {name!r} is labtrain's own embeddings; choose another name")
        if self.con.execute("SELECT 1 FROM encoders WHERE name = ?", [name]).fetchone():
            raise Conflict(f"encoder {name!r} is registered already (remove it first to register it again)")

    def require_encoder_manager(self, user) -> None:
        """Admins, and owners or managers of a project, register and remove encoders."""
        if user.is_admin:
            return
        if not self.con.execute(
            "SELECT 1 FROM members WHERE username = ? AND role IN ('owner', 'manager') LIMIT 1", [user.name]
        ).fetchone():
            raise Forbidden(
                f"user {user.name!r} is no owner or manager of a project; registering or removing an encoder "
                "needs one of those roles (or an administrator)"
            )

    def add_encoder(self, encoder: Encoder, added_by: str | None) -> Encoder:
        self.check_encoder_name(encoder.name)
        self.con.execute(
            "INSERT INTO encoders (name, info, added_by) VALUES (?, ?, ?)",
            [encoder.name, encoder.model_dump_json(), added_by],
        )
        return self.encoder(encoder.name)

    def encoders(self) -> list[Encoder]:
        rows = self.con.execute("SELECT name FROM encoders ORDER BY name").fetchall()
        return [self.encoder(n) for (n,) in rows]

    def encoder(self, name: str) -> Encoder:
        row = self.con.execute("SELECT info, added_by, added_at FROM encoders WHERE name = ?", [name]).fetchone()
        if not row:
            known = [n for (n,) in self.con.execute("SELECT name FROM encoders ORDER BY name").fetchall()]
            raise NotFound(
                f"no encoder {name!r} is registered (registered: {', '.join(known) or 'none'}; add one with "
                "`labtrain embeddings add NAME SOURCE`)"
            )
        return Encoder.model_validate_json(row[0]).model_copy(
            update={"added_by": row[1], "added_at": row[2].isoformat(timespec="seconds")}
        )

    def remove_encoder(self, name: str) -> Encoder:
        """Forget an encoder (its files are the caller's to delete); refused while a model trained on it
        is deployed in a project's labeling config."""
        encoder = self.encoder(name)
        going = self.con.execute(
            "SELECT training_id FROM jobs WHERE embeddings = ? AND status IN ('queued', 'running') LIMIT 1", [name]
        ).fetchone()
        if going:
            raise Conflict(f"encoder {name!r} is in use: training {going[0]} trains on it; wait for it or cancel it")
        rows = self.con.execute(
            "SELECT m.name, p.name, p.config_xml FROM models m JOIN projects p USING (project_id) WHERE m.embeddings = ?",
            [name],
        ).fetchall()
        deployed = [(m, p) for m, p, xml in rows if m in parse_labeling_config(xml).summary()["models"]]
        if deployed:
            raise Conflict(
                f"encoder {name!r} is in use: model {deployed[0][0]!r} of project {deployed[0][1]!r} was trained on it "
                "and is deployed; deploy another model first"
            )
        self.con.execute("DELETE FROM encoders WHERE name = ?", [name])
        return encoder
