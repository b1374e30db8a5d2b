"""Users, members and roles as plain values (no DuckDB here: the CLI parses members with it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from labtrain.errors import LabtrainError

ROLES = ("owner", "manager", "reviewer", "annotator")
ROLE_RANK = {role: rank for rank, role in enumerate(reversed(ROLES))}  # annotator 0 ... owner 3


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool


@dataclass(frozen=True)
class Member:
    username: str
    role: str
    priority: int = 0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_member(spec: str) -> Member:
    """`name:role[:priority]`, as `labtrain members --set` takes it."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise LabtrainError(f"member {spec!r}: use NAME:ROLE[:PRIORITY]")
    role = parts[1].lower()
    if role not in ROLES:
        raise LabtrainError(f"member {spec!r}: role {parts[1]!r} is not one of {', '.join(ROLES)}")
    try:
        priority = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise LabtrainError(f"member {spec!r}: priority {parts[2]!r} is not an integer") from None
    return Member(parts[0], role, priority)
