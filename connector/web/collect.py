"""``POST /collect``: storefront code reports the shopper's click ids with a cart or checkout token.

The Shopify Web Pixel (``extensions/tiktok-click-capture``) sends
``{"shop", "checkout_token" and/or "cart_token", "ttclid" and/or "ttp"}``; the order or
checkout webhook later carries the same token, and :func:`connector.clicks.with_stored_clicks`
joins them. The endpoint is public, so it is narrow:

* CORS only for the store's own origins: ``https://<store domain>`` and
  ``https://<each of its storefront domains>`` (a Shopify shop's primary domain, where its
  pages and checkout are served; recorded at install). The ``Origin`` must be one of the
  origins of the store named in the body, compared as an exact host (no port, no other
  scheme, no suffix tricks), and a preflight is answered only for a known store's origin;
* a 4 KiB body limit (a real report is a few hundred bytes);
* a per-IP rate limit in Redis (fixed one-minute window); without Redis the report is
  still stored, as webhooks are, since losing a click costs a match;
* every field validated; nothing is stored for a refused request.

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

from connector.clicks import clean_click_id, save_click_record
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

FIELDS = {"shop", "checkout_token", "cart_token", "ttclid", "ttp"}

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
    clicks = ClickIds(ttclid=report.get("ttclid"), ttp=report.get("ttp"))
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
    for key in ("ttclid", "ttp"):
        if key in report and clean_click_id(report[key]) is None:
            return None, f"'{key}' is not a valid click id"
        if key in report:
            report[key] = clean_click_id(report[key])
    if not ({"checkout_token", "cart_token"} & set(report)):
        return None, "give a checkout_token or a cart_token"
    if not ({"ttclid", "ttp"} & set(report)):
        return None, "give a ttclid or a ttp"
    return report, ""


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
