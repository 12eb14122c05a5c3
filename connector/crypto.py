"""Encryption of secrets at rest (TikTok access tokens, store webhook secrets).

Fernet (AES-128-CBC with HMAC-SHA256) from ``cryptography``: authenticated, so a tampered
ciphertext fails loudly instead of decrypting to garbage.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class TokenCipher:
    """Encrypts and decrypts short secrets with the configured key."""

    def __init__(self, token_encryption_key: str | None, secret_key: str) -> None:
        self._fernet = Fernet(token_encryption_key or derive_fernet_key(secret_key))

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext as text, safe for a database column."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; raises ValueError when the key changed or the value was altered."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a stored secret cannot be decrypted: TOKEN_ENCRYPTION_KEY or SECRET_KEY changed"
            ) from None


def derive_fernet_key(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY, for installs that set no TOKEN_ENCRYPTION_KEY."""
    digest = hashlib.sha256(b"connector-token-encryption:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)
