"""``POST /collect``: storefront code reports the shopper's click ids with a cart or checkout token.

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

* CORS only for the store's own origins: ``https://<store domain>`` and
  ``https://<each of its storefront domains>`` (a Shopify shop's primary domain, where its
  pages and checkout are served; recorded at install). The ``Origin`` must be one of the
  origins of the store named in the body, compared as an exact host (no port, no other
  scheme, no suffix tricks), and a preflight is answered only for a known store's origin;
* a 4 KiB body limit (a real report is a few hundred bytes);
* a per-IP rate limit in Redis (fixed one-minute window); without Redis the report is
  still stored, as webhooks are, since losing a click costs a match;
* every field validated (click ids and cookies as :func:`connector.clicks.clean_click_id`
  keeps them, ``fbc``/``fbp`` in Meta's ``fb.<digit>.<digits>.<...>`` shape); nothing is
  stored for a refused request.

The answer is 204 with no body: the pixel has nothing to read.

``Origin: null`` is the exception: Shopify runs pixels in sandboxed iframes without
``allow-same-origin``, whose requests carry that opaque origin. Such a report is accepted for
the store its body names, with no CORS header (the pixels send it ``no-cors``: they read no
answer). The Origin check never was authentication (any script outside a browser can send any
Origin); what protects a store is that a report only joins an order through its checkout or
cart token, which only the shopper's browser knows, plus the size and rate limits.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy import Text, cast, or_, select

from connector.clicks import (
    CAPTURED_COOKIES,
    CAPTURED_URL_PARAMETERS,
    clean_click_id,
    clean_meta_cookie,
    fbc_from_fbclid,
    save_click_record,
)
from connector.events import ClickIds
from connector.models import Store
from connector.web import services

logger = logging.getLogger(__name__)

blueprint = Blueprint("collect", __name__)

MAX_BODY_BYTES = 4096
RATE_LIMIT_PER_MINUTE = 120
"""A shopper's pixel reports a few times per page; this leaves room for shared IPs."""

TOKEN = re.compile(r"[A-Za-z0-9_\-.:?=]{1,255}")
"""Shopify checkout tokens are hex; cart tokens look like ``c1-…`` or ``Z2Nw…?key=…``."""

CLICK_FIELDS = (*CAPTURED_URL_PARAMETERS, *CAPTURED_COOKIES.values())
"""The click ids and ad cookies a report may carry, under the names the pixels send."""
META_COOKIE_FIELDS = {"fbc", "fbp"}
FIELDS = {"shop", "checkout_token", "cart_token", *CLICK_FIELDS}

LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"(?=.{{1,253}}$){LABEL}(\.{LABEL})+")
"""A DNS host name with at least one dot, in the ASCII form browsers put in ``Origin``."""


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
    if _rate_limited(request.remote_addr or "unknown"):
        return _error(429, "too many reports from this address; try again in a minute")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    report, problem = _parse(body)
    if report is None:
        return _error(400, problem)
    origin = request.headers.get("Origin", "")
    store = _store_named(report["shop"])
    sandboxed = origin == SANDBOXED_ORIGIN
    if store is None or not (sandboxed or _origin_host(origin) in _origin_hosts(store)):
        return _error(403, "the report must come from the store's own site (Origin)")
    clicks = _click_ids(report, observed_ms=time.time_ns() // 1_000_000)
    with services().db.session() as session:
        for kind in ("checkout", "cart"):
            if token := report.get(f"{kind}_token"):
                save_click_record(session, store.id, token_kind=kind, token=token, clicks=clicks)
        session.commit()
    logger.info("collect.stored store=%s", store.id)
    response = Response(status=204)
    if not sandboxed:
        _allow(response, origin)
    return response


SANDBOXED_ORIGIN = "null"
"""What a sandboxed iframe (Shopify's pixel sandboxes) sends as its ``Origin``."""


def _parse(body: bytes) -> tuple[dict[str, str] | None, str]:
    """The validated report, or None and what is wrong with it.

    Any content type is read as JSON: ``navigator.sendBeacon`` and no-preflight fetches send
    ``text/plain``.
    """
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "body is not JSON (or nested beyond any report's shape)"
    if not isinstance(data, dict) or set(data) - FIELDS:
        return None, f"body must be an object with only {', '.join(sorted(FIELDS))}"
    report = {key: value for key, value in data.items() if value not in (None, "")}
    if not isinstance(report.get("shop"), str) or not 0 < len(report["shop"]) <= 255:
        return None, "'shop' (the store's domain) is required"
    for key in ("checkout_token", "cart_token"):
        if key in report and not (isinstance(report[key], str) and TOKEN.fullmatch(report[key])):
            return None, f"'{key}' is not a valid token"
    for key in (key for key in CLICK_FIELDS if key in report):
        clean = clean_meta_cookie if key in META_COOKIE_FIELDS else clean_click_id
        report[key] = clean(report[key])
        if report[key] is None:
            shape = " (Meta's fb.<digit>.<digits>.<...>)" if key in META_COOKIE_FIELDS else ""
            return None, f"'{key}' is not a valid click id or cookie{shape}"
    if not ({"checkout_token", "cart_token"} & set(report)):
        return None, "give a checkout_token or a cart_token"
    if not (set(CLICK_FIELDS) & set(report)):
        return None, f"give a click id or an ad cookie: one of {', '.join(CLICK_FIELDS)}"
    return report, ""


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


def _rate_limited(ip: str) -> bool:
    key = f"collect:rate:{ip}:{int(time.time() // 60)}"
    try:
        pipe = services().redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = pipe.execute()
    except RedisError:
        logger.warning("collect.rate-limit-unavailable")
        return False
    return int(count) > RATE_LIMIT_PER_MINUTE


def _allow(response: Response, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"


def _error(status: int, message: str) -> tuple[Response, int]:
    logger.warning("collect.refused status=%d", status)
    return jsonify(error=message), status
