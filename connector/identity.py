"""Normalisation and SHA-256 hashing of shopper identifiers for the TikTok Events API 2.0.

TikTok matches a server event to a TikTok user by comparing our SHA-256 hashes with hashes of
what it knows, so a value only matches if we normalise it exactly as TikTok (and our own
browser pixel) do before hashing. TikTok's public docs only say that email, phone and
external_id "must be hashed with SHA-256"; the exact rules below come from integrations TikTok
owns or reviews, as collected in the team's API reference (``tiktok-meta-google-apis.md``,
section 1.3) and re-read at the sources named here:

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
module follows the reference file's recommendations; each function says what it decided.
Nothing here logs: the inputs are personal data.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import phonenumbers

from connector.events import Shopper, UserData

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_REGION = re.compile(r"[A-Za-z]{2}")
_ZIP_SEPARATORS = re.compile(r"[\s\-]+")
_US_ZIP_PLUS_4 = re.compile(r"(\d{5})\d{4}")
_LOCALE_SUBTAG = re.compile(r"[A-Za-z0-9]{1,8}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")

# Countries and territories whose postal codes are USPS ZIP codes, where ZIP+4 is common.
_US_ZIP_COUNTRIES = frozenset({"us", "pr", "vi", "gu", "as", "mp", "um"})


def sha256_hex(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes, the only hash format TikTok accepts."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """True for 64 hex digits in any case.

    Stores and merchants sometimes hand us values already hashed (a pixel data layer, a CRM
    export). Hashing those again would produce a hash of a hash that can never match, so every
    TikTok integration checks this pattern first and passes such values through.
    """
    return _SHA256_HEX.fullmatch(value) is not None


def normalise_email(raw: str | None) -> str | None:
    """Trimmed, lowercased email, or None when it is clearly not an email.

    TikTok's GTM template, Segment and Stape all lowercase and trim before hashing. Only the
    obviously broken are rejected (no ``@`` with text on both sides, no dot inside the domain):
    a hash of junk never matches anyone and only adds noise to the event.
    """
    if raw is None:
        return None
    email = raw.strip().lower()
    local, at, domain = email.rpartition("@")
    if not (at and local and "." in domain.strip(".")):
        return None
    return email


def normalise_phone(raw: str | None, region: str | None) -> str | None:
    """E.164 with a leading ``+`` (``+442070313000``), or None if it is not a valid number.

    TikTok's Customer File spec and Segment's TikTok pixel docs ask for E.164 with ``+``.
    ``region`` is the ISO 3166-1 alpha-2 country of the address; it is how national formats
    such as ``020 7031 3000`` (GB) or ``(650) 555-1212`` (US) get their country code.
    ``phonenumbers`` also drops a trunk ``(0)`` written after the country code, which naive
    digit stripping keeps (``+44 (0)20...`` would become ``+44020...``). A leading ``00`` is read
    as the international prefix. Without a region or an international prefix we return None
    rather than guess a country: a hash of a wrong number is worse than no phone at all.
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
    allowed." So ``"Mary-Jane O'Brien"`` becomes ``"maryjaneobrien"`` while ``"Zoë"`` stays
    ``"zoë"`` and names in any script survive. NFKC first, so a composed ``ë`` and ``e`` plus a
    combining diaeresis hash the same and full-width letters become ordinary ones.
    """
    if raw is None:
        return None
    return _letters_and_digits(unicodedata.normalize("NFKC", raw).lower()) or None


def normalise_zip(raw: str | None, country: str | None) -> str | None:
    """Postal code lowercased without spaces or dashes; US ZIP+4 cut to the 5-digit ZIP.

    Segment removes whitespace and lowercases, RudderStack removes spaces and dashes, so
    ``"SW1A 1AA"`` becomes ``"sw1a1aa"`` and ``"K1A 0B1"`` becomes ``"k1a0b1"``. The 5-digit
    rule for US ZIP+4 is the reference file's recommendation (Meta documents it; TikTok is
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
    return _plain_place(raw)


def format_state(raw: str | None) -> str | None:
    """State or province, normalised like :func:`format_city` (``"CA"`` -> ``"ca"``).

    Shopify and WooCommerce send the code (``province_code``, ``state``), which is what the
    reference file expects; full names are kept as written rather than guessed into codes.
    """
    return _plain_place(raw)


def format_country(raw: str | None) -> str | None:
    """ISO 3166-1 alpha-2 country code, lowercase (``"US"`` -> ``"us"``); None otherwise.

    Sent unhashed and lowercased as Segment does. Both stores give alpha-2 codes; anything that
    is not two letters (a country name, say) is dropped rather than guessed.
    """
    if raw is None:
        return None
    code = raw.strip()
    return code.lower() if _REGION.fullmatch(code) else None


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


def hash_user(shopper: Shopper, *, ttclid: str | None, ttp: str | None) -> UserData:
    """The matching signals TikTok receives for one shopper, with personal fields hashed.

    Hashed (or passed through, lowercased, when already 64-hex): email, phone, external_id
    (the store customer id), first_name, last_name, zip_code. Plain, as every integration sends
    them: city, state, country, ip, user_agent, locale, ttclid, ttp; ip, user agent and click
    ids are only trimmed because TikTok compares them byte for byte. Anything that normalises
    to nothing is None, so an empty string is never hashed into a real-looking value.
    """
    region = format_country(shopper.country_code)
    return UserData(
        email=_hashed(shopper.email, normalise_email),
        phone=_hashed(shopper.phone, lambda value: normalise_phone(value, region)),
        external_id=_hashed(shopper.customer_id, normalise_external_id),
        first_name=_hashed(shopper.first_name, normalise_name),
        last_name=_hashed(shopper.last_name, normalise_name),
        zip_code=_hashed(shopper.zip_code, lambda value: normalise_zip(value, region)),
        city=format_city(shopper.city),
        state=format_state(shopper.state),
        country=region,
        ttclid=_trimmed(ttclid),
        ttp=_trimmed(ttp),
        ip=_trimmed(shopper.ip),
        user_agent=_trimmed(shopper.user_agent),
        locale=format_locale(shopper.locale),
    )


def _hashed(raw: str | None, normalise: Callable[[str], str | None]) -> str | None:
    """SHA-256 of the normalised value; an already-hashed value passes through lowercased."""
    if raw is None:
        return None
    value = raw.strip()
    if is_sha256_hex(value):
        return value.lower()
    normalised = normalise(value)
    return sha256_hex(normalised) if normalised else None


def _trimmed(raw: str | None) -> str | None:
    if raw is None:
        return None
    return raw.strip() or None


def _plain_place(raw: str | None) -> str | None:
    """Lowercase letters and digits of a place name, accents on Latin letters folded."""
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
    return _letters_and_digits(unicodedata.normalize("NFC", "".join(folded))) or None


def _letters_and_digits(text: str) -> str:
    """Keep letters, combining marks and digits of any script; drop spaces and punctuation."""
    return "".join(char for char in text if unicodedata.category(char)[0] in "LMN")
