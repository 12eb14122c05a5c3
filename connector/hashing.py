"""Building blocks every destination's normalisation shares: SHA-256, email, phone, text.

Each ad platform has its own rules for what to normalise and hash (a destination package's
``identity`` module applies them); what is common lives here, so the rules that differ stand
out. Nothing here logs: the inputs are personal data.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import phonenumbers

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_REGION = re.compile(r"[A-Za-z]{2}")


def sha256_hex(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes, the hash format every ad platform takes."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """True for 64 hex digits in any case.

    Stores and merchants sometimes hand us values already hashed (a pixel data layer, a CRM
    export). Hashing those again would produce a hash of a hash that can never match, so every
    platform's own integration checks this pattern first and passes such values through.
    """
    return _SHA256_HEX.fullmatch(value) is not None


def hashed(raw: str | None, normalise: Callable[[str], str | None]) -> str | None:
    """SHA-256 of the normalised value; an already-hashed value passes through lowercased;
    a value that normalises to nothing is None, so an empty string never becomes a hash."""
    if raw is None:
        return None
    value = raw.strip()
    if is_sha256_hex(value):
        return value.lower()
    normalised = normalise(value)
    return sha256_hex(normalised) if normalised else None


def trimmed(raw: str | None) -> str | None:
    """The value without surrounding whitespace, or None when nothing is left."""
    if raw is None:
        return None
    return raw.strip() or None


def normalise_email(raw: str | None) -> str | None:
    """Trimmed, lowercased email, or None when it is clearly not an email.

    Every platform lowercases and trims before hashing. Only the obviously broken are rejected
    (no ``@`` with text on both sides, no dot inside the domain): a hash of junk never matches
    anyone and only adds noise to the event.
    """
    if raw is None:
        return None
    email = raw.strip().lower()
    local, at, domain = email.rpartition("@")
    if not (at and local and "." in domain.strip(".")):
        return None
    return email


def country_code(raw: str | None) -> str | None:
    """ISO 3166-1 alpha-2 country code, lowercase (``"US"`` -> ``"us"``); None otherwise.

    Both stores give alpha-2 codes; anything that is not two letters (a country name, say) is
    dropped rather than guessed.
    """
    if raw is None:
        return None
    code = raw.strip()
    return code.lower() if _REGION.fullmatch(code) else None


def e164_phone(raw: str | None, region: str | None) -> str | None:
    """E.164 with a leading ``+`` (``+442070313000``), or None if it is not a valid number.

    ``region`` is the ISO 3166-1 alpha-2 country of the address; it is how national formats
    such as ``020 7031 3000`` (GB) or ``(650) 555-1212`` (US) get their country code.
    ``phonenumbers`` also drops a trunk ``(0)`` written after the country code, which naive
    digit stripping keeps (``+44 (0)20...`` would become ``+44020...``, which matches no one). A
    leading ``00`` is read as the international prefix. Without a region or an international
    prefix we return None rather than guess a country: a hash of a wrong number is worse than
    no phone at all.
    """
    if raw is None:
        return None
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    region_code = region.strip().upper() if region and _REGION.fullmatch(region.strip()) else None
    if region_code is None and not text.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(text, region_code)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def letters_and_digits(text: str) -> str:
    """Keep letters, combining marks and digits of any script; drop spaces and punctuation."""
    return "".join(char for char in text if unicodedata.category(char)[0] in "LMN")


def plain_place(raw: str | None) -> str | None:
    """Lowercase letters and digits of a place name, accents on Latin letters folded.

    ``"São Paulo"`` becomes ``"saopaulo"``, the same as a shopper who typed ``"Sao Paulo"``,
    while letters of other scripts are kept as they are.
    """
    if raw is None:
        return None
    folded: list[str] = []
    # Lowercase first: "İ".lower() is "i" plus a combining dot, which the folding then drops.
    for char in unicodedata.normalize("NFKD", raw.lower()):
        # Drop a combining mark only when it sits on an ASCII base ("ã" -> "a"); marks on
        # other scripts (Japanese dakuten, Devanagari vowel signs) are part of the letter.
        if unicodedata.combining(char) and folded and folded[-1].isascii():
            continue
        folded.append(char)
    return letters_and_digits(unicodedata.normalize("NFC", "".join(folded))) or None


def plain_name(raw: str | None) -> str | None:
    """A first or last name lowercased, whitespace and punctuation removed, accents kept.

    ``"Mary-Jane O'Brien"`` becomes ``"maryjaneobrien"`` while ``"Zoë"`` stays ``"zoë"`` and
    names in any script survive. NFKC first, so a composed ``ë`` and ``e`` plus a combining
    diaeresis hash the same and full-width letters become ordinary ones.
    """
    if raw is None:
        return None
    return letters_and_digits(unicodedata.normalize("NFKC", raw).lower()) or None
