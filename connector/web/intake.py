"""What every store platform's webhook endpoint does once it knows the store and topic.

The answers are a public contract (DESIGN.md): 200 accepted (also for a duplicate and for a
topic we deliberately ignore), 401 bad or missing signature, 400 malformed body, 404 unknown
store, 413 too large, 503 only when the database cannot store the event so the platform
retries. Every error is JSON ``{"error": "..."}`` a person can act on, and each refusal is
logged under a stable key with no personal data.

A webhook is the hot path of ingest: it takes one database connection for its whole life (the
store's row, the click records, the destinations, the INSERT and the commit), through Core
statements built once, because a checkout per step and the ORM's session cost more than the
database work itself (bench/profile_webhook.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import Response, g, jsonify
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from connector.events import Checkout, Order
from connector.models import Store
from connector.pipeline import record_events
from connector.web import services

logger = logging.getLogger("connector.webhooks")

STORES = Store.__table__
_STORE_COLUMNS = (STORES.c.id, STORES.c.platform, STORES.c.webhook_secret_encrypted)
STORE_BY_DOMAIN = select(*_STORE_COLUMNS).where(
    STORES.c.platform == bindparam("platform"), STORES.c.domain == bindparam("domain")
)
STORE_BY_ID = select(*_STORE_COLUMNS).where(STORES.c.id == bindparam("store_id"))


@dataclass(frozen=True)
class WebhookStore:
    """What a webhook needs of its store: the id and the secret it is signed with."""

    id: str
    platform: str
    webhook_secret_encrypted: str | None


def store_by_domain(connection: Connection, platform: str, domain: str) -> WebhookStore | None:
    """The store of that platform and domain (Shopify names the shop in a header)."""
    row = connection.execute(STORE_BY_DOMAIN, {"platform": platform, "domain": domain}).first()
    return WebhookStore(*row) if row else None


def store_by_id(connection: Connection, store_id: str) -> WebhookStore | None:
    """The store with that id (WooCommerce webhook URLs carry it)."""
    row = connection.execute(STORE_BY_ID, {"store_id": store_id}).first()
    return WebhookStore(*row) if row else None


def refuse(status: int, message: str, *, platform: str, reason: str) -> tuple[Response, int]:
    """An error answer, logged as ``webhook.refused`` with a stable reason key."""
    logger.warning("webhook.refused platform=%s status=%d reason=%s", platform, status, reason)
    g.webhook_result = reason
    return jsonify(error=message), status


def ignore(topic: str, why: str, *, platform: str) -> tuple[Response, int]:
    """A 200 for a valid webhook we deliberately do nothing with (so it is not retried)."""
    logger.info("webhook.ignored platform=%s topic=%s reason=%s", platform, topic, why)
    g.webhook_result, g.webhook_topic = "ignored", topic
    return jsonify(status="ignored", topic=topic, reason=why), 200


def signature_matches(secrets: list[str], body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the base64 HMAC-SHA256 of the raw body under any secret.

    Shopify (``X-Shopify-Hmac-Sha256``) and WooCommerce (``X-WC-Webhook-Signature``) both sign
    this way. Compared in constant time; several secrets allow a rotation without downtime.
    """
    if not signature:
        return False
    given = signature.strip().encode()
    for secret in secrets:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        if hmac.compare_digest(base64.b64encode(digest), given):
            return True
    return False


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one.

    Python's json keeps integers exact, so 64-bit ids never pass through a float.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def accept(
    connection: Connection, store_id: str, topic: str, source: Order | Checkout, *, platform: str
) -> tuple[Response, int]:
    """Store the events of a verified, parsed webhook and answer 200, or 503 if we cannot.

    ``connection`` is the one the webhook found its store with; the events are committed on it.
    """
    g.webhook_topic = topic
    try:
        result = record_events(services(), store_id, topic, source, connection=connection)
    except SQLAlchemyError as exc:
        logger.error("webhook.store-failed platform=%s error=%s", platform, type(exc).__name__)
        return jsonify(error="the event could not be stored; please retry"), 503
    logger.info(
        "webhook.accepted platform=%s topic=%s inserted=%d duplicates=%d skipped=%d",
        platform,
        topic,
        result.inserted,
        result.duplicates,
        result.skipped,
    )
    g.webhook_result = "accepted" if result.inserted or result.skipped else "duplicate"
    return (
        jsonify(
            status="accepted",
            events=result.inserted,
            duplicates=result.duplicates,
            skipped=result.skipped,
        ),
        200,
    )
