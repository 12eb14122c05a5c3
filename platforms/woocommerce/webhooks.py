"""``POST /webhooks/woocommerce/<store_id>``: a WooCommerce store's webhooks and its ping.

WooCommerce signs the exact JSON body: ``X-WC-Webhook-Signature`` is
base64(HMAC-SHA256(secret, body)) (``class-wc-webhook.php`` ``generate_signature``). When a
webhook is created it sends an unsigned, form-encoded ``webhook_id=N`` ping and treats
anything but HTTP 200 as an error, so the ping gets 200. WooCommerce never retries a failed
delivery and disables a webhook after repeated failures: answering fast matters more here.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, request
from sqlalchemy import Connection

from connector.web.intake import (
    SecretUnavailable,
    answer_webhook,
    confirmed,
    find_store,
    ignore,
    read_and_record,
    refuse,
    secret_unavailable,
    signature_matches,
    store_secrets,
)
from platforms.woocommerce.parse import ORDER_TOPICS, read_webhook

PLATFORM = "woocommerce"
PING_BODY = re.compile(rb"webhook_id=\d+")

blueprint = Blueprint("woocommerce_webhooks", __name__)


@blueprint.post("/webhooks/woocommerce/<store_id>")
def receive(store_id: str) -> tuple[Response, int]:
    """Verify, parse and record one WooCommerce webhook, or answer its creation ping.

    The store is first taken from memory; whatever that copy cannot decide alone starts over
    with the store read from the database (:func:`answer_webhook`).
    """
    body = request.get_data(cache=False)
    signature = request.headers.get("X-WC-Webhook-Signature")
    return answer_webhook(
        lambda connection, fresh: _receive(connection, store_id, signature, body, fresh=fresh)
    )


def _receive(
    connection: Connection, store_id: str, signature: str | None, body: bytes, *, fresh: bool
) -> tuple[Response, int]:
    store = find_store(connection, PLATFORM, store_id=store_id, fresh=fresh)
    if store is not None and store.platform != PLATFORM:
        confirmed(store)
    if store is None or store.platform != PLATFORM:
        return refuse(
            404,
            "unknown store: use the webhook URL printed by `connector stores connect-woocommerce`"
            " (or `add-woocommerce`)",
            platform=PLATFORM,
            reason="unknown-store",
        )
    if signature is None and PING_BODY.fullmatch(body.strip()):
        confirmed(store)
        return ignore("ping", "webhook created", platform=PLATFORM)
    try:
        secrets = store_secrets(store)
    except SecretUnavailable:
        confirmed(store)
        return secret_unavailable(PLATFORM)
    if not signature_matches(secrets, body, signature):
        confirmed(store)  # the secret may have changed since the store was remembered
        return refuse(
            401,
            "invalid webhook signature: the webhook's secret must be the store's secret",
            platform=PLATFORM,
            reason="bad-signature" if signature else "missing-signature",
        )
    topic = request.headers.get("X-WC-Webhook-Topic", "").strip()
    return read_and_record(
        connection,
        store,
        topic,
        body,
        lambda payload: read_webhook(topic, payload),
        ignored_because=(
            "order not paid yet" if topic in ORDER_TOPICS else "topic not used for conversions"
        ),
    )
