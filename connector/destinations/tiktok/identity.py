"""Normalisation and SHA-256 hashing of shopper identifiers for the TikTok Events API 2.0.

TikTok matches a server event to a TikTok user by comparing our SHA-256 hashes with hashes of
what it knows, so a value only matches if we normalise it exactly as TikTok (and our own
browser pixel) do before hashing. TikTok's public docs only say that email, phone and
external_id "must be hashed with SHA-256"; the exact rules below come from integrations TikTok
owns or reviews, read at the sources named here:

- Segment's TikTok destinations (TikTok took ownership of them) hash ``first_name``,
  ``last_name`` and ``zip_code`` after removing whitespace and lowercasing (``formatString``),
  and send ``city``, ``state`` and ``country`` **unhashed**, lowercased and reduced to
  ``[A-Za-z0-9]`` (``formatAddress``): segmentio/action-destinations,
  ``packages/browser-destinations/destinations/tiktok-pixel/src/formatter.ts`` and
  ``.../tiktok-conversions/reportWebEvent/utils.ts`` (``getUser``). Their field help says names
  "should be in lowercase without any punctuation. Special characters are allowed."
- RudderStack's TikTok Events 2.0 mapping (rudderlabs/rudder-transformer,
  ``src/v0/destinations/tiktok_ads/docs/businesslogic.md``) lists first name, last name and zip
  code as hashed and city, state and country as plain.
- TikTok's own server GTM template (tiktok/gtm-template-eapi ``template.js``) lowercases and
  trims email and phone, only trims external_id, and passes already-hashed values
  (``^[A-Fa-f0-9]{64}$``) through.

Where those sources are silent (non-ASCII letters, country format, ZIP+4, locale casing) this
module follows what Meta documents for the same fields (Customer Information Parameters,
https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters),
the platform with the most precise public rules; each function says what it decided.
Nothing here logs: the inputs are personal data.
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
_US_ZIP_PLUS_4 = re.compile(r"(\d{5})\d{4}")
_LOCALE_SUBTAG = re.compile(r"[A-Za-z0-9]{1,8}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")

# Countries and territories whose postal codes are USPS ZIP codes, where ZIP+4 is common.
_US_ZIP_COUNTRIES = frozenset({"us", "pr", "vi", "gu", "as", "mp", "um"})


def normalise_phone(raw: str | None, region: str | None) -> str | None:
    """E.164 with a leading ``+`` (``+442070313000``), or None if it is not a valid number.

    TikTok's Customer File spec and Segment's TikTok pixel docs ask for E.164 with ``+``;
    :func:`connector.hashing.e164_phone` says how national formats and trunk zeros are read.
    """
    return e164_phone(raw, region)


def normalise_external_id(raw: str | None) -> str | None:
    """The store's customer id, trimmed, case kept.

    Sources disagree (TikTok's GTM template trims only, Segment also lowercases); what matters
    is that our browser pixel snippets hash exactly the same string, and they trim without
    changing case, as TikTok's own template does. Shopify and WooCommerce customer ids are
    numeric, so the choice only matters for ids a merchant maps in themselves.
    """
    if raw is None:
        return None
    return raw.strip() or None


def normalise_name(raw: str | None) -> str | None:
    """First or last name lowercased, with whitespace and punctuation removed, accents kept.

    Segment's TikTok field help: "lowercase without any punctuation. Special characters are
    allowed." (:func:`connector.hashing.plain_name`).
    """
    return plain_name(raw)


def normalise_zip(raw: str | None, country: str | None) -> str | None:
    """Postal code lowercased without spaces or dashes; US ZIP+4 cut to the 5-digit ZIP.

    Segment removes whitespace and lowercases, RudderStack removes spaces and dashes, so
    ``"SW1A 1AA"`` becomes ``"sw1a1aa"`` and ``"K1A 0B1"`` becomes ``"k1a0b1"``. The 5-digit
    rule for US ZIP+4 is Meta's documented rule, followed here (TikTok is
    silent): a ZIP+4 is far rarer in ad platforms' data than the plain ZIP. It applies only when
    the address country uses USPS ZIP codes, since nine digits mean something else elsewhere.
    """
    if raw is None:
        return None
    code = _ZIP_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).lower()
    if (country or "").strip().lower() in _US_ZIP_COUNTRIES:
        plus_4 = _US_ZIP_PLUS_4.fullmatch(code)
        if plus_4:
            code = plus_4.group(1)
    return code or None


def format_city(raw: str | None) -> str | None:
    """City as TikTok gets it: plain text, lowercase, letters and digits only.

    Segment (TikTok-owned) and RudderStack send ``city`` unhashed; Segment keeps only
    ``[A-Za-z0-9]`` and lowercases. Taken literally that turns ``"São Paulo"`` into
    ``"sopaulo"``, so instead accents on Latin letters are folded (``"saopaulo"``, the same as
    a shopper who typed ``"Sao Paulo"``) and letters of other scripts are kept as they are.
    """
    return plain_place(raw)


def format_state(raw: str | None) -> str | None:
    """State or province, normalised like :func:`format_city` (``"CA"`` -> ``"ca"``).

    Shopify and WooCommerce send the code (``province_code``, ``state``), which is what the
    ad platforms expect; full names are kept as written rather than guessed into codes.
    """
    return plain_place(raw)


def format_country(raw: str | None) -> str | None:
    """ISO 3166-1 alpha-2 country code, lowercase (``"US"`` -> ``"us"``); None otherwise.

    Sent unhashed and lowercased as Segment does.
    """
    return country_code(raw)


def format_locale(raw: str | None) -> str | None:
    """A BCP 47 tag with canonical casing: ``"en_US"``/``"en-us"`` -> ``"en-US"``, ``"en"`` stays.

    TikTok's ``user.locale`` is "the BCP 47 language identifier" (Segment's TikTok field help).
    WooCommerce uses WordPress locales (``en_US``), Shopify ``customer_locale`` uses ``en`` or
    ``pt-BR``. Casing follows BCP 47 conventions: language lowercase, script title case,
    region uppercase. A bare language is not given a region from the address country: the
    shipping country says nothing reliable about the shopper's language. Malformed values
    return None.
    """
    if raw is None:
        return None
    parts = raw.strip().replace("_", "-").split("-")
    if not _LANGUAGE.fullmatch(parts[0]):
        return None
    tag = [parts[0].lower()]
    for part in parts[1:]:
        if not _LOCALE_SUBTAG.fullmatch(part):
            return None
        if len(part) == 4 and part.isalpha() and len(tag) == 1:
            tag.append(part.title())
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            tag.append(part.upper())
        else:
            tag.append(part.lower())
    return "-".join(tag)


def user_data(shopper: Shopper, clicks: ClickIds) -> dict[str, Any]:
    """The ``user`` object TikTok receives for one shopper, with personal fields hashed.

    Hashed (or passed through, lowercased, when already 64-hex): email, phone, external_id
    (the store customer id), first_name, last_name, zip_code. Plain, as every integration sends
    them: city, state, country, ip, user_agent, locale, ttclid, ttp; ip, user agent and click
    ids are only trimmed because TikTok compares them byte for byte. Fields that normalise to
    nothing are left out.
    """
    region = format_country(shopper.country_code)
    user = {
        "email": hashed(shopper.email, normalise_email),
        "phone": hashed(shopper.phone, lambda value: normalise_phone(value, region)),
        "external_id": hashed(shopper.customer_id, normalise_external_id),
        "first_name": hashed(shopper.first_name, normalise_name),
        "last_name": hashed(shopper.last_name, normalise_name),
        "zip_code": hashed(shopper.zip_code, lambda value: normalise_zip(value, region)),
        "city": format_city(shopper.city),
        "state": format_state(shopper.state),
        "country": region,
        "ttclid": trimmed(clicks.ttclid),
        "ttp": trimmed(clicks.ttp),
        "ip": trimmed(shopper.ip),
        "user_agent": trimmed(shopper.user_agent),
        "locale": format_locale(shopper.locale),
    }
    return {key: value for key, value in user.items() if value}
