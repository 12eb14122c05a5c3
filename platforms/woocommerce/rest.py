"""A small client for the part of WooCommerce's REST API v3 we use: webhooks, and the order
list reconciliation reads (:mod:`platforms.woocommerce.reconcile`).

What it relies on, from WooCommerce's own code and docs:

* Endpoints ``GET/POST /wp-json/wc/v3/webhooks`` and ``GET/PUT/DELETE
  /wp-json/wc/v3/webhooks/<id>`` (woocommerce/woocommerce-rest-api-docs,
  ``source/includes/wp-api-v3/_webhooks.md``). A webhook
  made through ``wc/v3`` gets ``api_version`` ``wp_api_v3`` (``WC_REST_Webhooks_Controller::
  get_default_api_version``); the field is not part of the REST body either way.
* Authentication (``class-wc-rest-authentication.php``): over HTTPS the consumer key and secret
  go as HTTP Basic credentials. Over plain HTTP WooCommerce ignores them and wants OAuth 1.0a
  signatures, which this client does not send: plain HTTP is only for local test stores.
* Errors are WordPress's ``{"code": ..., "message": ..., "data": {"status": N}}``: a wrong key
  gives 401 ``woocommerce_rest_cannot_view`` / ``_cannot_create`` (the request is anonymous), a
  wrong secret 401 ``woocommerce_rest_authentication_error`` "Consumer Secret is invalid.", a
  read-only key "The API key provided does not have write permissions." A WordPress site
  without WooCommerce answers 404 ``rest_no_route``.
* Lists are paged: ``per_page`` is at most 100 (WordPress's collection limit) and
  ``X-WP-TotalPages`` gives the number of pages (``WC_REST_Webhooks_V1_Controller::get_items``).
* Creating a webhook makes WooCommerce ping the delivery URL before it answers
  (``create_item`` calls ``deliver_ping``, whose own timeout is WordPress's default 5 s), and
  WordPress hosts are often slow: hence the 20 s read timeout.

Every request goes through :func:`connector.outbound.guarded_session`: the store's address is
the merchant's, and pointed at the connector's own network (loopback, a private range, the
cloud metadata service) it would make us call there with the keys and show the answer. So only
https to public addresses, pinned to the address checked, and no redirect is followed (besides,
``requests`` would turn a redirected POST into a GET, which lists webhooks instead of creating
one).

Error messages are ours alone: they never contain the keys or the webhook secret, nor anything
the site answered (its ``message``, a redirect's ``Location``, a content type), which would let
whatever answers at the address write on the Settings page and in command output. They give the
HTTP status, and WordPress's error ``code`` only when it is one of :data:`KNOWN_CODES`.
"""

from __future__ import annotations

import socket
from typing import Any

import requests

from connector.outbound import OutboundRedirect, OutboundRefused, Resolver, guarded_session

API_PATH = "/wp-json/wc/v3"
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 20
PAGE_SIZE = 100
MAX_PAGES = 50
USER_AGENT = "conversion-connector (webhook setup)"
UNRESOLVED_HOST_MARKERS = (
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname",
    "getaddrinfo failed",
)
INVALID_ID_CODE = "woocommerce_rest_shop_webhook_invalid_id"
AUTH_ERROR_CODES = frozenset(
    {
        "woocommerce_rest_authentication_error",
        "woocommerce_rest_cannot_view",
        "woocommerce_rest_cannot_create",
        "woocommerce_rest_cannot_edit",
    }
)
KNOWN_CODES = AUTH_ERROR_CODES | {
    INVALID_ID_CODE,
    "rest_no_route",
    "rest_invalid_param",
    "rest_forbidden",
    "woocommerce_rest_trash_not_supported",
}
"""WordPress error codes the messages may name: the site chooses the code, so any other could
carry text of its choosing."""


class RestError(Exception):
    """A WooCommerce REST call failed; the message is one line a merchant can act on, and
    ``reason`` a stable key for logs (``unreachable``, ``redirect``, ``not-woocommerce``,
    ``keys-refused``, ``refused``, ``server-error``, ``too-many-webhooks``, and
    ``address-refused`` for an address the connector must not call)."""

    def __init__(self, message: str, reason: str, code: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code  # WordPress's error code, when WooCommerce gave one


class WooCommerceClient:
    """Webhook calls against one store, authenticated with its REST API keys.

    ``allow_http`` is ``connect-woocommerce --allow-http``: a local test store, reached over
    plain http or on this machine (loopback). ``resolve`` replaces ``socket.getaddrinfo``.
    """

    def __init__(
        self,
        store_url: str,
        consumer_key: str,
        consumer_secret: str,
        *,
        allow_http: bool = False,
        resolve: Resolver = socket.getaddrinfo,
    ) -> None:
        self.store_url = store_url.rstrip("/")
        self._session = guarded_session(allow_http=allow_http, resolve=resolve)
        self._session.auth = (consumer_key, consumer_secret)
        self._session.headers["User-Agent"] = USER_AGENT

    def list_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook of the store, whatever its status, across pages."""
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"per_page": PAGE_SIZE, "page": page, "status": "all"}
            response = self._call("GET", "/webhooks", params=params)
            batch = self._json(response)
            if not isinstance(batch, list) or not all(isinstance(w, dict) for w in batch):
                raise self._not_woocommerce("the webhook list is not a JSON list")
            found.extend(batch)
            if page >= _total_pages(response) or not batch:
                return found
        raise RestError(
            f"{self.store_url} has more than {MAX_PAGES * PAGE_SIZE} webhooks", "too-many-webhooks"
        )

    def create_webhook(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``POST /webhooks``; WooCommerce pings the delivery URL before answering 201."""
        return self._object(self._call("POST", "/webhooks", json=fields))

    def update_webhook(self, webhook_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """``PUT /webhooks/<id>``: WooCommerce changes the fields given, keeps the others."""
        return self._object(self._call("PUT", f"/webhooks/{int(webhook_id)}", json=fields))

    def delete_webhook(self, webhook_id: int) -> None:
        """``DELETE /webhooks/<id>?force=true``; one already gone counts as deleted.

        Webhooks cannot be trashed: without ``force`` WooCommerce answers 501
        ``woocommerce_rest_trash_not_supported``, and an unknown id is 404
        ``woocommerce_rest_shop_webhook_invalid_id`` (``WC_REST_Webhooks_V1_Controller::
        delete_item``). The latter is what a repair running at the same time leaves behind.
        """
        try:
            self._call("DELETE", f"/webhooks/{int(webhook_id)}", params={"force": "true"})
        except RestError as exc:
            if exc.code != INVALID_ID_CODE:
                raise

    def orders_page(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """One page of ``GET /orders`` with ``params``, and the number of pages there are."""
        response = self._call("GET", "/orders", params=params)
        batch = self._json(response, "/orders")
        if not isinstance(batch, list) or not all(isinstance(o, dict) for o in batch):
            raise self._not_woocommerce("the order list is not a JSON list", "/orders")
        return batch, _total_pages(response)

    # -- transport and errors ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> requests.Response:
        url = self.store_url + API_PATH + path
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                json=json,
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                allow_redirects=False,
            )
        except OutboundRefused as exc:
            raise RestError(
                f"refusing to call {self.store_url}: {exc}; a store must be reachable at a"
                " public https:// address",
                "address-refused",
            ) from None
        except OutboundRedirect as exc:
            raise RestError(
                f"{url} answered with a redirect (HTTP {exc.status}), which the connector does"
                " not follow: give the store's final address as --url (open the store in a"
                " browser to see where it leads)",
                "redirect",
            ) from None
        except requests.RequestException as exc:
            raise RestError(
                f"cannot reach {self.store_url}: {_reason(exc)}", "unreachable"
            ) from None
        if response.status_code >= 400:
            raise self._error(response, path)
        return response

    def _error(self, response: requests.Response, path: str) -> RestError:
        body = _json_or_none(response)
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            if response.status_code >= 500:
                return RestError(
                    f"{self.store_url} answered HTTP {response.status_code}: the site is failing"
                    " (a PHP error, or its host is down); try again later",
                    "server-error",
                )
            return self._not_woocommerce(
                f"HTTP {response.status_code} without a WordPress error", path
            )
        code = body["code"]
        status = f"HTTP {response.status_code}" + (f" {code}" if code in KNOWN_CODES else "")
        if code == "rest_no_route":
            return RestError(
                f"{self.store_url} runs WordPress but has no WooCommerce REST API (rest_no_route):"
                " is WooCommerce installed and active?",
                "not-woocommerce",
            )
        if response.status_code in (401, 403) or code in AUTH_ERROR_CODES:
            return RestError(
                f"WooCommerce refused the REST API keys ({status}): check the consumer key and"
                " secret, and that the key's permissions are Read/Write" + self._plain_http_hint(),
                "keys-refused",
            )
        return RestError(f"WooCommerce refused the request ({status})", "refused", code)

    def _plain_http_hint(self) -> str:
        if self.store_url.startswith("http://"):
            return " (over plain HTTP WooCommerce only accepts OAuth 1.0a signatures: use https://)"
        return ""

    def _json(self, response: requests.Response, path: str = "/webhooks") -> Any:
        body = _json_or_none(response)
        if body is None:
            raise self._not_woocommerce(f"HTTP {response.status_code} without JSON", path)
        return body

    def _object(self, response: requests.Response) -> dict[str, Any]:
        body = self._json(response)
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise self._not_woocommerce("the answer is not a webhook")
        return body

    def _not_woocommerce(self, what: str, path: str = "/webhooks") -> RestError:
        collection = path.strip("/").split("/")[0]
        return RestError(
            f"{self.store_url} does not look like a WooCommerce store ({what} at"
            f" {API_PATH}/{collection})",
            "not-woocommerce",
        )


def _json_or_none(response: requests.Response) -> Any:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _total_pages(response: requests.Response) -> int:
    try:
        return int(response.headers.get("X-WP-TotalPages", "1"))
    except ValueError:
        return 1


def _reason(exc: requests.RequestException) -> str:
    """A short cause instead of urllib3's nested retry message."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {READ_TIMEOUT_SECONDS} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "its TLS certificate could not be verified"
    text = str(exc)
    if any(marker in text for marker in UNRESOLVED_HOST_MARKERS):
        return "its host name does not resolve"
    if "Connection refused" in text:
        return "connection refused"
    return type(exc).__name__
