"""Licenses: which scopes (training:ner, ocr:training, ...) a job may run under, and how many
jobs each license holds at once. A job binds one slot of one license while it runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from cluster.scheduler import LicenseSlots
from labtrain.errors import ValidationError

TEXT_SCOPES = ("training:ner", "training:assertion", "training:classification", "training:relation")
KNOWN_SCOPES = TEXT_SCOPES + ("ocr:training", "ocr:inference")
FILE_NAMES = ("licenses.json", "licenses.yaml", "licenses.yml")


class LicenseError(ValidationError):
    """The license file is malformed; the message names the license and field."""


@dataclass
class License:
    id: str
    scopes: list[str]
    max_jobs: int
    holders: list[int] = field(default_factory=list)  # job ids

    @property
    def free(self) -> int:
        return self.max_jobs - len(self.holders)


def license_file(home: Path) -> Path | None:
    return next((home / n for n in FILE_NAMES if (home / n).exists()), None)


def parse_licenses(text: str, source: str) -> list[License]:
    """`{"licenses": [{"id": ..., "scopes": [...], "max_jobs": N}, ...]}` as JSON or YAML."""
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise LicenseError(f"{source} is neither JSON nor YAML: {exc}") from None
    entries = data.get("licenses") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LicenseError(f"{source} must hold a list under 'licenses'")
    licenses, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{source}: license #{i}"
        if not isinstance(entry, dict):
            raise LicenseError(f"{where} must be a mapping with id, scopes and max_jobs")
        lid = entry.get("id")
        if not isinstance(lid, str) or not lid:
            raise LicenseError(f"{where} needs a string 'id'")
        if lid in seen:
            raise LicenseError(f"{where}: id {lid!r} is used twice")
        seen.add(lid)
        scopes = entry.get("scopes")
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
            raise LicenseError(f"{where} ({lid}): 'scopes' must be a non-empty list of strings")
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown:
            raise LicenseError(f"{where} ({lid}): unknown scope(s) {unknown}; known: {', '.join(KNOWN_SCOPES)}")
        max_jobs = entry.get("max_jobs", 1)
        if not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1:
            raise LicenseError(f"{where} ({lid}): 'max_jobs' must be an integer >= 1")
        licenses.append(License(lid, scopes, max_jobs))
    return licenses


def default_licenses(cpu_bundles: int) -> list[License]:
    """Without a license file: every scope (text and OCR: the models are open) gets one slot per
    CPU bundle. A license file replaces this default and then limits each scope as it says."""
    return [License(f"embedded:{scope}", [scope], max(1, cpu_bundles)) for scope in KNOWN_SCOPES]


class LicensePool:
    """Binds licenses to jobs. Reloads the license file when it changes; a license that
    disappears keeps its running holders until they end."""

    def __init__(self, home: Path, cpu_bundles: int):
        self.home, self.cpu_bundles = home, cpu_bundles
        self.licenses: list[License] = []
        self._stamp: tuple | None = None
        self.reload()

    def reload(self) -> None:
        path = license_file(self.home)
        stamp = (str(path), path.stat().st_mtime_ns) if path else ("default", self.cpu_bundles)
        if stamp == self._stamp:
            return
        fresh = parse_licenses(path.read_text(), str(path)) if path else default_licenses(self.cpu_bundles)
        held = {lic.id: lic.holders for lic in self.licenses}
        for lic in fresh:
            lic.holders = held.pop(lic.id, [])
        self.licenses = fresh + [License(lid, [], 0, holders) for lid, holders in held.items() if holders]
        self._stamp = stamp

    def set_cpu_bundles(self, n: int) -> None:
        self.cpu_bundles = n
        self.reload()

    def slots(self) -> list[LicenseSlots]:
        """Each license's free slots, as the scheduler plans with them."""
        return [LicenseSlots(lic.id, tuple(lic.scopes), lic.free) for lic in self.licenses]

    def bind(self, license_id: str, job_id: int) -> None:
        """One slot of this license is the job's until it ends (`release`)."""
        next(lic for lic in self.licenses if lic.id == license_id).holders.append(job_id)

    def release(self, job_id: int) -> None:
        for lic in self.licenses:  # a search holds one slot per trial it runs at once
            lic.holders[:] = [h for h in lic.holders if h != job_id]

    def usage(self) -> list[dict]:
        return [{**asdict(lic), "in_use": len(lic.holders)} for lic in self.licenses]


def describe(path: Path | None) -> str:
    return str(path) if path else "embedded default (every scope, text and OCR, one slot per CPU)"
