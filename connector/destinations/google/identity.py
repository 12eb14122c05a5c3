"""Normalisation and SHA-256 hashing of shopper identifiers for Google's Data Manager API.

Google matches an event to a signed-in Google user by comparing our hashes with hashes of
what it knows, so a value matches only if it was normalised exactly as Google normalises it.
The rules come from two Google sources, which agree except where noted:

- "Format user data" (https://developers.google.com/data-manager/api/get-started/formatting):
  email lowercased, leading, trailing *and intermediate* whitespace removed, and for
  ``gmail.com``/``googlemail.com`` every dot before the ``@`` removed; phone with ``+`` and the
  country code, nothing but digits after the ``+``; given and family name lowercased and
  trimmed, without prefixes such as "Mrs." or suffixes such as "Jr."; ``region_code`` a
  two-letter ISO-3166-1 alpha-2 code and ``postal_code`` as written (US: 5 digits, or 5 plus
  the 4-digit extension), both trimmed and **not** hashed. Hashes are SHA-256, hex encoded.
- Google's own formatting library for the API, googleads/data-manager-python
  ``google/ads/datamanager_util/format.py`` and its ``tests/formatter_test.py``: the same, and
  for Gmail addresses it also drops a ``+tag`` and everything after it
  (``Cloudy.SanFrancisco+shopping@gmail.com`` -> ``cloudysanfrancisco@gmail.com``), while a
  ``+`` in any other domain is kept (``user.name+nyc@example.com``). The formatting page does
  not mention ``+``; we follow the library, since Gmail ignores the tag and Google's library is
  what its matching is built against. Its tests give the vectors our tests check.

What is sent plain: region and postal code (above), the shopper's IP and user agent (the
API's ``DeviceInfo``) and the click ids gclid, gbraid and wbraid (``AdIdentifiers``). Nothing
here logs: the inputs are personal data.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Any

from connector.events import ClickIds, Shopper
from connector.hashing import e164_phone, hashed, trimmed
from connector.hashing import normalise_email as plain_email

_WHITESPACE = re.compile(r"\s+")
_GOOGLE_MAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
# Honorifics the formatting page tells us to leave out ("Don't include prefixes such as Mrs.",
# "Don't include suffixes such as Jr."); the list is ours, the rule is Google's.
_NAME_PREFIX = re.compile(r"^(?:mr|mrs|ms|miss|mx|dr|prof)\.?\s+")
_NAME_SUFFIX = re.compile(r",?\s+(?:jr|sr|ii|iii|iv|phd|md)\.?$")
_REGION = re.compile(r"[A-Za-z]{2}")


def normalise_email(raw: str | None) -> str | None:
    """Lowercased email without any whitespace; Gmail addresses lose dots and ``+tag``.

    ``" Jefferson.Loves.hiking@GMAIL.com"`` -> ``"jeffersonloveshiking@gmail.com"``. Anything
    that is not ``local@domain.tld`` is None (:func:`connector.hashing.normalise_email`).
    """
    if raw is None:
        return None
    email = plain_email(_WHITESPACE.sub("", raw))
    if email is None:
        return None
    local, _, domain = email.rpartition("@")
    if domain in _GOOGLE_MAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def normalise_phone(raw: str | None, region: str | None) -> str | None:
    """E.164 with ``+`` (``+18005550100``), read with the address country for national formats
    (:func:`connector.hashing.e164_phone`); None when it is not a valid number.

    Google's library only strips non-digits and prepends ``+``, which turns a national number
    such as ``020 7031 3000`` into a wrong one; reading it with the country gives what the
    formatting page asks for, "the plus sign and the country code".
    """
    return e164_phone(raw, region)


def normalise_name(raw: str | None) -> str | None:
    """Given or family name, lowercased and trimmed, without a title or generational suffix.

    ``" Mrs. Jane "`` -> ``"jane"``, ``"Smith Jr."`` -> ``"smith"``. Inner spaces, hyphens and
    apostrophes stay, as Google's formatting library keeps them (``format_given_name`` only
    strips and lowercases). NFKC first, so composed and decomposed accents hash the same.
    """
    if raw is None:
        return None
    name = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", raw)).strip().lower()
    name = _NAME_SUFFIX.sub("", _NAME_PREFIX.sub("", name)).strip()
    return name or None


def format_region(raw: str | None) -> str | None:
    """ISO-3166-1 alpha-2, uppercase (``" us"`` -> ``"US"``), as Google's library formats it."""
    if raw is None:
        return None
    code = raw.strip()
    return code.upper() if _REGION.fullmatch(code) else None


def format_postal_code(raw: str | None) -> str | None:
    """The postal code as written, trimmed (``" 1229-076 "`` -> ``"1229-076"``)."""
    return trimmed(raw)


def format_ip(raw: str | None) -> str | None:
    """An IPv4 or IPv6 address in its usual form, or None: Google refuses a malformed one
    for the whole request, so a value that is not an address is dropped here."""
    value = trimmed(raw)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def user_data(shopper: Shopper, clicks: ClickIds) -> dict[str, Any]:
    """The matching signals Google receives for one shopper, personal ones hashed.

    Keys: ``email``, ``phone`` (hashed), the address group ``given_name``, ``family_name``
    (hashed), ``region_code``, ``postal_code`` (plain), ``ip``, ``user_agent``, ``gclid``,
    ``gbraid``, ``wbraid`` (plain). The address group is kept only whole: Google's
    ``AddressInfo`` requires all four parts (``given_name`` ... ``postal_code`` are each
    "Required" in google/ads/datamanager/v1 ``user_data.proto``), so a partial one could never
    be sent. Fields that normalise to nothing are left out.
    """
    region = format_region(shopper.country_code)
    data = {
        "email": hashed(shopper.email, normalise_email),
        "phone": hashed(shopper.phone, lambda value: normalise_phone(value, region)),
        **_address(shopper, region),
        "ip": format_ip(shopper.ip),
        "user_agent": trimmed(shopper.user_agent),
        "gclid": trimmed(clicks.gclid),
        "gbraid": trimmed(clicks.gbraid),
        "wbraid": trimmed(clicks.wbraid),
    }
    return {key: value for key, value in data.items() if value}


def _address(shopper: Shopper, region: str | None) -> dict[str, str]:
    address = {
        "given_name": hashed(shopper.first_name, normalise_name),
        "family_name": hashed(shopper.last_name, normalise_name),
        "region_code": region,
        "postal_code": format_postal_code(shopper.zip_code),
    }
    return address if all(address.values()) else {}  # type: ignore[return-value]
