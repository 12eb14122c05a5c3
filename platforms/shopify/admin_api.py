"""The GraphQL Admin API calls the app makes: webhook subscriptions, Web Pixel activation and
the shop's primary domain.

New public apps must use the GraphQL Admin API only (since 2025-04-01). A call is
``POST {admin}/admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``. From
API 2025-10 ``webhookSubscriptionCreate`` takes the destination as ``uri`` (``callbackUrl``
is deprecated; https://shopify.dev/changelog/consolidate-webhook-graphql-surfaces), and
answers ``{webhookSubscription {id}, userErrors {field message}}``
(https://shopify.dev/docs/api/admin-graphql/2025-10/mutations/webhookSubscriptionCreate).
The call uses ``requests`` rather than ``shopify.GraphQL``, which reads the shop and token
from class-level state shared by every thread.

A 401 means the token expired or was revoked: the token is refreshed once and the call
repeated (:func:`platforms.shopify.tokens.access_token` with ``force_refresh``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests

from connector.services import Services
from connector.web.collect import HOST
from platforms.shopify.tokens import access_token

logger = logging.getLogger(__name__)

API_VERSION = "2025-10"

WEBHOOK_TOPICS = {
    "orders/create": "ORDERS_CREATE",
    "orders/paid": "ORDERS_PAID",
    "checkouts/create": "CHECKOUTS_CREATE",
    "checkouts/update": "CHECKOUTS_UPDATE",
    "app/uninstalled": "APP_UNINSTALLED",
}
"""The topics the connector needs, as webhook topic -> GraphQL ``WebhookSubscriptionTopic``.
Compliance topics cannot be subscribed through the API; ``shopify.app.toml`` declares them."""

SUBSCRIBE = """
mutation webhookSubscriptionCreate($topic: WebhookSubscriptionTopic!,
                                   $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id }
    userErrors { field message }
  }
}
"""

ACTIVATE_PIXEL = """
mutation webPixelCreate($webPixel: WebPixelInput!) {
  webPixelCreate(webPixel: $webPixel) {
    webPixel { id }
    userErrors { code field message }
  }
}
"""

PRIMARY_DOMAIN = """
query shopPrimaryDomain {
  shop { primaryDomain { host } }
}
"""
"""``Domain.host`` is "the host name of the domain, for example ``example.com``"
(https://shopify.dev/docs/api/admin-graphql/latest/objects/Domain); ``shop.primaryDomain`` is
the online store's main domain (the Storefront API documents the same field; Admin API apps
query it exactly so)."""

ALREADY_TAKEN = "already been taken"
"""Shopify's userError for a topic already subscribed to that address: a reinstall, fine."""


class AdminApiError(Exception):
    """A GraphQL call failed; the message says what to check."""


def subscribe_webhooks(
    services: Services, store_id: str, admin_base: str, webhook_url: str
) -> dict[str, str]:
    """Subscribe every :data:`WEBHOOK_TOPICS` topic to ``webhook_url``; topic -> id or
    ``"existing"``.

    Raises:
        AdminApiError: a topic could not be subscribed (scopes missing, URL refused...).
    """
    created = {}
    for topic, enum in WEBHOOK_TOPICS.items():
        variables = {"topic": enum, "webhookSubscription": {"uri": webhook_url, "format": "JSON"}}
        data = graphql(services, store_id, admin_base, SUBSCRIBE, variables)
        result = data["webhookSubscriptionCreate"]
        errors = [e.get("message", "") for e in result.get("userErrors") or []]
        if errors and all(ALREADY_TAKEN in message for message in errors):
            created[topic] = "existing"
        elif errors:
            raise AdminApiError(f"Shopify refused the {topic} subscription: {'; '.join(errors)}")
        else:
            created[topic] = result["webhookSubscription"]["id"]
    logger.info("shopify.webhooks-subscribed store=%s topics=%d", store_id, len(created))
    return created


def activate_pixel(services: Services, store_id: str, admin_base: str, collect_url: str) -> str:
    """Turn the Web Pixel extension on for the shop, pointed at ``collect_url``; its id, or
    ``"existing"`` when the shop already has it.

    ``webPixelCreate(webPixel: {settings})`` takes the settings as a JSON string, checked
    against ``[settings]`` in ``shopify.extension.toml``; it needs ``write_pixels``
    (https://shopify.dev/docs/api/admin-graphql/2025-10/mutations/webPixelCreate). That a
    second create answers the user error code ``TAKEN`` is our reading, not confirmed.

    Raises:
        AdminApiError: the pixel could not be activated (extension not deployed, scope...).
    """
    variables = {"webPixel": {"settings": json.dumps({"collectUrl": collect_url})}}
    result = graphql(services, store_id, admin_base, ACTIVATE_PIXEL, variables)["webPixelCreate"]
    errors = result.get("userErrors") or []
    if errors and all(e.get("code") == "TAKEN" for e in errors):
        return "existing"
    if errors:
        messages = "; ".join(e.get("message", "") for e in errors)
        raise AdminApiError(f"Shopify refused to activate the Web Pixel: {messages}")
    return result["webPixel"]["id"]


def primary_domain(services: Services, store_id: str, admin_base: str) -> str:
    """The host of the shop's primary domain, lowercase ASCII (``shop.example.com``, or the
    ``*.myshopify.com`` domain when the shop has no domain of its own).

    Its storefront and checkout pages are served there, so the click-capture pixels report
    from that origin. An internationalised host is turned into the ASCII form that browsers
    send in ``Origin``, and checked as ``POST /collect`` checks an Origin's host.

    Raises:
        AdminApiError: Shopify did not answer with a host name.
    """
    data = graphql(services, store_id, admin_base, PRIMARY_DOMAIN, {})
    host = ((data.get("shop") or {}).get("primaryDomain") or {}).get("host")
    try:
        ascii_host = str(host).strip().lower().encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    if not isinstance(host, str) or not HOST.fullmatch(ascii_host):
        raise AdminApiError(f"Shopify's primary domain is not a host name: {host!r}")
    return ascii_host


def graphql(
    services: Services,
    store_id: str,
    admin_base: str,
    query: str,
    variables: dict[str, Any],
) -> dict[str, Any]:
    """The ``data`` of one GraphQL call, refreshing the token once on a 401."""
    token = access_token(services, store_id, admin_base)
    answer = _post(services, admin_base, token, query, variables)
    if answer.status_code == 401:
        token = access_token(services, store_id, admin_base, force_refresh=True)
        answer = _post(services, admin_base, token, query, variables)
    if answer.status_code != 200:
        raise AdminApiError(f"Shopify's Admin API answered HTTP {answer.status_code}")
    try:
        body = answer.json()
    except ValueError:
        raise AdminApiError("Shopify's Admin API answered something that is not JSON") from None
    if body.get("errors") or not isinstance(body.get("data"), dict):
        raise AdminApiError(f"Shopify's Admin API refused the query: {body.get('errors')}")
    return body["data"]


def _post(
    services: Services, admin_base: str, token: str, query: str, variables: dict[str, Any]
) -> requests.Response:
    url = f"{admin_base}/admin/api/{API_VERSION}/graphql.json"
    try:
        return services.http.post(
            url,
            json={"query": query, "variables": variables},
            headers={"X-Shopify-Access-Token": token},
            timeout=services.settings.http_timeout_seconds,
        )
    except requests.RequestException as exc:
        raise AdminApiError(f"Shopify's Admin API did not answer ({type(exc).__name__})") from None
