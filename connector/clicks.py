"""Ad click identifiers and ad cookies (TikTok, Meta, Google) found in what a store sends us.

Every function here is pure and platform-neutral: a platform package says *where* to look
(Shopify ``note_attributes`` and ``landing_site``, WooCommerce order ``meta_data``...) and these
functions say *what* counts as a click id. What is captured, once, for every destination:

* URL parameters the ad platforms add to an ad's landing URL (:data:`CAPTURED_URL_PARAMETERS`):
  TikTok's ``ttclid``; Meta's ``fbclid`` ("ClickID",
  https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc);
  Google's ``gclid`` and, for clicks from iOS 14+ devices, ``gbraid`` (app) and ``wbraid``
  (web) (https://developers.google.com/google-ads/api/reference/rpc/v21/ClickConversion);
* first-party cookies of the ad platforms' browser pixels (:data:`CAPTURED_COOKIES`): TikTok's
  ``_ttp``, Meta's ``_fbc`` (click) and ``_fbp`` (browser), which storefront code reads and
  copies into cart attributes, order meta or a ``POST /collect`` report.

Values are kept exactly as sent (only trimmed): the platforms match them byte for byte (Meta:
"ClickID value is case sensitive - do not apply any modifications before using"), so any
"clean-up" would break attribution.

Storefront code (the Shopify Web Pixel, the custom pixel) also reports click ids with the
checkout or cart token to ``POST /collect``; they are kept as
:class:`~connector.models.ClickRecord` rows for :data:`CLICK_RECORD_DAYS` from the first report
and joined to the order or checkout webhook by those tokens. The order of precedence when an
event is recorded is: the order's own attributes, the stored record by checkout token, then by
cart token, then the landing page (best effort); each field is taken from the first place that
has it.

A record's click ids are write-once (:func:`save_click_record`): knowing a token must not be
enough to re-attribute that checkout's order to another click.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.events import Checkout, ClickIds, Consent, Order
from connector.models import ClickRecord, utcnow
from connector.services import Services

logger = logging.getLogger(__name__)

CLICK_RECORD_DAYS = 7
"""TikTok attributes a conversion to a click for 7 days by default, so a ttclid older than
that cannot earn a match (https://ads.tiktok.com/help/article/attribution-window)."""

CAPTURED_URL_PARAMETERS = ("ttclid", "fbclid", "gclid", "gbraid", "wbraid")
"""Landing-URL query parameters storefront code captures, each reported under its own name.

The Shopify pixels (``extensions/tiktok-click-capture/src/index.js``,
``platforms/shopify/storefront/tiktok-custom-pixel.js``) and the WordPress plugin declare the
same list; a test holds them to this one."""

CAPTURED_COOKIES = {"_ttp": "ttp", "_fbc": "fbc", "_fbp": "fbp"}
"""Ad platforms' first-party cookies storefront code captures, and the field each is reported
as. ``_fbc`` is ``fb.<subdomain index>.<creation time ms>.<fbclid>`` and ``_fbp``
``fb.<subdomain index>.<creation time ms>.<random number>``
(https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc)."""

STORED_COLUMNS = ("ttclid", "ttp", "fbc", "fbp", "gclid", "gbraid", "wbraid")
"""The :class:`ClickIds` fields a click record keeps. An ``fbclid`` reported to ``/collect``
is kept as the ``fbc`` it stands for (:func:`fbc_from_fbclid`), so there is no fbclid column."""

LATE_COOKIE_COLUMNS = ("ttp", "fbp")
"""Browser cookies a record may gain after it was created: TikTok's and Meta's pixels set
``_ttp`` and ``_fbp`` on their own schedule (the custom pixel loads TikTok's at checkout, so
its first report may precede the cookie). The click columns (ttclid, fbc, gclid, gbraid,
wbraid) come from the landing URL, which the pixels keep from the first page on, so a
checkout's first report already carries them."""

STORED_SOURCES = {"checkout": "stored_checkout_token", "cart": "stored_cart_token"}
"""``click_source`` names for ids found in a stored click record, by token kind."""

TOKEN_KINDS = ("checkout", "cart")
"""Token kinds of click records, the checkout's record before the cart's."""

CLICK_RECORDS = ClickRecord.__table__
CONSENT_COLUMNS = {
    "marketing": "consent_marketing",
    "analytics": "consent_analytics",
    "sale_of_data": "consent_sale_of_data",
}
"""Each :class:`Consent` choice and the click-record column that keeps it."""

LIVE_RECORDS = select(
    CLICK_RECORDS.c.id,
    CLICK_RECORDS.c.token_kind,
    *(CLICK_RECORDS.c[name] for name in STORED_COLUMNS),
    *(CLICK_RECORDS.c[column] for column in CONSENT_COLUMNS.values()),
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
"""Real click ids are a few hundred characters at most; anything longer is not one."""

TTCLID_KEYS = ("ttclid", "_ttclid", "tiktok_ttclid")
"""Attribute or meta keys that may hold a ttclid, in order of preference."""

TTP_KEYS = ("_ttp", "ttp")
"""Attribute or meta keys that may hold the ``_ttp`` cookie value, in order of preference."""

ATTRIBUTE_KEYS: dict[str, tuple[str, ...]] = {
    "ttclid": TTCLID_KEYS,
    "ttp": TTP_KEYS,
    "fbclid": ("fbclid", "_fbclid"),
    "fbc": ("_fbc", "fbc"),
    "fbp": ("_fbp", "fbp"),
    "gclid": ("gclid", "_gclid"),
    "gbraid": ("gbraid", "_gbraid"),
    "wbraid": ("wbraid", "_wbraid"),
}
"""For each :class:`ClickIds` field, the attribute or meta keys that may hold it, in order of
preference: the parameter's or cookie's own name, with or without a leading underscore (the
WordPress plugin writes ``_<name>``, hidden meta in WooCommerce's admin)."""

META_COOKIE = re.compile(r"fb\.[0-9]\.[0-9]+\..+")
"""``fb.<subdomain index>.<creation time>.<fbclid or random number>``, possibly followed by
more ``.``-separated parts that Meta's parameter builder appends; the shape of both ``_fbc``
and ``_fbp``
(https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc)."""


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


def clean_meta_cookie(value: object) -> str | None:
    """An ``_fbc`` or ``_fbp`` value (:data:`META_COOKIE`), trimmed, else None."""
    value = clean_click_id(value)
    return value if value is not None and META_COOKIE.fullmatch(value) else None


def fbc_from_fbclid(fbclid: str, observed_ms: int) -> str:
    """The ``fbc`` for an fbclid seen without an ``_fbc`` cookie.

    Meta documents the format ``fb.<subdomainIndex>.<creationTime>.<fbclid>``: subdomain
    index 1 for a value generated on a server without saving a cookie, and as creation time,
    without a saved cookie, "the timestamp when you first observed or received this fbclid
    value", in milliseconds
    (https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc).
    The fbclid is kept as it came: it is case sensitive.
    """
    return f"fb.1.{observed_ms}.{fbclid}"


def url_parameter(url_or_path: str | None, name: str) -> str | None:
    """The query parameter ``name`` of a full URL or of a path such as Shopify's
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
    candidates = parse_qs(query).get(name, [])
    return next((c for c in map(clean_click_id, candidates) if c), None)


def ttclid_from_url(url_or_path: str | None) -> str | None:
    """The ``ttclid`` query parameter of a URL or path (:func:`url_parameter`)."""
    return url_parameter(url_or_path, "ttclid")


def click_ids_from_url(url_or_path: str | None, source: str) -> ClickIds:
    """Every :data:`CAPTURED_URL_PARAMETERS` in a landing URL or path; ``source`` is recorded
    when one of them is found."""
    found = {name: url_parameter(url_or_path, name) for name in CAPTURED_URL_PARAMETERS}
    return _with_source(ClickIds(**found), source)


def click_ids_from_attributes(attrs: Mapping[str, object], source: str) -> ClickIds:
    """Click ids and ad cookies stored as key/value attributes (cart attributes, order meta...).

    Looks for :data:`ATTRIBUTE_KEYS`, first usable key wins; ``_fbc``/``_fbp`` values that are
    not in Meta's cookie format are ignored. ``source`` is recorded only when a click id is
    found (:meth:`ClickIds.has_click`): it names where the *click* came from, not a cookie.
    """
    found = {field: _first_clean_value(attrs, keys) for field, keys in ATTRIBUTE_KEYS.items()}
    found["fbc"] = clean_meta_cookie(found["fbc"])
    found["fbp"] = clean_meta_cookie(found["fbp"])
    return _with_source(ClickIds(**found), source)


def resolve_click_ids(*candidates: ClickIds) -> ClickIds:
    """One :class:`ClickIds` from several places, the candidates given in priority order.

    Each field comes from the first candidate that has it: a ttclid from the landing URL and a
    ``_ttp`` from cart attributes describe the same shopper. ``source`` is the source of the
    first candidate with any click id.
    """
    found = {
        field: next((value for c in candidates if (value := getattr(c, field))), None)
        for field in _ID_FIELDS
    }
    with_click = next((c for c in candidates if c.has_click()), ClickIds())
    return ClickIds(**found, source=with_click.source)


class Saved(enum.Enum):
    """What :func:`save_click_record` did with a report for one token."""

    CREATED = "created"
    FILLED = "filled"
    """A live record gained a late cookie (:data:`LATE_COOKIE_COLUMNS`)."""
    UNCHANGED = "unchanged"
    """A live record already held everything reported."""
    REFUSED = "refused"
    """The report would have replaced or added a click id of a live record: nothing changed."""


def save_click_record(
    session: Session, store_id: str, *, token_kind: str, token: str, clicks: ClickIds
) -> Saved:
    """Create the record for one token, or add a late cookie to its live record.

    A live record's values are never replaced, and its click columns never filled in later
    (only :data:`LATE_COOKIE_COLUMNS` are): anyone who learns a checkout or cart token (a
    shared checkout link, a cart cookie) could otherwise re-attribute the order to a click of
    their own. A report that tries is :attr:`Saved.REFUSED` and changes nothing of the record.
    The pixels report the same landing-page ids on every event, so their repeats are
    :attr:`Saved.UNCHANGED`. An ``fbc`` for the fbclid the record already holds counts as the
    same value: the first one seen is kept, since Meta reads its time as when the click
    happened (:func:`fbc_from_fbclid`). An expired record not purged yet is replaced, as if
    absent. The record lives :data:`CLICK_RECORD_DAYS` from its creation: a repeat does not
    extend it.
    """
    now = utcnow()
    query = select(ClickRecord).where(
        ClickRecord.store_id == store_id,
        ClickRecord.token_kind == token_kind,
        ClickRecord.token == token,
    )
    record = session.scalar(query)
    if record is not None and record.expires_at > now:
        if not _holds_any_click_value(record):  # made by a consent report: its first clicks
            _start_clicks(record, clicks)
            return Saved.CREATED
        return _add_late_cookies(record, clicks)
    if record is None:
        record = ClickRecord(store_id=store_id, token_kind=token_kind, token=token)
        session.add(record)
    _start_record(record, clicks, now)
    try:
        session.flush()
    except IntegrityError:  # the same token reported twice at once: the other insert won
        session.rollback()
        return save_click_record(
            session, store_id, token_kind=token_kind, token=token, clicks=clicks
        )
    return Saved.CREATED


def live_click_record_count(session: Session, store_id: str, *, up_to: int) -> int:
    """How many unexpired click records the store has, counted no further than ``up_to``
    (a cap check needs no more, and counting stops early on a full store)."""
    live = (
        select(ClickRecord.id)
        .where(ClickRecord.store_id == store_id, ClickRecord.expires_at > utcnow())
        .limit(up_to)
        .subquery()
    )
    return session.scalar(select(func.count()).select_from(live)) or 0


def has_live_click_record(session: Session, store_id: str, *, token_kind: str, token: str) -> bool:
    """Whether the token already has an unexpired record (a report for it creates none)."""
    query = select(ClickRecord.id).where(
        ClickRecord.store_id == store_id,
        ClickRecord.token_kind == token_kind,
        ClickRecord.token == token,
        ClickRecord.expires_at > utcnow(),
    )
    return session.scalar(query) is not None


def with_stored_clicks(
    connection: Connection, store_id: str, source: Order | Checkout
) -> Order | Checkout:
    """``source`` with its click ids and consent resolved against stored click records.

    Consent is taken whole from the first place that knows it: the order's own (order meta
    the WordPress plugin wrote), then the checkout token's record, then the cart token's.
    Orders remember the record they used (``order_id``) so a ``customers/redact`` for that
    order finds it. Sources without tokens, or without a matching live record, come back
    unchanged. One query looks up both tokens. (The webhook's pipeline reads the records in
    the same statement as the store's destinations, then calls :func:`with_click_records`.)
    """
    tokens = click_tokens(source)
    if not (tokens["checkout"] or tokens["cart"]):
        return source
    rows = connection.execute(LIVE_RECORDS, {"store_id": store_id, "now": utcnow(), **tokens})
    resolved, remembered = with_click_records(source, rows.mappings().all())
    if remembered:
        connection.execute(REMEMBER_ORDER, {"ids": remembered, "order_id": source.order_id})
    return resolved


def click_tokens(source: Order | Checkout) -> dict[str, str | None]:
    """The tokens a source's click records are found by: ``checkout`` and ``cart``."""
    checkout_token = source.checkout_token if isinstance(source, Order) else source.token
    return {"checkout": checkout_token, "cart": source.cart_token}


def with_click_records(
    source: Order | Checkout, rows: Sequence[Mapping[str, Any]]
) -> tuple[Order | Checkout, list[int]]:
    """``source`` resolved against its live click records (mappings of :data:`LIVE_RECORDS`'
    columns), and the ids of the records an order must remember (``order_id``), which the
    caller writes with :data:`REMEMBER_ORDER`. See :func:`with_stored_clicks`."""
    if not rows:
        return source, []
    found = sorted(rows, key=lambda row: TOKEN_KINDS.index(row["token_kind"]))
    remembered = [row["id"] for row in found] if isinstance(source, Order) else []
    stored = [
        _with_source(
            ClickIds(**{name: row[name] for name in STORED_COLUMNS}),
            STORED_SOURCES[row["token_kind"]],
        )
        for row in found
    ]
    first, *rest = source.click_candidates or (source.clicks,)
    resolved = dataclasses.replace(
        source,
        clicks=resolve_click_ids(first, *stored, *rest),
        consent=_first_known_consent(source.consent, found),
    )
    return resolved, remembered


def consent_columns(consent: Consent) -> dict[str, bool | None]:
    """The click-record column values for a reported consent (unknown choices left None)."""
    return {column: getattr(consent, name) for name, column in CONSENT_COLUMNS.items()}


def save_consent(
    session: Session, store_id: str, *, token_kind: str, token: str, consent: Consent
) -> None:
    """Record the shopper's latest consent for a token, creating its record if need be.

    Unlike click ids, consent is replaced by every report that knows it: the shopper may
    change her mind, and her latest choice is the one to honour. A record created here holds
    no click id yet, so the token's first click report still sets them
    (:func:`save_click_record`).
    """
    now = utcnow()
    record = session.scalar(
        select(ClickRecord).where(
            ClickRecord.store_id == store_id,
            ClickRecord.token_kind == token_kind,
            ClickRecord.token == token,
        )
    )
    if record is None or record.expires_at <= now:
        if record is None:
            record = ClickRecord(store_id=store_id, token_kind=token_kind, token=token)
            session.add(record)
        _start_record(record, ClickIds(), now)
    for column, value in consent_columns(consent).items():
        if value is not None:
            setattr(record, column, value)
    try:
        session.flush()
    except IntegrityError:  # the same token reported twice at once: update the other's row
        session.rollback()
        save_consent(session, store_id, token_kind=token_kind, token=token, consent=consent)


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


_ID_FIELDS = tuple(field.name for field in dataclasses.fields(ClickIds) if field.name != "source")


def _with_source(clicks: ClickIds, source: str) -> ClickIds:
    """``clicks`` naming ``source`` when it holds a click id (cookies alone name none)."""
    return dataclasses.replace(clicks, source=source if clicks.has_click() else None)


def _first_known_consent(own: Consent, rows: Sequence[Mapping[str, Any]]) -> Consent:
    """The source's own consent when known, else the first stored record's that is."""
    if own.known():
        return own
    for row in rows:
        stored = Consent(
            **{name: row[column] for name, column in CONSENT_COLUMNS.items()},
            source=STORED_SOURCES[row["token_kind"]],
        )
        if stored.known():
            return stored
    return own


def _start_record(record: ClickRecord, clicks: ClickIds, now: datetime) -> None:
    """Fill a new (or expired, now reused) record with this report's values; an expired
    record's consent goes with it."""
    _start_clicks(record, clicks)
    for column in CONSENT_COLUMNS.values():
        setattr(record, column, None)
    record.order_id = None
    record.created_at = now
    record.expires_at = now + timedelta(days=CLICK_RECORD_DAYS)


def _holds_any_click_value(record: ClickRecord) -> bool:
    return any(getattr(record, name) is not None for name in STORED_COLUMNS)


def _start_clicks(record: ClickRecord, clicks: ClickIds) -> None:
    for name in STORED_COLUMNS:
        setattr(record, name, getattr(clicks, name))


def _add_late_cookies(record: ClickRecord, clicks: ClickIds) -> Saved:
    """A live record with the report's late cookies added, unless the report contradicts it."""
    missing = []
    for name in STORED_COLUMNS:
        stored, reported = getattr(record, name), getattr(clicks, name)
        if reported is None or _same_value(name, stored, reported):
            continue
        if stored is not None or name not in LATE_COOKIE_COLUMNS:
            return Saved.REFUSED
        missing.append(name)
    for name in missing:
        setattr(record, name, getattr(clicks, name))
    return Saved.FILLED if missing else Saved.UNCHANGED


def _same_value(name: str, stored: str | None, reported: str) -> bool:
    """Equal values; for ``fbc``, the same fbclid (the creation time in it may differ)."""
    if stored is None:
        return False
    if name == "fbc":
        return _fbclid_of(stored) == _fbclid_of(reported)
    return stored == reported


def _fbclid_of(fbc: str) -> str:
    """What follows ``fb.<subdomain index>.<creation time>.`` in an fbc."""
    return fbc.split(".", 3)[-1]


def _first_clean_value(attrs: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    return next((v for v in (clean_click_id(attrs.get(k)) for k in keys) if v), None)


def _has_control_character(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)
