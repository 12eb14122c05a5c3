"""A strict local stand-in for a WooCommerce store: its REST API v3 webhooks, their creation
ping, and signed order deliveries.

Why it exists: ``connect-woocommerce``, ``check`` and the periodic repair must be tested against
something that refuses what WooCommerce refuses and calls our webhook endpoint the way
WooCommerce does. This module serves a real HTTP server on 127.0.0.1 (free port, threaded),
keeps webhooks in memory, answers with WordPress's error shape, pings a new webhook's delivery
URL, and delivers signed order webhooks that count failures and disable the webhook as
WooCommerce does.

Evidence used (W# tags are cited in comments below):
  W1  woocommerce/woocommerce-rest-api-docs, source/includes/wp-api-v3/_webhooks.md: the
      endpoints, the webhook properties and example bodies, statuses active / paused /
      disabled, the list parameters (per_page, page, status), delivery headers.
  W2  woocommerce/woocommerce, includes/rest-api/Controllers/Version1/
      class-wc-rest-webhooks-v1-controller.php: permission errors woocommerce_rest_cannot_view
      / _cannot_create / _cannot_edit with rest_authorization_required_code() (401 when
      anonymous); create_item validates topic then delivery_url (woocommerce_rest_shop_webhook_
      invalid_topic / _invalid_delivery_url, 400), always saves status active ('publish'), a
      secret of wp_generate_password(50) when none is given, answers 201 with Location and
      pings before returning; update_item: "ID is invalid." 400, then topic, delivery_url,
      secret, status, name; the response never contains the secret; delete_item: ``force``
      (a boolean) must be true, else 501 woocommerce_rest_trash_not_supported "Webhooks do not
      support trashing.", then "Invalid ID." 404 for an unknown id, else 200 with the webhook.
  W3  Version2/class-wc-rest-webhooks-v2-controller.php (response fields with *_gmt dates) and
      Version3/class-wc-rest-webhooks-controller.php (api_version wp_api_v3 for wc/v3).
  W4  includes/class-wc-rest-authentication.php: Basic credentials or consumer_key /
      consumer_secret query parameters; an unknown key leaves the request anonymous; a wrong
      secret is 401 woocommerce_rest_authentication_error "Consumer Secret is invalid."; key
      permissions read / write / read_write ("The API key provided does not have write
      permissions."); these errors come before the route runs, with a WWW-Authenticate header.
  W5  includes/class-wc-webhook.php: deliver_ping posts "webhook_id=N" with no X-WC headers and
      fails on anything but 200; deliver() posts trim(wp_json_encode(payload)) with the X-WC-
      Webhook-* headers and base64 HMAC-SHA256 of the body under wp_specialchars_decode(secret);
      200 <= code < 303 is success and resets failure_count; failed_delivery() disables the
      webhook when failures > 5, else counts one more.
  W6  includes/wc-core-functions.php / wc-webhook-functions.php: wc_is_webhook_valid_topic
      (resources coupon, customer, order, product; events created, updated, deleted, restored;
      action.woocommerce_* / action.wc_*) and wc_is_valid_url (http:// or https:// and
      FILTER_VALIDATE_URL).
  W7  includes/data-stores/class-wc-webhook-data-store.php update(): it pings an active
      webhook whose pending_delivery is still set (its creation ping failed).
  W8  includes/rest-api/Controllers/Version3/class-wc-rest-crud-controller.php
      get_collection_params (page >= 1; per_page 1..100, default 10; order asc|desc, default
      desc; orderby date|id|include|title|slug|modified) and the orders controller
      (modified_after / modified_before, date-time; dates_are_gmt, boolean, default false:
      the dates are then compared with the site's local times); get_items' X-WP-Total and
      X-WP-TotalPages headers, and an empty list past the last page; its permission check
      woocommerce_rest_cannot_view "Sorry, you cannot list resources." (401 anonymous).
      WordPress's rest_validate_request_arg: 400 rest_invalid_param "Invalid parameter(s): X"
      with data.params {X: reason}, "Invalid date." for a date-time that rest_parse_date
      refuses, "X is not of type boolean.", enums "X is not one of a, b, and c.".

Decided here, not confirmed by a source:
  - Served over plain HTTP yet taking Basic credentials, like a store behind a proxy that ends
    TLS and sets HTTPS=on. Real WooCommerce reached over plain HTTP wants OAuth 1.0a (W4).
  - It pings and delivers to 127.0.0.1; WordPress's wp_safe_remote_post refuses local
    addresses unless a site filter allows them.
  - WordPress core wording for rest_no_route, rest_invalid_param, rest_missing_callback_param
    and rest_invalid_json, as recalled from WP_REST_Server / WP_REST_Request.
  - FILTER_VALIDATE_URL is approximated: a host of letters, digits, dots and dashes (or an IP),
    no spaces or control characters.
  - The site's timezone is UTC, so date_created equals date_created_gmt; orders' date_modified
    follows ``site_offset`` (UTC by default) so a test can show dates_are_gmt matters.
  - The order list refuses query parameters it does not model, with rest_invalid_param. Real
    WordPress ignores unknown ones; refusing them makes a misspelt filter fail a test instead
    of silently listing every order. Among equal sort keys, lower ids come first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

API = "/wp-json/wc/v3"
STATUSES = ("active", "paused", "disabled")  # W1
WEBHOOK_METHODS = ("GET", "POST", "PUT", "DELETE")  # W2 register_routes
RESOURCES = ("coupon", "customer", "order", "product")  # W6
EVENTS = ("created", "updated", "deleted", "restored")  # W6
MAX_FAILURES = 5  # W5: disabled when failures > 5, i.e. on the 7th failure in a row
PER_PAGE_MAX = 100
PING_TIMEOUT_SECONDS = 5  # WordPress's default for wp_safe_remote_post
DELIVERY_TIMEOUT_SECONDS = 10  # WooCommerce allows 60 s; tests must not wait that long
USER_AGENT = "WooCommerce/9.8.5 Hookshot (WordPress/6.8.1)"
TOPIC_HOOKS = {  # W5 get_topic_hooks, the two topics the connector uses
    "order.created": ["woocommerce_new_order"],
    "order.updated": ["woocommerce_update_order", "woocommerce_order_refunded"],
}
HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
PERMISSIONS = ("read", "write", "read_write")


@dataclass
class Webhook:
    """One webhook as WooCommerce stores it (the secret and api_version never leave)."""

    id: int
    name: str
    status: str
    topic: str
    delivery_url: str
    secret: str
    api_version: str
    created: datetime
    modified: datetime
    pending_delivery: bool = True
    failure_count: int = 0


@dataclass
class Delivery:
    """One outbound request: a creation ping or an order webhook, and how it went."""

    webhook_id: int
    kind: str  # "ping" or the topic
    url: str
    body: bytes
    headers: dict[str, str]
    status_code: int | None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """W5: a ping needs exactly 200; a delivery 200 <= code < 303."""
        if self.status_code is None:
            return False
        if self.kind == "ping":
            return self.status_code == 200
        return 200 <= self.status_code < 303


class _WordPressError(Exception):
    """Becomes ``{"code", "message", "data": {"status", ...}}`` with that HTTP status."""

    def __init__(self, code: str, message: str, status: int, **data: Any) -> None:
        super().__init__(message)
        self.body = {"code": code, "message": message, "data": {"status": status, **data}}
        self.status = status


@dataclass
class _Caller:
    """Who a request authenticated as (None: anonymous) and what its key may do."""

    key: str | None = None
    permissions: str = ""


def wp_json_encode(value: Any) -> bytes:
    """PHP's json_encode defaults: ASCII only with \\u escapes, and slashes escaped."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


def wp_specialchars_decode(text: str) -> str:
    """The ENT_QUOTES entities WooCommerce decodes from a secret before signing (W5)."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#039;", "'")):
        text = text.replace(entity, char)
    return text.replace("&amp;", "&")


def signature(secret: str, body: bytes) -> str:
    key = wp_specialchars_decode(secret).encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def is_valid_topic(topic: object) -> bool:
    """W6 wc_is_webhook_valid_topic."""
    if not isinstance(topic, str):
        return False
    if topic.startswith(("action.woocommerce_", "action.wc_")):
        return True
    parts = topic.split(".")
    return len(parts) >= 2 and parts[0] in RESOURCES and parts[1] in EVENTS


def is_valid_url(url: object) -> bool:
    """W6 wc_is_valid_url, with FILTER_VALIDATE_URL approximated (see the module docstring)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return False
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return bool(parts.hostname) and bool(HOSTNAME.fullmatch(parts.hostname))


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class WooCommerceStandIn:
    """A WooCommerce store's REST API on 127.0.0.1.

    ``WooCommerceStandIn({"ck_...": ("cs_...", "read_write")}).start()``; ``base_url`` is the
    store address to connect; ``stop()`` at the end. Tests drive it with :meth:`disable`,
    :meth:`tamper` and :meth:`trigger`, and read :attr:`deliveries`.
    """

    def __init__(self, keys: dict[str, tuple[str, str]] | None = None) -> None:
        self._initial_keys = dict(keys or {})
        for _secret, permissions in self._initial_keys.values():
            if permissions not in PERMISSIONS:
                raise ValueError(f"permissions must be one of {PERMISSIONS}")
        self._keys = dict(self._initial_keys)
        self._lock = threading.Lock()
        self._webhooks: dict[int, Webhook] = {}
        self._next_id = 140
        self.deliveries: list[Delivery] = []
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, key used
        self._list_gate: tuple[threading.Barrier, list[int]] | None = None
        self.woocommerce_active = True
        self._orders: dict[int, dict[str, Any]] = {}
        self.site_offset = timedelta(0)
        self.on_orders_page: Callable[[int], None] | None = None
        self._app = self._build_app()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> WooCommerceStandIn:
        server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="woocommerce-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def reset(self) -> None:
        """No webhooks, no deliveries, the keys given at construction, WooCommerce active."""
        with self._lock:
            self._keys = dict(self._initial_keys)
            self._webhooks.clear()
            self.deliveries.clear()
            self.requests.clear()
            self.woocommerce_active = True
            self._orders.clear()
            self.site_offset = timedelta(0)
            self.on_orders_page = None
            self._list_gate = None

    # -- what tests set and read -----------------------------------------------------------

    def webhooks(self) -> list[Webhook]:
        """Copies of every webhook, oldest first."""
        with self._lock:
            return [deepcopy(w) for w in sorted(self._webhooks.values(), key=lambda w: w.id)]

    def webhook(self, webhook_id: int) -> Webhook:
        with self._lock:
            return deepcopy(self._webhooks[webhook_id])

    def disable(self, webhook_id: int) -> None:
        """What WooCommerce does after too many failed deliveries (W5)."""
        self.tamper(webhook_id, status="disabled", failure_count=MAX_FAILURES + 1)

    def tamper(self, webhook_id: int, **changes: Any) -> None:
        """Change a webhook behind the API's back (a merchant in wp-admin, a plugin...)."""
        with self._lock:
            webhook = self._webhooks[webhook_id]
            for name, value in changes.items():
                if not hasattr(webhook, name):
                    raise AttributeError(name)
                setattr(webhook, name, value)
            webhook.modified = _now()

    def add_webhook(self, **fields: Any) -> int:
        """A webhook made in wp-admin, without a ping; returns its id."""
        with self._lock:
            webhook = self._new_webhook(
                name=fields.pop("name", "Webhook created by hand"),
                topic=fields.pop("topic"),
                delivery_url=fields.pop("delivery_url"),
                secret=fields.pop("secret", _generated_secret()),
            )
            for name, value in fields.items():
                setattr(webhook, name, value)
            return webhook.id

    def hold_lists(self, parties: int) -> None:
        """The next ``parties`` webhook lists are answered only once all of them have arrived,
        so callers listing at the same time see the same webhooks (two repairs racing)."""
        with self._lock:
            self._list_gate = (threading.Barrier(parties, timeout=10), [parties])

    def revoke(self, consumer_key: str) -> None:
        """The merchant deleted the key in WooCommerce → Settings → Advanced → REST API."""
        with self._lock:
            self._keys.pop(consumer_key, None)

    def pings(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.kind == "ping"]

    def trigger(self, topic: str, payload: dict[str, Any]) -> list[Delivery]:
        """An event of ``topic`` happened: every active webhook with that topic delivers
        ``payload`` (the REST representation WooCommerce builds at delivery time), in id
        order, signed with its own secret. Failures are counted as WooCommerce counts them."""
        with self._lock:
            targets = [
                deepcopy(w)
                for w in sorted(self._webhooks.values(), key=lambda w: w.id)
                if w.topic == topic and w.status == "active"
            ]
        return [self._deliver(webhook, payload) for webhook in targets]

    # -- orders -------------------------------------------------------------------------------

    def put_order(
        self, payload: dict[str, Any], *, modified: datetime | None = None
    ) -> dict[str, Any]:
        """Save an order (checkout, a status change in wp-admin...): it is stored as given,
        with its modification time set to now (or ``modified``, aware UTC); returns the copy
        WooCommerce would serve."""
        moment = (modified or _now()).astimezone(UTC).replace(microsecond=0)
        stored = deepcopy(payload)
        stored["date_modified_gmt"] = _wp_date(moment)
        stored["date_modified"] = _wp_date(moment + self.site_offset)
        with self._lock:
            self._orders[int(stored["id"])] = stored
        return deepcopy(stored)

    def place_order(self, payload: dict[str, Any], topic: str = "order.created") -> list[Delivery]:
        """Save an order and fire ``topic``: what a checkout does (deliveries returned)."""
        return self.trigger(topic, self.put_order(payload))

    def orders(self) -> list[dict[str, Any]]:
        """Copies of every stored order, by id."""
        with self._lock:
            return [deepcopy(self._orders[key]) for key in sorted(self._orders)]

    def _list_orders(self, caller: _Caller) -> Response:
        """W8: ``GET /orders`` with the parameters reconciliation uses, validated first."""
        params = _params()
        for name in params:
            if name not in ORDER_LIST_PARAMS:
                raise _invalid_param(name, f"{name} is not a parameter this stand-in models.")
        per_page = _int_param(params, "per_page", 10, minimum=1, maximum=PER_PAGE_MAX)
        page = _int_param(params, "page", 1, minimum=1)
        order = _enum_param(params, "order", ("asc", "desc"), "desc")
        orderby = _enum_param(params, "orderby", ORDERBY, "date")
        if orderby not in ORDER_SORT_KEYS:
            raise _invalid_param("orderby", f"orderby {orderby} is not modelled here.")
        gmt = _bool_param(params, "dates_are_gmt", default=False)
        after = _date_param(params, "modified_after")
        before = _date_param(params, "modified_before")
        _require_caller(caller, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        column = "date_modified_gmt" if gmt else "date_modified"
        start = (page - 1) * per_page
        with self._lock:
            chosen = [
                o
                for o in self._orders.values()
                if (after is None or _order_date(o, column) > after)
                and (before is None or _order_date(o, column) < before)
            ]
            chosen.sort(key=ORDER_SORT_KEYS[orderby], reverse=order == "desc")
            body = wp_json_encode(chosen[start : start + per_page])
        response = Response(body, status=200, mimetype="application/json")
        response.headers["X-WP-Total"] = str(len(chosen))
        response.headers["X-WP-TotalPages"] = str(math.ceil(len(chosen) / per_page))
        if self.on_orders_page is not None:
            self.on_orders_page(page)
        return response

    # -- outbound ----------------------------------------------------------------------------

    def _deliver(self, webhook: Webhook, payload: dict[str, Any]) -> Delivery:
        body = wp_json_encode(payload).strip()
        resource, event = webhook.topic.split(".", 1)
        headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": f"{self.base_url}/",
            "X-WC-Webhook-Topic": webhook.topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": signature(webhook.secret, body),
            "X-WC-Webhook-ID": str(webhook.id),
            "X-WC-Webhook-Delivery-ID": secrets.token_hex(16),
        }
        delivery = self._post(webhook, webhook.topic, body, headers, DELIVERY_TIMEOUT_SECONDS)
        with self._lock:
            stored = self._webhooks.get(webhook.id)
            if stored is not None:
                self._count_outcome(stored, delivery)
        return delivery

    @staticmethod
    def _count_outcome(webhook: Webhook, delivery: Delivery) -> None:
        """W5 failed_delivery(): disabled once failures > 5, else one more failure."""
        if delivery.succeeded:
            webhook.failure_count = 0
        elif webhook.failure_count > MAX_FAILURES:
            webhook.status = "disabled"
        else:
            webhook.failure_count += 1

    def _ping(self, webhook: Webhook) -> None:
        """W5 deliver_ping(): unsigned, form-encoded, exactly 200 or an error."""
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}
        body = f"webhook_id={webhook.id}".encode()
        delivery = self._post(webhook, "ping", body, headers, PING_TIMEOUT_SECONDS)
        if delivery.succeeded:
            with self._lock:
                if webhook.id in self._webhooks:
                    self._webhooks[webhook.id].pending_delivery = False

    def _post(
        self, webhook: Webhook, kind: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> Delivery:
        try:
            answer = requests.post(
                webhook.delivery_url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # W5: redirection 0
            )
            delivery = Delivery(
                webhook.id, kind, webhook.delivery_url, body, headers, answer.status_code
            )
        except requests.RequestException as exc:
            delivery = Delivery(
                webhook.id, kind, webhook.delivery_url, body, headers, None, type(exc).__name__
            )
        with self._lock:
            self.deliveries.append(delivery)
        return delivery

    # -- the REST API --------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("woocommerce_standin")

        @app.route("/wp-json/<path:route>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def rest(route: str) -> Response:
            try:
                return self._dispatch("/" + route)
            except _WordPressError as error:
                response = _json_response(error.body, error.status)
                if error.body["code"] == "woocommerce_rest_authentication_error":
                    response.headers["WWW-Authenticate"] = (
                        'Basic realm="WooCommerce API - Use a consumer key in the username field'
                        ' and a consumer secret in the password field."'
                    )
                return response

        return app

    def _dispatch(self, route: str) -> Response:
        caller = self._authenticate()
        with self._lock:
            self.requests.append((request.method, route, caller.key))
        if route == "/wc/v3/orders" and request.method == "GET" and self.woocommerce_active:
            return self._list_orders(caller)
        match = re.fullmatch(r"/wc/v3/webhooks(?:/(\d+))?", route)
        method = request.method
        if not self.woocommerce_active or match is None or method not in WEBHOOK_METHODS:
            raise _no_route()
        webhook_id = int(match.group(1)) if match.group(1) else None
        if webhook_id is None and method == "GET":
            return self._list(caller)
        if webhook_id is None and method == "POST":
            return self._create(caller)
        if webhook_id is not None and method == "GET":
            return self._get(caller, webhook_id)
        if webhook_id is not None and method == "PUT":
            return self._update(caller, webhook_id)
        if webhook_id is not None and method == "DELETE":
            return self._delete(caller, webhook_id)
        raise _no_route()

    def _authenticate(self) -> _Caller:
        """W4: query parameters first, else Basic credentials; errors before the route runs."""
        key = request.args.get("consumer_key")
        secret = request.args.get("consumer_secret")
        if not (key and secret) and request.authorization is not None:
            key, secret = request.authorization.username, request.authorization.password
        if not key or not secret:
            return _Caller()
        with self._lock:
            known = self._keys.get(key)
        if known is None:
            return _Caller()
        if not hmac.compare_digest(known[0], secret):
            raise _WordPressError(
                "woocommerce_rest_authentication_error", "Consumer Secret is invalid.", 401
            )
        permissions = known[1]
        if request.method in ("GET", "HEAD") and permissions not in ("read", "read_write"):
            raise _WordPressError(
                "woocommerce_rest_authentication_error",
                "The API key provided does not have read permissions.",
                401,
            )
        if request.method not in ("GET", "HEAD") and permissions not in ("write", "read_write"):
            raise _WordPressError(
                "woocommerce_rest_authentication_error",
                "The API key provided does not have write permissions.",
                401,
            )
        return _Caller(key, permissions)

    def _list(self, caller: _Caller) -> Response:
        params = _params()
        per_page = _int_param(params, "per_page", 10, minimum=1, maximum=PER_PAGE_MAX)
        page = _int_param(params, "page", 1, minimum=1)
        status = params.get("status", "all")
        if status not in ("all", *STATUSES):
            raise _invalid_param(
                "status", "status is not one of all, active, paused, and disabled."
            )
        _require_caller(caller, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        self._wait_at_list_gate()
        with self._lock:
            chosen = [w for w in self._webhooks.values() if status in ("all", w.status)]
            chosen.sort(key=lambda w: (w.created, w.id), reverse=True)  # W1: date, desc
            start = (page - 1) * per_page
            body = [self._represent(w) for w in chosen[start : start + per_page]]
        response = _json_response(body, 200)
        response.headers["X-WP-Total"] = str(len(chosen))
        response.headers["X-WP-TotalPages"] = str(math.ceil(len(chosen) / per_page))
        return response

    def _wait_at_list_gate(self) -> None:
        """See :meth:`hold_lists`."""
        with self._lock:
            gate = self._list_gate
            if gate is not None:
                gate[1][0] -= 1
                if gate[1][0] == 0:
                    self._list_gate = None
        if gate is not None:
            gate[0].wait()

    def _get(self, caller: _Caller, webhook_id: int) -> Response:
        _require_caller(
            caller, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."
        )
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                raise _invalid_id()
            return _json_response(self._represent(webhook), 200)

    def _create(self, caller: _Caller) -> Response:
        params = _params()
        missing = [name for name in ("topic", "delivery_url") if name not in params]
        if missing:
            raise _WordPressError(
                "rest_missing_callback_param",
                f"Missing parameter(s): {', '.join(missing)}",
                400,
                params=missing,
            )
        _check_status_param(params)
        _require_caller(
            caller,
            "woocommerce_rest_cannot_create",
            "Sorry, you are not allowed to create resources.",
        )
        topic = params["topic"]
        if not topic or not is_valid_topic(str(topic).lower()):
            raise _WordPressError(
                "woocommerce_rest_shop_webhook_invalid_topic",
                "Webhook topic is required and must be valid.",
                400,
            )
        if not is_valid_url(params["delivery_url"]):
            raise _invalid_delivery_url()
        with self._lock:
            webhook = self._new_webhook(
                name=params.get("name") or f"Webhook created on {_now():%b %d, %Y @ %I:%M %p}",
                topic=topic,
                delivery_url=params["delivery_url"],
                secret=params.get("secret") or _generated_secret(),  # W2
            )
            body = self._represent(webhook)
            snapshot = deepcopy(webhook)
        self._ping(snapshot)  # W2: after building the answer, before returning it
        response = _json_response(body, 201)
        response.headers["Location"] = f"{self.base_url}{API}/webhooks/{webhook.id}"
        return response

    def _update(self, caller: _Caller, webhook_id: int) -> Response:
        params = _params()
        _check_status_param(params)
        _require_caller(
            caller,
            "woocommerce_rest_cannot_edit",
            "Sorry, you are not allowed to edit this resource.",
        )
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                raise _invalid_id()
            changed = deepcopy(webhook)
        if params.get("topic"):
            if not is_valid_topic(str(params["topic"]).lower()):
                raise _WordPressError(
                    "woocommerce_rest_shop_webhook_invalid_topic",
                    "Webhook topic must be valid.",
                    400,
                )
            changed.topic = params["topic"]
        if params.get("delivery_url"):
            if not is_valid_url(params["delivery_url"]):
                raise _invalid_delivery_url()
            changed.delivery_url = params["delivery_url"]
        if params.get("secret"):
            changed.secret = params["secret"]
        if params.get("status"):
            changed.status = params["status"]
        if params.get("name"):
            changed.name = params["name"]
        changed.modified = _now()
        with self._lock:
            self._webhooks[webhook_id] = changed
            body = self._represent(changed)
        if changed.status == "active" and changed.pending_delivery:  # W7
            self._ping(changed)
        return _json_response(body, 200)

    def _delete(self, caller: _Caller, webhook_id: int) -> Response:
        """W2 delete_item: parameters are validated before permissions, as WordPress does."""
        force = _bool_param(_params(), "force", default=False)
        _require_caller(
            caller,
            "woocommerce_rest_cannot_delete",
            "Sorry, you are not allowed to delete this resource.",
        )
        if not force:
            raise _WordPressError(
                "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.", 501
            )
        with self._lock:
            webhook = self._webhooks.pop(webhook_id, None)
            if webhook is None:
                raise _WordPressError(
                    "woocommerce_rest_shop_webhook_invalid_id", "Invalid ID.", 404
                )
            return _json_response(self._represent(webhook), 200)

    def _new_webhook(self, *, name: str, topic: str, delivery_url: str, secret: str) -> Webhook:
        """Call with the lock held."""
        self._next_id += 1
        now = _now()
        webhook = Webhook(
            id=self._next_id,
            name=name,
            status="active",  # W2: 'publish' === post_status ? 'active' : 'disabled'
            topic=topic,
            delivery_url=delivery_url,
            secret=secret,
            api_version="wp_api_v3",  # W3
            created=now,
            modified=now,
        )
        self._webhooks[webhook.id] = webhook
        return webhook

    def _represent(self, webhook: Webhook) -> dict[str, Any]:
        """W1/W3: the REST fields, without the secret."""
        resource, _, event = webhook.topic.partition(".")
        return {
            "id": webhook.id,
            "name": webhook.name,
            "status": webhook.status,
            "topic": webhook.topic,
            "resource": resource,
            "event": event,
            "hooks": TOPIC_HOOKS.get(webhook.topic, []),
            "delivery_url": webhook.delivery_url,
            "date_created": _wp_date(webhook.created),
            "date_created_gmt": _wp_date(webhook.created),
            "date_modified": _wp_date(webhook.modified),
            "date_modified_gmt": _wp_date(webhook.modified),
            "_links": {
                "self": [{"href": f"{self.base_url}{API}/webhooks/{webhook.id}"}],
                "collection": [{"href": f"{self.base_url}{API}/webhooks"}],
            },
        }


def _params() -> dict[str, Any]:
    """WordPress merges query, form and JSON body parameters; bad JSON is an error."""
    params: dict[str, Any] = dict(request.args)
    params.pop("consumer_key", None)
    params.pop("consumer_secret", None)
    params.update(request.form)
    if request.mimetype == "application/json" and request.get_data():
        try:
            body = json.loads(request.get_data())
        except ValueError:
            raise _WordPressError("rest_invalid_json", "Invalid JSON body passed.", 400) from None
        if isinstance(body, dict):
            params.update(body)
    return params


def _int_param(
    params: dict[str, Any], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = params.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _invalid_param(name, f"{name} is not of type integer.") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} (inclusive) and {maximum} (inclusive)"
        raise _invalid_param(
            name, f"{name} must be {bound}." if maximum else f"{name} must be >= {minimum}."
        )
    return value


def _check_status_param(params: dict[str, Any]) -> None:
    if "status" in params and params["status"] not in STATUSES:
        raise _invalid_param("status", "status is not one of active, paused, and disabled.")


def _require_caller(caller: _Caller, code: str, message: str) -> None:
    """W2: the permission callback; anonymous callers get 401."""
    if caller.key is None:
        raise _WordPressError(code, message, 401)


def _invalid_param(name: str, reason: str) -> _WordPressError:
    return _WordPressError(
        "rest_invalid_param", f"Invalid parameter(s): {name}", 400, params={name: reason}
    )


def _invalid_id() -> _WordPressError:
    return _WordPressError("woocommerce_rest_shop_webhook_invalid_id", "ID is invalid.", 400)


def _invalid_delivery_url() -> _WordPressError:
    return _WordPressError(
        "woocommerce_rest_shop_webhook_invalid_delivery_url",
        "Webhook delivery URL must be a valid URL starting with http:// or https://.",
        400,
    )


def _no_route() -> _WordPressError:
    return _WordPressError(
        "rest_no_route", "No route was found matching the URL and request method.", 404
    )


def _json_response(body: Any, status: int) -> Response:
    return Response(wp_json_encode(body), status=status, mimetype="application/json")


def _generated_secret() -> str:
    return secrets.token_urlsafe(38)[:50]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _wp_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


# -- the order list (W8) ------------------------------------------------------------------------

ORDER_LIST_PARAMS = frozenset(
    {"page", "per_page", "order", "orderby", "modified_after", "modified_before", "dates_are_gmt"}
)
ORDERBY = ("date", "id", "include", "title", "slug", "modified")
ORDER_SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "date": lambda o: (o.get("date_created_gmt") or "", o["id"]),
    "id": lambda o: o["id"],
    "modified": lambda o: (o["date_modified_gmt"], o["id"]),
}
WP_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}(?::\d{2})?)?"
)


def _enum_param(params: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = params.get(name, default)
    if value not in allowed:
        choices = ", ".join(allowed[:-1]) + f", and {allowed[-1]}"
        raise _invalid_param(name, f"{name} is not one of {choices}.")
    return value


def _bool_param(params: dict[str, Any], name: str, *, default: bool) -> bool:
    """WordPress's rest_is_boolean: true, false, "true", "false", "1", "0" (any case)."""
    value = params.get(name, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0"):
        return False
    raise _invalid_param(name, f"{name} is not of type boolean.")


def _date_param(params: dict[str, Any], name: str) -> datetime | None:
    """A date-time as rest_parse_date reads it; without an offset it is taken as written (in
    the zone of the column it is compared with)."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not WP_DATE.fullmatch(value):
        raise _invalid_param(name, "Invalid date.")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _order_date(order: dict[str, Any], column: str) -> datetime:
    return datetime.fromisoformat(order[column])
