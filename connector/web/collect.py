"""``POST /collect``: storefront code reports the shopper's click ids and consent with a cart or
checkout token, and what the browser pixel did for a purchase.

Two kinds of report share the endpoint and its limits:

* a *token report* (below) carries click ids, ad cookies and the shopper's consent choices
  (``consent_marketing``, ``consent_analytics``, ``consent_sale_of_data``: ``"granted"`` or
  ``"denied"``, left out when unknown) with a checkout or cart token. Consent, unlike a click,
  is replaced by each report that gives it: the shopper's latest choice is the one to honour
  (:func:`connector.clicks.save_consent`);
* a *pixel receipt* ``{"shop", "receipt": "reported" | "blocked", "event_id", "pixel"}``: the
  storefront code that fired the ad platform's browser pixel for a purchase says whether its
  script loaded and the purchase call was made, for the recovered-conversions ledger
  (:mod:`connector.receipts`). It holds no personal data and needs no token.

The Shopify Web Pixel (``extensions/tiktok-click-capture``) and custom pixel send
``{"shop", "checkout_token" and/or "cart_token"}`` with at least one of the landing URL's click
ids (``ttclid``, ``fbclid``, ``gclid``, ``gbraid``, ``wbraid``) and the ad cookies (``ttp``,
``fbc``, ``fbp`` from ``_ttp``, ``_fbc``, ``_fbp``; see :data:`connector.clicks.CAPTURED_COOKIES`);
the order or checkout webhook later carries the same token, and
:func:`connector.clicks.with_stored_clicks` joins them. An ``fbclid`` without ``fbc`` is kept
as the ``fbc`` Meta documents for a shop without the Meta Pixel's cookie,
``fb.1.<now in ms>.<fbclid>``: the report is when we first see that fbclid
(https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc).
The endpoint is public, so it is narrow:

* the report must come from the store's own site. A browser page's ``Origin`` must be exactly
  one of the store's origins: ``https://<store domain>`` or ``https://<each of its storefront
  domains>`` (a Shopify shop's primary domain, where its pages and checkout are served;
  recorded at install); no port, no other scheme, no suffix tricks. CORS is answered for
  those origins only, and a preflight only for a known store's origin. ``Origin: null`` is
  accepted only for a Shopify store installed through the app (it has a ``shopify_tokens``
  row, :class:`connector.models.ShopifyToken`; an uninstall deletes it), which is the store
  the app's Web Pixel runs for: Shopify runs web and custom pixels in sandboxed iframes without
  ``allow-same-origin``, whose requests carry that opaque origin, and sends no CORS answer to
  them (the pixels send ``no-cors``: they read no answer). A WooCommerce store's pages, or a
  custom-app Shopify store's, are its own https origin and never ``null``;
* a 4 KiB body limit (413; a real report is a few hundred bytes) and JSON nested no deeper
  than :data:`MAX_JSON_DEPTH` (400, checked before parsing, so depth never reaches the
  parser's recursion);
* limits that are never off: :data:`RATE_LIMIT_PER_MINUTE` reports per IP and
  :data:`STORE_REPORTS_PER_MINUTE` per store, counted in Redis, or per process when Redis is
  down (:mod:`connector.rate_limits`); and at most :data:`MAX_LIVE_RECORDS_PER_STORE`
  unexpired click records per store: beyond it a report that would create one is refused
  with 429, never stored by evicting an older one (which would silently lose a real click);
* a click record is write-once (:func:`connector.clicks.save_click_record`): the first report
  for a checkout or cart token sets its click ids; later reports may only add an ad cookie
  it lacked (``ttp``, ``fbp``, which the ad pixels may set after the first report). A report
  that would replace or add a click id of a live record changes nothing of that record and
  is answered 409 (the report's other token is still recorded, so a shopper who clicked
  another ad and started a new checkout with the same cart still has that checkout's click).
  Of the two rules weighed, this is the stricter: the other, a replacement allowed to a report
  carrying both the checkout token and the cart token the record was created with, would need
  a column linking the two and still let anyone holding both re-attribute the order. The cost
  is that a second ad click during the same checkout keeps the first, the same shopper's.
  The pixels' real sequence keeps working: both report the same landing-page ids (kept in
  sessionStorage) with the cart token and, once known, the checkout token, on
  ``checkout_started`` and again on ``checkout_completed``; a repeat finds the same values,
  and a checkout token reported after its cart's creates the checkout's own record;
* every field validated (click ids and cookies as :func:`connector.clicks.clean_click_id`
  keeps them, ``fbc``/``fbp`` in Meta's ``fb.<digit>.<digits>.<...>`` shape); nothing is
  stored for a refused request (but see 409 above).

The answer is 204 with no body: the pixel has nothing to read.

The Origin check is not authentication (any script outside a browser can send any Origin):
what protects a store is that a report only joins an order through its checkout or cart token,
which only the shopper's browser knows, that a recorded click is never replaced, and that a
store's records and writes are capped, so a flood costs at most the store's new clicks for a
while, never unbounded storage.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Collection
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from redis import Redis
from sqlalchemy import Text, cast, or_, select

from connector.clicks import (
    CAPTURED_COOKIES,
    CAPTURED_URL_PARAMETERS,
    CLICK_RECORD_DAYS,
    CONSENT_COLUMNS,
    TOKEN_KINDS,
    Saved,
    clean_click_id,
    clean_meta_cookie,
    fbc_from_fbclid,
    has_live_click_record,
    live_click_record_count,
    save_click_record,
    save_consent,
)
from connector.events import ClickIds, Consent
from connector.models import ShopifyToken, Store
from connector.rate_limits import MinuteLimit
from connector.receipts import DEFAULT_RECEIPT_PIXEL, save_pixel_receipt
from connector.web import services

logger = logging.getLogger(__name__)

blueprint = Blueprint("collect", __name__)

MAX_BODY_BYTES = 4096
MAX_JSON_DEPTH = 2
"""A report is one flat object (depth 1); one level more lets a list or object in a field be
refused with the field's own message."""

RATE_LIMIT_PER_MINUTE = 120
"""A shopper's pixel reports a few times per page; this leaves room for shared IPs."""

STORE_REPORTS_PER_MINUTE = 600
"""A checkout reports two or three times (``checkout_started``, again on a reload, then
``checkout_completed``): 600 a minute is some 200 checkouts a minute, a flash sale's peak for a
large shop. A refused report costs only the stored click: the order still converts, with its
own attributes and landing page."""

MAX_LIVE_RECORDS_PER_STORE = 100_000
"""Unexpired click records one store may hold. A checkout makes at most two (its checkout
token's and its cart token's), each kept :data:`connector.clicks.CLICK_RECORD_DAYS` (7) days,
so this holds a week of some 7,000 checkouts a day, a shop of several thousand orders a day
(about 120 MB at the ~1.2 KB a row takes at most)."""

LIMITS_KEY = "collect.limits"

TOKEN = re.compile(r"[A-Za-z0-9_\-.:?=]{1,255}")
"""Shopify checkout tokens are hex; cart tokens look like ``c1-…`` or ``Z2Nw…?key=…``."""

CLICK_FIELDS = (*CAPTURED_URL_PARAMETERS, *CAPTURED_COOKIES.values())
"""The click ids and ad cookies a report may carry, under the names the pixels send."""
META_COOKIE_FIELDS = {"fbc", "fbp"}
CONSENT_FIELDS = {f"consent_{name}": name for name in CONSENT_COLUMNS}
"""The consent choices a token report may carry, each ``"granted"`` or ``"denied"``."""
CONSENT_VALUES = {"granted": True, "denied": False}
RECEIPT_FIELDS = {"shop", "receipt", "event_id", "pixel"}
RECEIPT_OUTCOMES = ("reported", "blocked")
"""``reported``: the ad platform's pixel script loaded and its purchase call was made;
``blocked``: the script did not load (an ad blocker, a network error, a timeout)."""
EVENT_ID = re.compile(r"[A-Za-z0-9_\-.:]{1,255}")
FIELDS = {"shop", "checkout_token", "cart_token", *CLICK_FIELDS, *CONSENT_FIELDS}

LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"(?=.{{1,253}}$){LABEL}(\.{LABEL})+")
"""A DNS host name with at least one dot, in the ASCII form browsers put in ``Origin``."""

SANDBOXED_ORIGIN = "null"
"""What a sandboxed iframe (Shopify's pixel sandboxes) sends as its ``Origin``."""


@blueprint.route("/collect", methods=["OPTIONS"])
def preflight() -> Response:
    """The CORS preflight: allowed only for a registered store's origin."""
    origin = request.headers.get("Origin", "")
    response = Response(status=204)
    if _store_for_origin(origin) is not None:
        _allow(response, origin)
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


@blueprint.post("/collect")
def collect() -> Response | tuple[Response, int]:
    """Validate and store one click report."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if _limits()["ip"].exceeded(_redis, request.remote_addr or "unknown"):
        return _error(429, "too many reports from this address; try again in a minute")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    report, problem = _parse(body)
    if report is None:
        return _error(400, problem)
    origin = request.headers.get("Origin", "")
    store = _store_named(report["shop"])
    if store is None or not _origin_allowed(store, origin):
        return _error(403, _origin_problem(origin))
    if _limits()["store"].exceeded(_redis, store.id):
        return _error(429, "too many reports for this store this minute; try again in a minute")
    if "receipt" in report:
        _save_receipt(store.id, report)
        logger.info("collect.receipt store=%s outcome=%s", store.id, report["receipt"])
        return _no_content(origin)
    saved = _save(store.id, report)
    if saved is None:
        logger.warning("collect.store-full store=%s", store.id)
        return _error(
            429,
            f"this store already holds {MAX_LIVE_RECORDS_PER_STORE} unexpired click records, the "
            f"most kept; new ones are accepted as older ones expire ({CLICK_RECORD_DAYS} days "
            "after their first report)",
        )
    logger.info("collect.stored store=%s", store.id)
    if refused := [kind for kind, outcome in saved.items() if outcome is Saved.REFUSED]:
        return _error(
            409,
            f"the click ids already recorded for this {' and '.join(refused)} token are kept: "
            "a recorded click id is never replaced or added to",
        )
    return _no_content(origin)


def _no_content(origin: str) -> Response:
    """204, with CORS for a store's own origin (a sandboxed pixel reads no answer)."""
    response = Response(status=204)
    if origin != SANDBOXED_ORIGIN:
        _allow(response, origin)
    return response


def _save_receipt(store_id: str, report: dict[str, str]) -> None:
    """Keep what the browser pixel did for one purchase; a ``reported`` outcome replaces a
    ``blocked`` one (the shopper reloaded the page and the pixel loaded that time), never the
    reverse: once the browser reached the platform, it did."""
    with services().db.session() as session:
        save_pixel_receipt(
            session,
            store_id,
            pixel=report.get("pixel", DEFAULT_RECEIPT_PIXEL),
            event_id=report["event_id"],
            outcome=report["receipt"],
        )
        session.commit()


def _save(store_id: str, report: dict[str, str]) -> dict[str, Saved] | None:
    """What became of each token's record, or None (and nothing stored) when the report would
    create records beyond :data:`MAX_LIVE_RECORDS_PER_STORE`.

    Each token is committed on its own: a refused one does not cost the other its record.
    Reports arriving at the same instant may pass the cap by a few records.
    """
    clicks = _click_ids(report, observed_ms=time.time_ns() // 1_000_000)
    tokens = {kind: report[f"{kind}_token"] for kind in TOKEN_KINDS if f"{kind}_token" in report}
    with services().db.session() as session:
        new = [
            kind
            for kind, token in tokens.items()
            if not has_live_click_record(session, store_id, token_kind=kind, token=token)
        ]
        if new:
            live = live_click_record_count(session, store_id, up_to=MAX_LIVE_RECORDS_PER_STORE)
            if live + len(new) > MAX_LIVE_RECORDS_PER_STORE:
                return None
        consent = _consent(report)
        saved = {}
        for kind, token in tokens.items():
            if consent.known():
                save_consent(session, store_id, token_kind=kind, token=token, consent=consent)
            if any(key in report for key in CLICK_FIELDS):
                saved[kind] = save_click_record(
                    session, store_id, token_kind=kind, token=token, clicks=clicks
                )
            session.commit()
    return saved


def _consent(report: dict[str, str]) -> Consent:
    """The report's consent choices; those it does not give stay unknown."""
    return Consent(
        **{
            name: CONSENT_VALUES[report[field]]
            for field, name in CONSENT_FIELDS.items()
            if field in report
        }
    )


def _parse(body: bytes) -> tuple[dict[str, str] | None, str]:
    """The validated report, or None and what is wrong with it.

    Any content type is read as JSON: ``navigator.sendBeacon`` and no-preflight fetches send
    ``text/plain``.
    """
    if _nested_deeper_than(body, MAX_JSON_DEPTH):
        return None, "body is nested deeper than a report (one object of strings)"
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "body is not JSON"
    if not isinstance(data, dict):
        return None, "body must be a JSON object"
    report = {key: value for key, value in data.items() if value not in (None, "")}
    if not isinstance(report.get("shop"), str) or not 0 < len(report["shop"]) <= 255:
        return None, "'shop' (the store's domain) is required"
    if "receipt" in report:
        return _parse_receipt(report)
    if set(data) - FIELDS:
        return None, f"body must be an object with only {', '.join(sorted(FIELDS))}"
    for key in ("checkout_token", "cart_token"):
        if key in report and not (isinstance(report[key], str) and TOKEN.fullmatch(report[key])):
            return None, f"'{key}' is not a valid token"
    for key in (key for key in CLICK_FIELDS if key in report):
        clean = clean_meta_cookie if key in META_COOKIE_FIELDS else clean_click_id
        report[key] = clean(report[key])
        if report[key] is None:
            shape = " (Meta's fb.<digit>.<digits>.<...>)" if key in META_COOKIE_FIELDS else ""
            return None, f"'{key}' is not a valid click id or cookie{shape}"
    for key in (key for key in CONSENT_FIELDS if key in report):
        if not _one_of(report[key], CONSENT_VALUES):
            return None, f'\'{key}\' must be "granted" or "denied" (leave it out when unknown)'
    if not ({"checkout_token", "cart_token"} & set(report)):
        return None, "give a checkout_token or a cart_token"
    if not ({*CLICK_FIELDS, *CONSENT_FIELDS} & set(report)):
        return None, (
            f"give a click id, an ad cookie or a consent choice: one of "
            f"{', '.join((*CLICK_FIELDS, *CONSENT_FIELDS))}"
        )
    return report, ""


def _parse_receipt(report: dict[str, Any]) -> tuple[dict[str, str] | None, str]:
    """A pixel receipt: ``receipt``, ``event_id``, and ``pixel`` (a destination kind)."""
    if set(report) - RECEIPT_FIELDS:
        return None, f"a receipt is an object with only {', '.join(sorted(RECEIPT_FIELDS))}"
    if not _one_of(report["receipt"], RECEIPT_OUTCOMES):
        return None, f"'receipt' must be one of {', '.join(RECEIPT_OUTCOMES)}"
    event_id = report.get("event_id")
    if not (isinstance(event_id, str) and EVENT_ID.fullmatch(event_id)):
        return None, "'event_id' (the browser event's id: the order id) is missing or not valid"
    pixel = report.get("pixel", DEFAULT_RECEIPT_PIXEL)
    if not _one_of(pixel, services().destinations):
        return None, f"'pixel' must be one of {', '.join(services().destinations)}"
    return report, ""


def _one_of(value: Any, allowed: Collection[str]) -> bool:
    """Whether ``value`` is one of the ``allowed`` strings: any other JSON value (a list or an
    object would not even hash) is not."""
    return isinstance(value, str) and value in allowed


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON text opens more than ``limit`` arrays or objects inside one another.

    Counted on the bytes, outside strings, before any parsing: the parser recurses once per
    level, and a few KB of ``[`` would otherwise reach Python's recursion limit. Multi-byte
    UTF-8 characters never contain the ASCII bytes counted here.
    """
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == BACKSLASH:
                escaped = True
            elif byte == QUOTE:
                in_string = False
        elif byte == QUOTE:
            in_string = True
        elif byte in OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in CLOSERS:
            depth -= 1
    return False


QUOTE, BACKSLASH = ord('"'), ord("\\")
OPENERS, CLOSERS = frozenset(b"[{"), frozenset(b"]}")


def _click_ids(report: dict[str, str], observed_ms: int) -> ClickIds:
    """The report's click ids and cookies; an fbclid without an ``_fbc`` becomes the fbc built
    from it (:func:`connector.clicks.fbc_from_fbclid`), the form a click record keeps."""
    fbclid = report.get("fbclid")
    fbc = report.get("fbc") or (fbc_from_fbclid(fbclid, observed_ms) if fbclid else None)
    return ClickIds(
        ttclid=report.get("ttclid"),
        ttp=report.get("ttp"),
        fbclid=fbclid,
        fbc=fbc,
        fbp=report.get("fbp"),
        gclid=report.get("gclid"),
        gbraid=report.get("gbraid"),
        wbraid=report.get("wbraid"),
    )


def _origin_host(origin: str) -> str | None:
    """The host of an ``https://host`` origin, or None for anything else (another scheme, a
    port, a path, ``null``)."""
    if not origin.startswith("https://"):
        return None
    host = origin.removeprefix("https://").lower()
    return host if HOST.fullmatch(host) else None


def _origin_allowed(store: Store, origin: str) -> bool:
    """Whether ``origin`` is one of the store's own: an exact https origin of its hosts, or
    ``null`` for a store the app's pixel runs for (:func:`_installed_through_the_app`)."""
    if origin == SANDBOXED_ORIGIN:
        return _installed_through_the_app(store)
    return _origin_host(origin) in _origin_hosts(store)


def _installed_through_the_app(store: Store) -> bool:
    """A Shopify store with an app install (a :class:`ShopifyToken`): the install activates
    the app's Web Pixel, whose sandbox sends ``Origin: null``. Custom-app Shopify stores and
    WooCommerce stores have no such row."""
    if store.platform != "shopify":
        return False
    with services().db.session() as session:
        return session.get(ShopifyToken, store.id) is not None


def _origin_problem(origin: str) -> str:
    if origin == SANDBOXED_ORIGIN:
        return (
            "'Origin: null' (a sandboxed pixel) is accepted only for a Shopify store installed "
            "through the app; this store's reports must come from its own site (Origin)"
        )
    return "the report must come from the store's own site (Origin)"


def _origin_hosts(store: Store) -> set[str]:
    """The hosts a store's own pages are served from."""
    return {store.domain, *(store.storefront_domains or [])}


def _store_for_origin(origin: str) -> Store | None:
    """The active store one of whose origins is exactly this one."""
    host = _origin_host(origin)
    if host is None:
        return None
    # The JSON list is searched as text for the quoted host (a host has no LIKE wildcards),
    # then checked exactly; the same on SQLite and PostgreSQL.
    listed = cast(Store.storefront_domains, Text).like(f'%"{host}"%')
    query = select(Store).where(Store.status == "active", or_(Store.domain == host, listed))
    with services().db.session() as session:
        stores = session.scalars(query).all()
    return next((store for store in stores if host in _origin_hosts(store)), None)


def _store_named(shop: str) -> Store | None:
    """The active store whose domain the report names."""
    query = select(Store).where(Store.domain == shop.lower(), Store.status == "active")
    with services().db.session() as session:
        return session.scalar(query)


def _limits() -> dict[str, MinuteLimit]:
    """This app's limits, per IP and per store, made on first use; each holds its in-process
    fallback buckets, so they last as long as the app (one per web process)."""
    limits = current_app.extensions.get(LIMITS_KEY)
    if limits is None:
        limits = current_app.extensions.setdefault(
            LIMITS_KEY,
            {
                "ip": MinuteLimit("collect:rate", RATE_LIMIT_PER_MINUTE),
                "store": MinuteLimit("collect:store", STORE_REPORTS_PER_MINUTE),
            },
        )
    return limits


def _redis() -> Redis:
    return services().redis


def _allow(response: Response, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"


def _error(status: int, message: str) -> tuple[Response, int]:
    logger.warning("collect.refused status=%d", status)
    return jsonify(error=message), status
