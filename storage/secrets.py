"""Secrets labtrain must keep and use again (a Label Studio API token): sealed with a key of the
home (`HOME/secret.key`, readable by its owner only), so that the catalog never holds them in clear.
Secrets labtrain only checks (bearer tokens, a backend's password) are kept as hashes instead."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from labtrain.errors import LabtrainError


class SecretBox:
    def __init__(self, home: Path):
        path = Path(home) / "secret.key"
        if not path.exists():
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
        self.fernet = Fernet(path.read_bytes().strip())

    def seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self.fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise LabtrainError(
                "a kept secret cannot be opened with this home's secret.key (was the key "
                "replaced?); link the project again"
            ) from None
