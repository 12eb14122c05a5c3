"""Normalisation and SHA-256 hashing of shopper identifiers for Meta's Conversions API.

Meta matches a server event to a person by comparing our hashes with hashes of what it knows,
so a value only matches when it is normalised exactly as Meta documents before hashing
(Customer Information Parameters,
https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/customer-information-parameters):

- ``em``: "Trim any leading and trailing spaces. Convert all characters to lowercase."
- ``ph``: digits only, with the country code, no symbols and no leading zeros
  (``(650)555-1212`` -> ``16505551212``).
- ``fn``/``ln``: lowercase, no punctuation.
- ``ct``: lowercase, no punctuation, no special characters, no spaces.
- ``st``: the 2-character ANSI code in lowercase for US states; elsewhere lowercase with no
  punctuation, special characters or spaces.
- ``zp``: lowercase, no spaces, no dash; only the first 5 digits of a US ZIP code.
- ``country``: the lowercase ISO 3166-1 alpha-2 code, and it **is** hashed.
- ``external_id``: "hashing recommended"; ``client_ip_address``, ``client_user_agent``,
  ``fbc`` and ``fbp``: "Do not hash" (Parameters,
  https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters).

Where the docs are stricter than Meta's own SDK normaliser (``facebook_business/adobjects/
serverside/normalize.py`` keeps punctuation in names and does not cut US ZIP codes to 5
digits, and keeps the trunk ``(0)`` of ``+44 (0)20...``), this module follows the docs: a hash
normalised the documented way is what Meta's own hashes of its users are compared with.
Values that arrive already hashed (64 hex digits) pass through lowercased. Nothing here logs:
the inputs are personal data.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from connector.events import ClickIds, Shopper
from connector.hashing import (
    country_code,
    e164_phone,
    hashed,
    normalise_email,
    plain_name,
    plain_place,
    trimmed,
)

_ZIP_SEPARATORS = re.compile(r"[\s\-]+")
_US_ZIP = re.compile(r"(\d{5})\d*")
_STATE_CODE = re.compile(r"[a-z]{2}")

# Countries and territories whose postal codes are USPS ZIP codes and whose states Meta wants
# as USPS/ANSI 2-letter codes.
_US_COUNTRIES = frozenset({"us", "pr", "vi", "gu", "as", "mp", "um"})

# US state and territory names (as plain_place leaves them) to their ANSI/USPS codes, for a
# store that sends the name rather than the code.
_US_STATE_CODES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
    "colorado": "co", "connecticut": "ct", "delaware": "de", "districtofcolumbia": "dc",
    "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
    "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi",
    "minnesota": "mn", "mississippi": "ms", "missouri": "mo", "montana": "mt",
    "nebraska": "ne", "nevada": "nv", "newhampshire": "nh", "newjersey": "nj",
    "newmexico": "nm", "newyork": "ny", "northcarolina": "nc", "northdakota": "nd",
    "ohio": "oh", "oklahoma": "ok", "oregon": "or", "pennsylvania": "pa", "rhodeisland": "ri",
    "southcarolina": "sc", "southdakota": "sd", "tennessee": "tn", "texas": "tx", "utah": "ut",
    "vermont": "vt", "virginia": "va", "washington": "wa", "westvirginia": "wv",
    "wisconsin": "wi", "wyoming": "wy", "puertorico": "pr", "guam": "gu",
    "americansamoa": "as", "northernmarianaislands": "mp", "usvirginislands": "vi",
}  # fmt: skip


def normalise_phone(raw: str | None, region: str | None) -> str | None:
    """Digits only, country code first, no ``+`` (``+44 (0)20 7031 3000`` -> ``442070313000``).

    Read through :func:`connector.hashing.e164_phone`, which gives a national number its
    country from the address and drops the trunk ``(0)`` that naive digit stripping (and
    Meta's SDK) would keep, then the ``+`` Meta's format has no place for is removed.
    """
    number = e164_phone(raw, region)
    return number.lstrip("+") if number else None


def normalise_name(raw: str | None) -> str | None:
    """First or last name: lowercase, no punctuation or spaces, accents kept (``zoë``)."""
    return plain_name(raw)


def normalise_city(raw: str | None) -> str | None:
    """City: lowercase letters and digits only (``St. Louis`` -> ``stlouis``); accents on
    Latin letters folded, as "no special characters" asks (``São Paulo`` -> ``saopaulo``)."""
    return plain_place(raw)


def normalise_state(raw: str | None, country: str | None) -> str | None:
    """State: the lowercase 2-letter code in the US (``California`` -> ``ca``), elsewhere the
    value lowercased without punctuation or spaces. A US value that is neither a code nor a
    known name is dropped rather than hashed into something that matches no one."""
    state = plain_place(raw)
    if state is None or country not in _US_COUNTRIES:
        return state
    if _STATE_CODE.fullmatch(state):
        return state
    return _US_STATE_CODES.get(state)


def normalise_zip(raw: str | None, country: str | None) -> str | None:
    """Postal code lowercased without spaces or dashes; a US ZIP+4 cut to its first 5 digits
    (``94035-1234`` -> ``94035``); a UK postcode keeps every part (``SW1A 1AA`` -> ``sw1a1aa``)."""
    if raw is None:
        return None
    code = _ZIP_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).lower()
    if country in _US_COUNTRIES:
        us_zip = _US_ZIP.fullmatch(code)
        if us_zip:
            code = us_zip.group(1)
    return code or None


def normalise_external_id(raw: str | None) -> str | None:
    """The store's customer id, trimmed, case kept.

    Meta only says hashing is recommended. What matters is that the browser pixel's
    ``external_id`` hashes the very same string, and our pixel snippets (like TikTok's) trim
    without changing case; Shopify and WooCommerce customer ids are numeric anyway.
    """
    if raw is None:
        return None
    return raw.strip() or None


def click_id(clicks: ClickIds, event_time: int) -> str | None:
    """``fbc``: the ``_fbc`` cookie when we have it, else built from the landing ``fbclid``.

    Meta's format is ``fb.<subdomainIndex>.<creationTime in ms>.<fbclid>``, the fbclid kept
    byte for byte (Customer Information Parameters, ``fbc``, cited at the top). The subdomain
    index is 1, as for a cookie set on the shop's domain. We do not know when the shopper
    landed, so the order time stands in for the creation time: the landing came before the
    order, and the order time is the closest to it we know.
    """
    cookie = trimmed(clicks.fbc)
    if cookie:
        return cookie
    fbclid = trimmed(clicks.fbclid)
    if not fbclid:
        return None
    return f"fb.1.{event_time * 1000}.{fbclid}"


def user_data(shopper: Shopper, clicks: ClickIds, event_time: int) -> dict[str, Any]:
    """Meta's ``user_data`` keys for one shopper, one string each, empty fields left out.

    Hashed (or passed through lowercased when already 64-hex): em, ph, fn, ln, ct, st, zp,
    country, external_id. Plain and only trimmed, because Meta compares them byte for byte and
    says "Do not hash": client_ip_address, client_user_agent, fbc, fbp.
    """
    region = country_code(shopper.country_code)
    data = {
        "em": hashed(shopper.email, normalise_email),
        "ph": hashed(shopper.phone, lambda value: normalise_phone(value, region)),
        "fn": hashed(shopper.first_name, normalise_name),
        "ln": hashed(shopper.last_name, normalise_name),
        "ct": hashed(shopper.city, normalise_city),
        "st": hashed(shopper.state, lambda value: normalise_state(value, region)),
        "zp": hashed(shopper.zip_code, lambda value: normalise_zip(value, region)),
        "country": hashed(shopper.country_code, country_code),
        "external_id": hashed(shopper.customer_id, normalise_external_id),
        "client_ip_address": trimmed(shopper.ip),
        "client_user_agent": trimmed(shopper.user_agent),
        "fbc": click_id(clicks, event_time),
        "fbp": trimmed(clicks.fbp),
    }
    return {key: value for key, value in data.items() if value}
