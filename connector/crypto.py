"""Encryption of secrets at rest (access tokens, webhook secrets, kept webhook bodies), and
what makes a key strong enough to protect them.

Fernet (AES-128-CBC with HMAC-SHA256) from ``cryptography``: authenticated, so a tampered
ciphertext, or one written with another key, fails loudly instead of decrypting to garbage.
``MultiFernet`` encrypts with its first key and decrypts with any of them
(https://cryptography.io/en/latest/fernet/#cryptography.fernet.MultiFernet), which is how
``SECRET_KEY_FALLBACKS`` changes a key without downtime: what the old key wrote still reads,
everything new is written with the current key, and ``connector secrets rotate`` re-encrypts
the rest.
"""

from __future__ import annotations

import base64
import hashlib
import math
import string
from collections import Counter
from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_ADVICE = (
    'generate one with python -c "import secrets; print(secrets.token_urlsafe(48))", and if '
    "the connector already stores secrets, keep the old key in SECRET_KEY_FALLBACKS until "
    "`connector secrets rotate` has run"
)
"""How to fix a missing or weak key, for every message that refuses one."""

MIN_KEY_BYTES = 32
MIN_KEY_BITS = 256  # 32 random bytes
# Even a random 64-character hex key has about 3.5 bits per character by its own letter
# counts; "changemechangeme..." has 2.75 and "aaaa..." none.
MIN_BITS_PER_CHARACTER = 3.0
# Values people paste instead of a key: placeholders, and the example key of Flask's
# quickstart (https://flask.palletsprojects.com/en/stable/quickstart/#sessions), copied
# into countless projects.
PLACEHOLDER_WORDS = (
    "changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me",
    "secret", "password", "passwd", "insecure", "example", "default", "placeholder",
)  # fmt: skip
BASE64_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+/=-_")
PUBLISHED_KEYS = frozenset({"192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf"})


class UndecryptableSecret(ValueError):
    """A stored value that none of the configured keys decrypts: SECRET_KEY (or
    TOKEN_ENCRYPTION_KEY) changed without the old one in SECRET_KEY_FALLBACKS, or the value
    was altered. An operator's problem, never the caller's input."""


class TokenCipher:
    """Encrypts with the current key; decrypts with the current key or any former one."""

    def __init__(
        self,
        token_encryption_key: str | None,
        secret_key: str,
        secret_key_fallbacks: Iterable[str] = (),
    ) -> None:
        current, *older = fernet_keys(token_encryption_key, secret_key, secret_key_fallbacks)
        self._current = Fernet(current)
        self._older = [Fernet(key) for key in older]
        self._fernet = MultiFernet([self._current, *self._older])

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext as text, safe for a database column."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext.

        Raises:
            UndecryptableSecret: no configured key wrote it, or it was altered.
        """
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret(UNDECRYPTABLE_MESSAGE) from None

    def rotate(self, ciphertext: str) -> str:
        """The same plaintext, encrypted with the current key.

        Raises:
            UndecryptableSecret: as :meth:`decrypt`.
        """
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret(UNDECRYPTABLE_MESSAGE) from None

    def key_of(self, ciphertext: str) -> str | None:
        """Which key wrote it: ``CURRENT``, ``FALLBACK`` (to rotate), or None (no configured
        key). Checks the signature without decrypting, which is what makes checking every
        stored secret at start-up cheap."""
        token = ciphertext.encode()
        if _signed_by(self._current, token):
            return CURRENT
        if any(_signed_by(fernet, token) for fernet in self._older):
            return FALLBACK
        return None


CURRENT = "current"
FALLBACK = "fallback"


UNDECRYPTABLE_MESSAGE = (
    "a stored secret cannot be decrypted: TOKEN_ENCRYPTION_KEY or SECRET_KEY changed (put the "
    "previous SECRET_KEY in SECRET_KEY_FALLBACKS, or enter the secret again)"
)


def _signed_by(fernet: Fernet, token: bytes) -> bool:
    try:
        fernet.extract_timestamp(token)
    except InvalidToken:
        return False
    return True


def fernet_keys(
    token_encryption_key: str | None, secret_key: str, secret_key_fallbacks: Iterable[str]
) -> list[bytes]:
    """The Fernet keys, the one that encrypts first.

    TOKEN_ENCRYPTION_KEY, when set, encrypts; what SECRET_KEY encrypted before it was set
    still decrypts. Each fallback decrypts through its derived key, and also directly when it
    is itself a Fernet key, so a former TOKEN_ENCRYPTION_KEY can be listed there too.
    """
    keys = [token_encryption_key.encode()] if token_encryption_key else []
    keys.append(derive_fernet_key(secret_key))
    for fallback in secret_key_fallbacks:
        keys.append(derive_fernet_key(fallback))
        if _is_fernet_key(fallback):
            keys.append(fallback.encode())
    return list(dict.fromkeys(keys))


def derive_fernet_key(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY, for installs that set no TOKEN_ENCRYPTION_KEY."""
    digest = hashlib.sha256(b"connector-token-encryption:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _is_fernet_key(key: str) -> bool:
    try:
        Fernet(key)
    except ValueError:
        return False
    return True


def key_weakness(key: str) -> str | None:
    """Why ``key`` is too weak to be a SECRET_KEY, or None when it will do.

    Strong means at least 32 random bytes. Randomness cannot be measured from one string, so
    this refuses what is certainly weak: short keys, placeholders and published examples, and
    keys whose characters carry fewer than 256 bits by the alphabet they use (a 64-character
    hex key, what Heroku's ``generator: secret`` makes, is exactly 256), and keys that repeat
    a pattern or a few characters.
    """
    size = len(key.encode())
    if size < MIN_KEY_BYTES:
        return f"{size} bytes; at least {MIN_KEY_BYTES} random bytes are needed"
    lowered = key.lower()
    if lowered in PUBLISHED_KEYS or lowered.startswith("test"):
        return "a published example or test value"
    if any(word in lowered for word in PLACEHOLDER_WORDS):
        return "it contains a placeholder word"
    if (bits := _alphabet_bits(key)) < MIN_KEY_BITS:
        return f"about {bits:.0f} random bits; at least {MIN_KEY_BITS} are needed"
    if _is_periodic(key) or _bits_per_character(key) < MIN_BITS_PER_CHARACTER:
        return "it repeats itself or a few characters"
    return None


def _alphabet_bits(key: str) -> float:
    """The most randomness ``key`` can hold, judging by the alphabet its characters are from:
    digits, hex (``secrets.token_hex``), base64 (``token_urlsafe``, Fernet keys), or any."""
    if key.isdigit():
        alphabet = 10
    elif all(character in string.hexdigits for character in key):
        alphabet = 16
    elif all(character in BASE64_CHARACTERS for character in key):
        alphabet = 64
    else:
        alphabet = 95
    return len(key) * math.log2(alphabet)


def _is_periodic(key: str) -> bool:
    """Whether ``key`` is a shorter string repeated ("changemechangeme...")."""
    return any(key[period:] == key[:-period] for period in range(1, len(key) // 2 + 1))


def _bits_per_character(key: str) -> float:
    """The Shannon entropy of ``key``'s own character frequencies."""
    counts = Counter(key).values()
    return -sum(n / len(key) * math.log2(n / len(key)) for n in counts)
