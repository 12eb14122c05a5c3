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
from sqlalchemy.exc import SQLAlchemyError

from connector.events import Checkout, Order, UnreadablePayload
from connector.models import Store
from connector.services import Services
from connector.web import services
from connector.web.intake import (
    MalformedBody,
    SecretUnavailable,
    WebhookStore,
    answer_webhook,
    confirmed,
    find_store,
    ignore,
    keep,
    parse_json_object,
    read_and_record,
    refuse,
    secret_unavailable,
    signature_matches,
    store_secrets,
)
from platforms.shopify.compliance import export_customer, redact_customer, redact_shop, uninstall
from platforms.shopify.parse import read_webhook

PLATFORM = "shopify"

blueprint = Blueprint("shopify_webhooks", __name__)

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
    """Verify, parse and record one Shopify webhook, on one database connection.

    The shop is first taken from memory; whatever that copy cannot decide alone starts over
    with the shop read from the database (:func:`answer_webhook`).
    """
    topic = request.headers.get("X-Shopify-Topic", "").strip()
    domain = request.headers.get("X-Shopify-Shop-Domain", "").strip().lower()
    signature = request.headers.get("X-Shopify-Hmac-Sha256")
    body = request.get_data(cache=False)
    return answer_webhook(
        lambda connection, fresh: _receive(connection, topic, domain, signature, body, fresh=fresh)
    )


def _receive(
    connection: Connection,
    topic: str,
    domain: str,
    signature: str | None,
    body: bytes,
    *,
    fresh: bool,
) -> tuple[Response, int]:
    app_secret = services().settings.shopify_api_secret
    store = find_store(connection, PLATFORM, domain=domain, fresh=fresh) if domain else None
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
    try:
        secrets = store_secrets(store, app_secret)
    except SecretUnavailable:
        confirmed(store)
        return secret_unavailable(PLATFORM)
    if not signature_matches(secrets, body, signature):
        confirmed(store)  # the secret may have changed since the store was remembered
        return refuse(
            401,
            "invalid webhook signature: check the store's webhook secret",
            platform=PLATFORM,
            reason="bad-hmac" if signature else "missing-hmac",
        )
    handler = STORE_HANDLERS.get(topic)
    if handler is None:
        return read_and_record(
            connection,
            store,
            topic,
            body,
            lambda payload: read_webhook(topic, payload),
            ignored_because="topic not used for conversions",
        )
    return _handle_store_topic(connection, store, topic, body, handler)


def _handle_store_topic(
    connection: Connection,
    store: WebhookStore,
    topic: str,
    body: bytes,
    handler: Callable[[Services, Store, dict[str, Any]], dict[str, Any]],
) -> tuple[Response, int]:
    """The privacy topics and ``app/uninstalled``: acted on at once.

    What they ask (delete, export, forget the install) must happen now, so they are not
    queued; one we cannot read is kept like any other and listed, for a person to act on.
    """
    confirmed(store)
    try:
        payload = parse_json_object(body)
    except MalformedBody as exc:
        return refuse(400, str(exc), platform=PLATFORM, reason="bad-json")
    except UnreadablePayload as exc:
        return keep(connection, store, topic, body, exc)
    if topic == "app/uninstalled" and store.webhook_secret_encrypted:
        # Signed with the store's own secret: its custom app went, not an install of ours,
        # and its webhooks stop with it; what was already received is still sent.
        return ignore(
            topic,
            "a custom-app store: the connector's app is not installed there",
            platform=PLATFORM,
        )
    try:
        outcome = handler(services(), _full_store(store.id), payload)
    except SQLAlchemyError:
        raise  # the app answers 503 and Shopify sends the request again
    except Exception as exc:  # a request we could not carry out is kept for a person, never a 500
        return keep(connection, store, topic, body, exc)
    g.webhook_result, g.webhook_topic = "accepted", topic
    return jsonify(outcome), 200


def read_kept_webhook(topic: str, payload: dict[str, Any]) -> Order | Checkout | None:
    """How ``events reprocess`` reads a kept Shopify body: conversions as their webhook
    would; a privacy or uninstall request stays listed, because carrying it out late, unseen,
    is not what its sender asked for: a person reads its reason and acts."""
    if topic in STORE_HANDLERS:
        raise UnreadablePayload(f"a {topic} request that could not be read must be handled by hand")
    return read_webhook(topic, payload)


def _full_store(store_id: str) -> Store:
    """The store's whole row, for the topics about the store itself (rare, unlike orders)."""
    with services().db.session() as session:
        return session.get_one(Store, store_id)
