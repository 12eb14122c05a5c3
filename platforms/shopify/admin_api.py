"""The GraphQL Admin API calls the app makes: removing shop-specific webhook subscriptions,
Web Pixel activation, the shop's primary domain, and the raw call reconciliation pages with.

New public apps must use the GraphQL Admin API only (since 2025-04-01). A call is
``POST {admin}/admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``. The call
uses ``requests`` rather than ``shopify.GraphQL``, which reads the shop and token from
class-level state shared by every thread.

Webhooks are app-specific: ``shopify.app.toml`` subscribes every topic for every shop, the
one mechanism that can also carry the mandatory privacy topics ("We recommend app-specific
webhooks for most apps", https://shopify.dev/docs/apps/build/webhooks/subscribe). Installs
made before that subscribed the same topics per shop through ``webhookSubscriptionCreate``,
so Shopify delivered each event twice; :func:`remove_shop_webhooks` deletes those. The
``webhookSubscriptions`` query "returns webhook subscriptions created via the API for this
shop, not including app-scoped subscriptions configured via TOML files"
(https://shopify.dev/docs/api/admin-graphql/2025-10/queries/webhookSubscriptions), so what it
lists for our topics is exactly the duplicate, and the TOML's subscriptions cannot be touched.

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

API_VERSION = "2026-10"
"""The one Shopify API version of the app, everywhere: Admin API calls here, ``[webhooks]
api_version`` in ``shopify.app.toml`` (the payload version of every webhook) and
``api_version`` of the Web Pixel's ``shopify.extension.toml``; a test checks the TOML files
say the same. Stable since 2026-10-01; "each stable version is supported for a minimum of 12
months" (https://shopify.dev/docs/api/usage/versioning), and 2026-10's release notes give it
until 2027-10-16 15:00 UTC (https://shopify.dev/changelog/release-notes/2026-10). Move to the
next version before then: the Shopify CLI refuses to deploy a version older than 12 months.
Reconciliation needs at least 2026-07, which added ``Order.checkoutToken`` and
``Order.cartToken``."""

TOML_TOPICS = {
    "orders/create": "ORDERS_CREATE",
    "orders/paid": "ORDERS_PAID",
    "checkouts/create": "CHECKOUTS_CREATE",
    "checkouts/update": "CHECKOUTS_UPDATE",
    "app/uninstalled": "APP_UNINSTALLED",
}
"""The topics ``shopify.app.toml`` subscribes for every shop (besides the privacy topics), as
webhook topic -> GraphQL ``WebhookSubscriptionTopic``: a shop-specific subscription to one of
them is a duplicate."""

SHOP_WEBHOOKS = """
query shopWebhooks($after: String) {
  webhookSubscriptions(first: 100, after: $after) {
    nodes { id topic }
    pageInfo { hasNextPage endCursor }
  }
}
"""

DELETE_WEBHOOK = """
mutation webhookSubscriptionDelete($id: ID!) {
  webhookSubscriptionDelete(id: $id) {
    deletedWebhookSubscriptionId
    userErrors { field message }
  }
}
"""
"""https://shopify.dev/docs/api/admin-graphql/2026-01/mutations/webhookSubscriptionDelete"""

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


class AdminApiError(Exception):
    """A GraphQL call failed; the message says what to check."""


class AccessRevoked(AdminApiError):
    """Shopify refused the store's token (HTTP 401) even after a refresh: the app was
    uninstalled, or the custom app's token revoked."""


class Throttled(AdminApiError):
    """Shopify answered ``THROTTLED`` (or HTTP 429): the store's cost bucket is empty.

    ``cost`` is the answer's ``extensions.cost`` when it had one: its ``throttleStatus`` says
    how long to wait (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits)."""

    def __init__(self, cost: dict[str, Any] | None) -> None:
        super().__init__("Shopify's Admin API throttled the call")
        self.cost = cost


def remove_shop_webhooks(services: Services, store_id: str, admin_base: str) -> list[str]:
    """Delete the shop's shop-specific subscriptions to :data:`TOML_TOPICS`, which duplicate
    the app-specific ones of ``shopify.app.toml``; the topics removed, one per subscription.

    Raises:
        AdminApiError: the subscriptions could not be listed or one could not be deleted.
    """
    topics_by_enum = {enum: topic for topic, enum in TOML_TOPICS.items()}
    removed = []
    for subscription in _shop_webhooks(services, store_id, admin_base):
        topic = topics_by_enum.get(subscription.get("topic"))
        if topic is None:
            continue
        variables = {"id": subscription["id"]}
        result = graphql(services, store_id, admin_base, DELETE_WEBHOOK, variables)
        errors = [e.get("message", "") for e in result["webhookSubscriptionDelete"]["userErrors"]]
        if errors:
            raise AdminApiError(f"Shopify refused to delete a {topic} subscription: {errors}")
        removed.append(topic)
    if removed:
        logger.info(
            "shopify.shop-webhooks-removed store=%s topics=%s", store_id, ",".join(sorted(removed))
        )
    return removed


def _shop_webhooks(services: Services, store_id: str, admin_base: str) -> list[dict[str, Any]]:
    """Every shop-specific subscription of the app on the shop (all pages)."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        data = graphql(services, store_id, admin_base, SHOP_WEBHOOKS, {"after": after})
        page = data["webhookSubscriptions"]
        found.extend(page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


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
    """The ``data`` of one GraphQL call, refreshing the token once on a 401.

    Raises:
        AdminApiError: any error in the answer (:class:`AccessRevoked`, :class:`Throttled`).
    """
    body = graphql_answer(services, store_id, admin_base, query, variables)
    if body.get("errors") or not isinstance(body.get("data"), dict):
        raise AdminApiError(f"Shopify's Admin API refused the query: {body.get('errors')}")
    return body["data"]


def graphql_answer(
    services: Services,
    store_id: str,
    admin_base: str,
    query: str,
    variables: dict[str, Any],
) -> dict[str, Any]:
    """The whole JSON answer (``data``, ``errors``, ``extensions``) of one GraphQL call, for
    callers that read the cost or accept partial data; the token is refreshed once on a 401.

    Shopify throttles with HTTP 200 and an error whose ``extensions.code`` is ``THROTTLED``
    (a 429 is also treated so); that becomes :class:`Throttled`.

    Raises:
        AdminApiError: no answer, not JSON, another HTTP status, :class:`AccessRevoked`,
            :class:`Throttled`.
    """
    token = access_token(services, store_id, admin_base)
    answer = _post(services, admin_base, token, query, variables)
    if answer.status_code == 401:
        token = access_token(services, store_id, admin_base, force_refresh=True)
        answer = _post(services, admin_base, token, query, variables)
    if answer.status_code == 401:
        raise AccessRevoked("Shopify refused the store's access token (HTTP 401)")
    body = _json_object(answer)
    if answer.status_code == 429 or _throttled(body):
        raise Throttled((body.get("extensions") or {}).get("cost"))
    if answer.status_code != 200:
        raise AdminApiError(f"Shopify's Admin API answered HTTP {answer.status_code}")
    if body is None:
        raise AdminApiError("Shopify's Admin API answered something that is not a JSON object")
    return body


def _json_object(answer: requests.Response) -> dict[str, Any] | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _throttled(body: dict[str, Any] | None) -> bool:
    errors = (body or {}).get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED"
        for e in errors
    )


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
