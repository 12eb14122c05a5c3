"""``POST /webhooks/shopify``: every Shopify topic, verified, parsed, recorded.

Shopify signs the raw body: ``X-Shopify-Hmac-Sha256`` is base64(HMAC-SHA256(secret, body)),
with the app's client secret, or a custom app's own secret
(https://shopify.dev/docs/apps/build/webhooks/verify-deliveries). ``X-Shopify-Topic`` names
the topic and ``X-Shopify-Shop-Domain`` the shop. Shopify waits 5 seconds at most and retries
a failed delivery 8 times over 4 hours, so we answer at once and only 503 when we could not
store the event. The privacy topics and ``app/uninstalled`` come here too and are handled by
:mod:`platforms.shopify.compliance` once the signature is verified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import Connection

from connector.events import Checkout, Order
from connector.models import Store
from connector.services import Services
from connector.stores import webhook_secrets
from connector.web import services
from connector.web.intake import (
    accept,
    ignore,
    parse_json_object,
    refuse,
    signature_matches,
    store_by_domain,
)
from platforms.shopify.compliance import export_customer, redact_customer, redact_shop, uninstall
from platforms.shopify.parse import parse_checkout, parse_order

PLATFORM = "shopify"

blueprint = Blueprint("shopify_webhooks", __name__)

TOPIC_PARSERS: dict[str, Callable[[dict[str, Any], str], Order | Checkout]] = {
    "orders/create": parse_order,
    "orders/paid": parse_order,
    "checkouts/create": lambda payload, _topic: parse_checkout(payload),
    "checkouts/update": lambda payload, _topic: parse_checkout(payload),
}

STORE_HANDLERS: dict[str, Callable[[Services, Store, dict[str, Any]], dict[str, Any]]] = {
    "customers/redact": redact_customer,
    "customers/data_request": export_customer,
    "shop/redact": redact_shop,
    "app/uninstalled": uninstall,
}
"""Topics about the store or its customers rather than a conversion."""

PRIVACY_TOPICS = frozenset({"customers/redact", "customers/data_request", "shop/redact"})


@blueprint.post("/webhooks/shopify")
def receive() -> tuple[Response, int]:
    """Verify, parse and record one Shopify webhook, on one database connection."""
    topic = request.headers.get("X-Shopify-Topic", "").strip()
    domain = request.headers.get("X-Shopify-Shop-Domain", "").strip().lower()
    signature = request.headers.get("X-Shopify-Hmac-Sha256")
    body = request.get_data(cache=False)
    with services().db.engine.connect() as connection:
        return _receive(connection, topic, domain, signature, body)


def _receive(
    connection: Connection, topic: str, domain: str, signature: str | None, body: bytes
) -> tuple[Response, int]:
    app_secret = services().settings.shopify_api_secret
    store = store_by_domain(connection, PLATFORM, domain) if domain else None
    if store is None:
        if app_secret and not signature_matches([app_secret], body, signature):
            return refuse(401, "invalid webhook signature", platform=PLATFORM, reason="bad-hmac")
        if app_secret and topic in PRIVACY_TOPICS:
            # Already redacted (or never installed): nothing is stored, so nothing to do.
            return ignore(topic, "no data stored for this shop", platform=PLATFORM)
        return refuse(
            404,
            "unknown shop: register it with `connector stores add-shopify` or install the app",
            platform=PLATFORM,
            reason="unknown-store",
        )
    secrets = webhook_secrets(services(), store.webhook_secret_encrypted, app_secret)
    if not signature_matches(secrets, body, signature):
        return refuse(
            401,
            "invalid webhook signature: check the store's webhook secret",
            platform=PLATFORM,
            reason="bad-hmac" if signature else "missing-hmac",
        )
    payload = parse_json_object(body)
    if payload is None:
        return refuse(400, "body is not a JSON object", platform=PLATFORM, reason="bad-json")
    if topic == "app/uninstalled" and store.webhook_secret_encrypted:
        # Signed with the store's own secret: its custom app went, not an install of ours,
        # and its webhooks stop with it; what was already received is still sent.
        return ignore(
            topic,
            "a custom-app store: the connector's app is not installed there",
            platform=PLATFORM,
        )
    handler = STORE_HANDLERS.get(topic)
    if handler is not None:
        g.webhook_result, g.webhook_topic = "accepted", topic
        return jsonify(handler(services(), _full_store(store.id), payload)), 200
    parser = TOPIC_PARSERS.get(topic)
    if parser is None:
        return ignore(topic, "topic not used for conversions", platform=PLATFORM)
    try:
        source = parser(payload, topic)
    except ValueError as exc:
        return refuse(400, f"cannot read {topic}: {exc}", platform=PLATFORM, reason="bad-payload")
    return accept(connection, store.id, topic, source, platform=PLATFORM)


def _full_store(store_id: str) -> Store:
    """The store's whole row, for the topics about the store itself (rare, unlike orders)."""
    with services().db.session() as session:
        return session.get_one(Store, store_id)
