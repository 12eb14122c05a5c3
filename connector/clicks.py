"""Ad click identifiers (TikTok's ``ttclid`` and ``_ttp``) found in what a store sends us.

Every function here is pure and platform-neutral: a platform package says *where* to look
(Shopify ``note_attributes`` and ``landing_site``, WooCommerce order ``meta_data``...) and these
functions say *what* counts as a click id. A ttclid arrives as the ``ttclid`` query parameter
of the ad's landing URL; ``_ttp`` is the TikTok pixel's first-party cookie, which storefront
code may copy into cart attributes or order meta. Values are kept exactly as sent (only
trimmed): TikTok matches them byte for byte, so any "clean-up" would break attribution.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from connector.events import ClickIds

MAX_CLICK_ID_LENGTH = 500
"""Real ttclids are a few hundred characters at most; anything longer is not one."""

TTCLID_KEYS = ("ttclid", "_ttclid", "tiktok_ttclid")
"""Attribute or meta keys that may hold a ttclid, in order of preference."""

TTP_KEYS = ("_ttp", "ttp")
"""Attribute or meta keys that may hold the ``_ttp`` cookie value, in order of preference."""


def clean_click_id(value: object) -> str | None:
    """The trimmed value, or None when it cannot be a click id.

    Rejects non-strings, empty strings, values longer than :data:`MAX_CLICK_ID_LENGTH` and
    values with control characters: those come from broken or hostile storefront code, and
    forwarding them would only make the ad platform reject the whole event.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_CLICK_ID_LENGTH or _has_control_character(value):
        return None
    return value


def ttclid_from_url(url_or_path: str | None) -> str | None:
    """The ``ttclid`` query parameter of a full URL or of a path such as Shopify's
    ``landing_site`` (``"/products/x?ttclid=E.C.P.abc&utm_source=tiktok"``), else None.

    Garbage in (None, not a URL, an invalid IPv6 host...) gives None, never an exception:
    a malformed landing page must not cost us the order. When the parameter repeats, the
    first usable value wins.
    """
    if not isinstance(url_or_path, str):
        return None
    try:
        query = urlsplit(url_or_path.strip()).query
    except ValueError:
        return None
    candidates = parse_qs(query).get("ttclid", [])
    return next((c for c in map(clean_click_id, candidates) if c), None)


def click_ids_from_attributes(attrs: Mapping[str, str], source: str) -> ClickIds:
    """Click ids stored as key/value attributes (cart attributes, order meta...).

    Looks for :data:`TTCLID_KEYS` and :data:`TTP_KEYS`, first usable key wins. ``source`` is
    recorded only when a ttclid is found, because it names where the *ttclid* came from.
    """
    ttclid = _first_clean_value(attrs, TTCLID_KEYS)
    return ClickIds(
        ttclid=ttclid,
        ttp=_first_clean_value(attrs, TTP_KEYS),
        source=source if ttclid else None,
    )


def resolve_click_ids(*candidates: ClickIds) -> ClickIds:
    """One :class:`ClickIds` from several places, the candidates given in priority order.

    The first candidate with a ttclid gives both the ttclid and its ``source``; the ttp comes
    from the first candidate that has one, which may be another candidate: a ttclid from the
    landing URL and a ``_ttp`` from cart attributes describe the same shopper.
    """
    with_ttclid = next((c for c in candidates if c.ttclid), ClickIds())
    ttp = next((c.ttp for c in candidates if c.ttp), None)
    return ClickIds(ttclid=with_ttclid.ttclid, ttp=ttp, source=with_ttclid.source)


def _first_clean_value(attrs: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    return next((v for v in (clean_click_id(attrs.get(k)) for k in keys) if v), None)


def _has_control_character(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)
