"""A strict local stand-in for the parts of Shopify the app talks to: OAuth and GraphQL.

Why it exists: install tests must run the real redirect chain and the real token and GraphQL
requests, and fail when the connector sends something Shopify would refuse. It is a real HTTP
server on 127.0.0.1 serving every shop under ``/<shop>/``, so the connector reaches it with
the admin base template ``{base_url}/{shop}`` (see ``platforms.shopify.tokens.admin_base_url``).

Evidence used:
  S1  Authorization code grant guide (shopify.dev/docs/apps/build/authentication-authorization/
      access-tokens/authorization-code-grant): authorize query ``client_id, scope,
      redirect_uri, state``; the redirect back carries ``code, hmac, host, shop, state,
      timestamp``; the token request sends ``client_id, client_secret, code``.
  S2  Offline access tokens (…/access-tokens/offline-access-tokens) and shopify-app-python
      ``exchange/refresh_token.py``: ``expiring=1`` gives ``expires_in``, ``refresh_token``,
      ``refresh_token_expires_in``; a refresh sends ``grant_type=refresh_token`` and rotates
      the refresh token.
  S3  ``webhookSubscriptions(first, after) { nodes { id topic } pageInfo {...} }`` lists only
      the shop-specific subscriptions the app made through the API, never the app-specific
      ones of its ``shopify.app.toml``
      (shopify.dev/docs/api/admin-graphql/2025-10/queries/webhookSubscriptions);
      ``webhookSubscriptionDelete(id)`` answers ``{deletedWebhookSubscriptionId, userErrors}``
      (…/2026-01/mutations/webhookSubscriptionDelete).
  S4  Admin API 401 body ``{"errors": "[API] Invalid API key or access token (unrecognized
      login or wrong password)"}`` (widely quoted from real answers); it is also the answer
      to a token revoked by an uninstall.

  S5  Token exchange body from shopify-app-python ``exchange/token_exchange.py``:
      grant_type token-exchange, subject_token (the session token), subject_token_type
      id_token, requested_token_type offline-access-token, ``expiring`` 1.

  S6  ``webPixelCreate(webPixel: {settings})`` with settings as a JSON string validated
      against the extension's settings definition
      (shopify.dev/docs/api/admin-graphql/2025-10/mutations/webPixelCreate).

  S7  ``shop { primaryDomain { host } }``: ``Domain.host`` is the host name, like
      ``example.com`` (shopify.dev/docs/api/admin-graphql/latest/objects/Domain).

  S8  API versions: stable versions are named ``YYYY-01|04|07|10``; the stand-in serves from
      2026-07, the first with ``Order.checkoutToken`` and ``Order.cartToken``
      (shopify.dev/changelog/new-checkouttoken-field-added-to-the-order-object).

  The orders query, its cost and throttling: :mod:`tests.standins.shopify_admin`.

Decided here, not confirmed by a source: the wording of OAuth error bodies; that the token
endpoint takes JSON only (Shopify also takes a form body, the connector sends JSON); that a
rotated refresh token and the access token it replaced stop working at once (Shopify keeps
the previous refresh token valid until the new one is used: stricter here); the
``TAKEN`` code for a second pixel on one shop; that a shop without a domain of its own answers its
``*.myshopify.com`` domain as primary domain; the wording of the error for a query the
stand-in does not serve (it serves only the exact selections the connector needs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jwt
from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import make_server

from tests.standins.shopify_admin import AdminGraphQL, Context

SHOP = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
FIRST_VERSION = "2026-07"
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
CODE_KEYS = {"client_id", "client_secret", "code", "expiring"}
REFRESH_KEYS = {"client_id", "client_secret", "grant_type", "refresh_token"}
EXCHANGE = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
    "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
    "expiring": 1,
}
EXCHANGE_KEYS = {"client_id", "client_secret", "subject_token", *EXCHANGE}
PRIMARY_DOMAIN_QUERY = re.compile(
    r"(query( \w+)? ?)?\{ ?shop ?\{ ?primaryDomain ?\{ ?host ?\} ?\} ?\}"
)


@dataclass
class _Token:
    shop: str
    expires_at: float
    scopes: set[str]


@dataclass
class ShopifyStandIn:
    """The stand-in; ``start()`` it, read what it recorded, ``stop()`` it."""

    api_key: str
    api_secret: str
    redirect_uri: str
    scopes: set[str] = field(default_factory=lambda: {"read_orders", "write_pixels"})
    access_token_seconds: int = 3600
    refreshes: int = 0
    code_exchanges: int = 0
    token_exchanges: int = 0
    subscriptions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """A shop's shop-specific webhook subscriptions ``{id, topic, uri}`` (S3)."""
    pixels: dict[str, dict[str, Any]] = field(default_factory=dict)
    primary_domains: dict[str, str] = field(default_factory=dict)
    """A shop's primary domain host (S7), when it has one of its own."""
    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """A shop's orders as GraphQL ``Order`` nodes, every field the executor serves."""
    admin: AdminGraphQL = field(default_factory=AdminGraphQL)
    """The orders query, its cost bucket and throttling; tune ``admin.bucket_size`` and
    ``admin.restore_rate`` (Shopify's Standard plan: 100 points a second) before use."""
    graphql_requests: int = 0
    _codes: dict[str, str] = field(default_factory=dict)
    _access: dict[str, _Token] = field(default_factory=dict)
    _refresh: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ShopifyStandIn:
        self._server = make_server("127.0.0.1", 0, self._build_app(), threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        # A short poll, so stop() (every test that uses the stand-in) does not wait 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    @property
    def admin_base_template(self) -> str:
        """What the connector's ``SHOPIFY_ADMIN_BASE_URL`` must be to reach this stand-in."""
        return self.base_url + "/{shop}"

    def issue_code(self, shop: str) -> str:
        """A one-time authorization code, as the consent screen would give."""
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = shop
        return code

    def issue_custom_app_token(self, shop: str, scopes: set[str]) -> str:
        """The Admin API token of a custom app the merchant made in their admin: it never
        expires and cannot be refreshed."""
        token = "shpat_" + secrets.token_hex(16)
        with self._lock:
            self._access[token] = _Token(shop, float("inf"), set(scopes))
        return token

    def revoke(self, shop: str) -> None:
        """Every token of the shop stops working, refresh tokens too, as an uninstall does."""
        with self._lock:
            for token, held in list(self._access.items()):
                if held.shop == shop:
                    del self._access[token]
            for token, held_shop in list(self._refresh.items()):
                if held_shop == shop:
                    del self._refresh[token]

    def add_shop_subscription(self, shop: str, topic: str, uri: str) -> str:
        """A shop-specific subscription, as an older install made through the API (S3)."""
        with self._lock:
            existing = self.subscriptions.setdefault(shop, [])
            ident = f"gid://shopify/WebhookSubscription/{secrets.randbelow(10**12)}"
            existing.append({"id": ident, "topic": topic, "uri": uri})
        return ident

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired, as an hour later."""
        with self._lock:
            for token in self._access.values():
                token.expires_at = 0

    def signed_query(self, params: dict[str, str]) -> dict[str, str]:
        """``params`` plus the ``hmac`` Shopify adds: hex HMAC-SHA256 of the sorted ``k=v``
        pairs joined with ``&`` (S1; plain values need none of the escaping rules)."""
        message = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        digest = hmac.new(self.api_secret.encode(), message.encode(), hashlib.sha256)
        return {**params, "hmac": digest.hexdigest()}

    # -- the HTTP side ---------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule("/<shop>/admin/oauth/authorize", view_func=self._authorize)
        app.add_url_rule(
            "/<shop>/admin/oauth/access_token", view_func=self._token, methods=["POST"]
        )
        app.add_url_rule(
            "/<shop>/admin/api/<version>/graphql.json", view_func=self._graphql, methods=["POST"]
        )
        return app

    def _authorize(self, shop: str) -> Response | tuple[Response, int]:
        args = request.args
        if not SHOP.fullmatch(shop):
            return _oauth_error(404, f"no shop {shop}")
        if set(args) != {"client_id", "scope", "redirect_uri", "state"}:
            return _oauth_error(
                400, f"authorize takes client_id, scope, redirect_uri, state; got {sorted(args)}"
            )
        if args["client_id"] != self.api_key:
            return _oauth_error(400, "unknown client_id")
        if args["redirect_uri"] != self.redirect_uri:
            return _oauth_error(400, "redirect_uri is not whitelisted for this app")
        if not args["state"] or not set(args["scope"].split(",")) <= self.scopes:
            return _oauth_error(400, "missing state, or a scope the app may not ask for")
        back = self.signed_query(
            {
                "code": self.issue_code(shop),
                "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw",
                "shop": shop,
                "state": args["state"],
                "timestamp": str(int(time.time())),
            }
        )
        return redirect(f"{args['redirect_uri']}?{urlencode(back)}")

    def _token(self, shop: str) -> Response | tuple[Response, int]:
        if not request.is_json:
            return _oauth_error(400, "send the token request as JSON")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _oauth_error(400, "the body is not a JSON object")
        if body.get("client_id") != self.api_key or body.get("client_secret") != self.api_secret:
            return _oauth_error(401, "invalid client credentials")
        if set(body) == CODE_KEYS:
            return self._exchange_code(shop, body)
        if set(body) == REFRESH_KEYS and body["grant_type"] == "refresh_token":
            return self._refresh_token(shop, body)
        if set(body) == EXCHANGE_KEYS:
            return self._exchange_session_token(shop, body)
        return _oauth_error(400, f"unexpected parameters {sorted(body)}")

    def _exchange_code(self, shop: str, body: dict[str, Any]) -> Response | tuple[Response, int]:
        if body["expiring"] != 1:
            return _oauth_error(400, "public apps must ask for expiring tokens (expiring=1)")
        with self._lock:
            if self._codes.pop(body["code"], None) != shop:
                return _oauth_error(400, "the code is invalid, used, or for another shop")
            self.code_exchanges += 1
            return jsonify(self._grant_locked(shop))

    def _exchange_session_token(
        self, shop: str, body: dict[str, Any]
    ) -> Response | tuple[Response, int]:
        """Token exchange (S5): the subject must be a valid session token for this shop."""
        if any(body[key] != value for key, value in EXCHANGE.items()):
            return _oauth_error(400, "token exchange must ask for an expiring offline token")
        try:
            claims = jwt.decode(
                body["subject_token"], self.api_secret, audience=self.api_key, algorithms=["HS256"]
            )
        except jwt.PyJWTError as exc:
            return _oauth_error(400, f"invalid subject_token: {exc}")
        if claims.get("dest") != f"https://{shop}":
            return _oauth_error(400, "the subject_token is for another shop")
        with self._lock:
            self.token_exchanges += 1
            return jsonify(self._grant_locked(shop))

    def _refresh_token(self, shop: str, body: dict[str, Any]) -> Response | tuple[Response, int]:
        with self._lock:
            if self._refresh.pop(body["refresh_token"], None) != shop:
                return _oauth_error(400, "the refresh token is invalid or was already used")
            self.refreshes += 1
            for token, held in list(self._access.items()):
                if held.shop == shop:
                    del self._access[token]
            return jsonify(self._grant_locked(shop))

    def _grant_locked(self, shop: str) -> dict[str, Any]:
        access, refresh = "shpat_" + secrets.token_hex(16), "shprt_" + secrets.token_hex(16)
        self._access[access] = _Token(
            shop, time.time() + self.access_token_seconds, set(self.scopes)
        )
        self._refresh[refresh] = shop
        return {
            "access_token": access,
            "scope": ",".join(sorted(self.scopes)),
            "expires_in": self.access_token_seconds,
            "refresh_token": refresh,
            "refresh_token_expires_in": 7_776_000,
        }

    def _graphql(self, shop: str, version: str) -> Response | tuple[Response, int]:
        with self._lock:
            self.graphql_requests += 1
            held = self._access.get(request.headers.get("X-Shopify-Access-Token", ""))
            if held is None or held.shop != shop or held.expires_at < time.time():
                return jsonify(errors=UNAUTHORIZED), 401
        if not re.fullmatch(r"20\d\d-(01|04|07|10)", version) or version < FIRST_VERSION:
            return jsonify(errors=f"API version {version} is not served (S8)"), 404
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or set(body) - {"query", "variables", "operationName"}:
            return jsonify(errors="body must be {query, variables}"), 400
        query, variables = str(body.get("query")), body.get("variables") or {}
        if "webPixelCreate" in query:
            return jsonify(self._create_pixel(shop, variables))
        if "primaryDomain" in query:
            return jsonify(self._primary_domain(shop, query))
        if "webhookSubscriptionDelete" in query:
            return jsonify(self._delete_subscription(shop, variables))
        with self._lock:
            context = Context(
                orders=list(self.orders.get(shop, [])),
                subscriptions=list(self.subscriptions.get(shop, [])),
                scopes=set(held.scopes),
                now=datetime.now(UTC),
            )
        return jsonify(self.admin.answer(shop, query, variables, context))

    def _delete_subscription(self, shop: str, variables: dict[str, Any]) -> dict[str, Any]:
        """``webhookSubscriptionDelete(id)`` (S3)."""
        ident = variables.get("id")
        with self._lock:
            existing = self.subscriptions.get(shop, [])
            found = next((s for s in existing if s["id"] == ident), None)
            if found is not None:
                existing.remove(found)
        errors = (
            [] if found else [{"field": ["id"], "message": "Webhook subscription does not exist"}]
        )
        result = {"deletedWebhookSubscriptionId": ident if found else None, "userErrors": errors}
        return {"data": {"webhookSubscriptionDelete": result}}

    def _primary_domain(self, shop: str, query: str) -> dict[str, Any]:
        """``shop { primaryDomain { host } }`` (S7), and no other selection: a field the
        stand-in does not know is an error, as an unknown field is for Shopify."""
        selection = re.sub(r"\s+", " ", query).strip()
        if not PRIMARY_DOMAIN_QUERY.fullmatch(selection):
            return {"errors": [{"message": f"unsupported selection: {selection}"}]}
        host = self.primary_domains.get(shop, shop)
        return {"data": {"shop": {"primaryDomain": {"host": host}}}}

    def _create_pixel(self, shop: str, variables: dict[str, Any]) -> dict[str, Any]:
        """``webPixelCreate`` (S6): settings are a JSON string matching the extension's
        ``[settings]``: here exactly ``{"collectUrl": "https://..."}``; one pixel per shop."""
        settings = (variables.get("webPixel") or {}).get("settings")
        try:
            parsed = json.loads(settings) if isinstance(settings, str) else None
        except ValueError:
            parsed = None
        errors = []
        if not isinstance(parsed, dict) or set(parsed) != {"collectUrl"}:
            errors.append(
                {
                    "code": "INVALID_SETTINGS",
                    "field": ["webPixel", "settings"],
                    "message": "settings must be a JSON string {collectUrl}",
                }
            )
        with self._lock:
            if not errors and shop in self.pixels:
                errors.append({"code": "TAKEN", "field": ["webPixel"], "message": "Taken"})
            pixel = None
            if not errors:
                self.pixels[shop] = parsed
                pixel = {"id": f"gid://shopify/WebPixel/{len(self.pixels)}"}
        return {"data": {"webPixelCreate": {"webPixel": pixel, "userErrors": errors}}}


def _oauth_error(status: int, description: str) -> tuple[Response, int]:
    return jsonify(error="invalid_request", error_description=description), status
