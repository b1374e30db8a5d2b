"""Content-addressed blob store for task images under the home folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, data: bytes, suffix: str = "") -> str:
        """Store bytes once; the key is their sha256 plus the suffix. Writing is atomic."""
        key = hashlib.sha256(data).hexdigest() + suffix
        path = self.path(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return key

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key
