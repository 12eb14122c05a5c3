"""Ad click identifiers (TikTok's ``ttclid`` and ``_ttp``) found in what a store sends us.

Every function here is pure and platform-neutral: a platform package says *where* to look
(Shopify ``note_attributes`` and ``landing_site``, WooCommerce order ``meta_data``...) and these
functions say *what* counts as a click id. A ttclid arrives as the ``ttclid`` query parameter
of the ad's landing URL; ``_ttp`` is the TikTok pixel's first-party cookie, which storefront
code may copy into cart attributes or order meta. Values are kept exactly as sent (only
trimmed): TikTok matches them byte for byte, so any "clean-up" would break attribution.

Storefront code (the Shopify Web Pixel) also reports click ids with the checkout or cart
token to ``POST /collect``; they are kept as :class:`~connector.models.ClickRecord` rows for
:data:`CLICK_RECORD_DAYS` and joined to the order or checkout webhook by those tokens. The
order of precedence when an event is recorded is: the order's own attributes, the stored
record by checkout token, then by cart token, then the landing page (best effort).
"""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Connection, and_, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.events import Checkout, ClickIds, Order
from connector.models import ClickRecord, utcnow
from connector.services import Services

logger = logging.getLogger(__name__)

CLICK_RECORD_DAYS = 7
"""TikTok attributes a conversion to a click for 7 days by default, so a ttclid older than
that cannot earn a match (https://ads.tiktok.com/help/article/attribution-window)."""

STORED_SOURCES = {"checkout": "stored_checkout_token", "cart": "stored_cart_token"}
"""``click_source`` names for ids found in a stored click record, by token kind."""

TOKEN_KINDS = ("checkout", "cart")
"""Token kinds of click records, the checkout's record before the cart's."""

CLICK_RECORDS = ClickRecord.__table__
LIVE_RECORDS = select(
    CLICK_RECORDS.c.id, CLICK_RECORDS.c.token_kind, CLICK_RECORDS.c.ttclid, CLICK_RECORDS.c.ttp
).where(
    CLICK_RECORDS.c.store_id == bindparam("store_id"),
    CLICK_RECORDS.c.expires_at > bindparam("now"),
    or_(
        and_(
            CLICK_RECORDS.c.token_kind == "checkout", CLICK_RECORDS.c.token == bindparam("checkout")
        ),
        and_(CLICK_RECORDS.c.token_kind == "cart", CLICK_RECORDS.c.token == bindparam("cart")),
    ),
)
"""The unexpired records of a checkout token and a cart token (Core, built once: it runs in
every order webhook)."""
REMEMBER_ORDER = (
    update(CLICK_RECORDS)
    .where(CLICK_RECORDS.c.id.in_(bindparam("ids", expanding=True)))
    .values(order_id=bindparam("order_id"))
)

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


def save_click_record(
    session: Session, store_id: str, *, token_kind: str, token: str, clicks: ClickIds
) -> None:
    """Insert or refresh the record for one token; a new value replaces an old one, a
    missing value keeps it (the ttclid comes on landing, ``_ttp`` may only come later)."""
    expires_at = utcnow() + timedelta(days=CLICK_RECORD_DAYS)
    query = select(ClickRecord).where(
        ClickRecord.store_id == store_id,
        ClickRecord.token_kind == token_kind,
        ClickRecord.token == token,
    )
    record = session.scalar(query)
    if record is None:
        record = ClickRecord(store_id=store_id, token_kind=token_kind, token=token)
        session.add(record)
    record.ttclid = clicks.ttclid or record.ttclid
    record.ttp = clicks.ttp or record.ttp
    record.expires_at = expires_at
    try:
        session.flush()
    except IntegrityError:  # the same token reported twice at once: the other insert won
        session.rollback()
        save_click_record(session, store_id, token_kind=token_kind, token=token, clicks=clicks)


def with_stored_clicks(
    connection: Connection, store_id: str, source: Order | Checkout
) -> Order | Checkout:
    """``source`` with its click ids resolved against stored click records.

    Orders remember the record they used (``order_id``) so a ``customers/redact`` for that
    order finds it. Sources without tokens, or without a matching live record, come back
    unchanged. One query looks up both tokens: this runs inside every order webhook.
    """
    checkout_token = source.checkout_token if isinstance(source, Order) else source.token
    if not (checkout_token or source.cart_token):
        return source
    rows = connection.execute(
        LIVE_RECORDS,
        {
            "store_id": store_id,
            "checkout": checkout_token,
            "cart": source.cart_token,
            "now": utcnow(),
        },
    ).all()
    if not rows:
        return source
    found = sorted(rows, key=lambda row: TOKEN_KINDS.index(row.token_kind))
    if isinstance(source, Order):
        ids = [row.id for row in found]
        connection.execute(REMEMBER_ORDER, {"ids": ids, "order_id": source.order_id})
    stored = [
        ClickIds(
            ttclid=r.ttclid, ttp=r.ttp, source=STORED_SOURCES[r.token_kind] if r.ttclid else None
        )
        for r in found
    ]
    first, *rest = source.click_candidates or (source.clicks,)
    return dataclasses.replace(source, clicks=resolve_click_ids(first, *stored, *rest))


def purge_expired_click_records(services: Services) -> int:
    """Delete click records past their expiry; the worker runs this every hour."""
    with services.db.session() as session:
        deleted = session.execute(
            delete(ClickRecord).where(ClickRecord.expires_at < utcnow())
        ).rowcount
        session.commit()
    if deleted:
        logger.info("clicks.purged records=%d", deleted)
    return deleted


def _first_clean_value(attrs: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    return next((v for v in (clean_click_id(attrs.get(k)) for k in keys) if v), None)


def _has_control_character(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)
