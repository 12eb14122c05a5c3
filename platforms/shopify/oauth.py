"""The checks of Shopify's authorization code grant and of App Bridge session tokens.

Everything here is pure (no Flask, no database), so each check can be tested with hostile
input on its own. Sources:

* the flow, the query ``hmac`` and the 24-hour ``timestamp`` window: Shopify's "Authorization
  code grant" guide
  (https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant)
  and the ``ShopifyAPI`` package's ``shopify/session.py`` (``calculate_hmac``,
  ``validate_params``), whose published test vectors are our known-answer tests;
* the anchored shop pattern: Shopify's security check ``WEAK_SHOP_VALIDATION``
  (https://shopify.dev/docs/apps/build/security/app-security-checks/weak-shop-validation);
* session tokens: HS256 with the app secret, ``aud`` the API key, ``dest`` the shop
  (https://shopify.dev/docs/apps/build/authentication-authorization/session-tokens).

Where we do not use ``ShopifyAPI``: ``Session.calculate_hmac``/``validate_params``,
``create_permission_url`` and ``request_token`` read the app key and secret from class
attributes (``Session.setup``) that every thread of the process shares, and ``request_token``
can only reach ``https://{shop}`` and cannot ask for an expiring token. So the HMAC and the
authorize URL are computed here (the tests check our HMAC against ``ShopifyAPI``'s), and
:mod:`platforms.shopify.tokens` makes the token requests. Its stateless
``shopify.session_token.decode_from_header`` is used as is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode, urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from shopify import session_token

SHOP_DOMAIN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com")
"""Shopify's anchored pattern, always used with ``fullmatch``."""

MAX_REQUEST_AGE_SECONDS = 24 * 3600
"""``ShopifyAPI``'s ``validate_params`` refuses install requests older than a day."""

STATE_MAX_AGE_SECONDS = 10 * 60
"""How long a merchant may take on Shopify's consent screen before the state expires."""

_STATE_SALT = "shopify-oauth-state"


class OAuthError(Exception):
    """An install request or callback that must be refused; the message says why."""


class StateError(OAuthError):
    """The callback's ``state`` is not the one this browser was given (a forgery or a replay)."""


def valid_shop(value: object) -> str | None:
    """The shop's ``*.myshopify.com`` domain, lowercased, or None.

    Only a bare host matches: ``evil.com/x.myshopify.com``, ``x.myshopify.com.evil.com``,
    a port, a scheme or a newline all fail, so the redirect can never leave Shopify.
    """
    if not isinstance(value, str) or not SHOP_DOMAIN.fullmatch(value):
        return None
    return value.lower()


def query_hmac(secret: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """The hex HMAC-SHA256 Shopify puts in ``hmac``, computed as ``ShopifyAPI`` does.

    Every parameter but ``hmac``: ``%`` and ``=`` escaped in keys, ``%`` in values, ``&``
    escaped in both; ``name[]`` parameters become ``name=["a", "b"]`` (JSON); pairs sorted
    and joined with ``&``.
    """
    pairs = []
    for key, value in params.items():
        if key == "hmac":
            continue
        if key.endswith("[]"):
            key = key[:-2]
            value = json.dumps([str(v) for v in value] if not isinstance(value, str) else [value])
        key = key.replace("%", "%25").replace("=", "%3D")
        value = str(value).replace("%", "%25")
        pairs.append(f"{key}={value}".replace("&", "%26"))
    message = "&".join(sorted(pairs))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_query(
    secret: str, params: Mapping[str, str | Sequence[str]], *, now: float | None = None
) -> str:
    """Check a request Shopify signed (install, callback); return its valid shop domain.

    Raises:
        OAuthError: bad or missing shop, hmac or timestamp, or older than a day.
    """
    shop = valid_shop(params.get("shop"))
    if shop is None:
        raise OAuthError("'shop' must be a shop domain like example.myshopify.com")
    given = params.get("hmac")
    if not isinstance(given, str) or not hmac.compare_digest(
        query_hmac(secret, params).encode(), given.encode()
    ):
        raise OAuthError("the request's hmac does not match: open the app from Shopify again")
    timestamp = params.get("timestamp")
    if not isinstance(timestamp, str) or not timestamp.isdigit():
        raise OAuthError("the request has no valid timestamp: open the app from Shopify again")
    age = (time.time() if now is None else now) - int(timestamp)
    if age > MAX_REQUEST_AGE_SECONDS:
        raise OAuthError("the request is more than a day old: open the app from Shopify again")
    return shop


def authorize_url(
    admin_base: str, *, api_key: str, scopes: str, redirect_uri: str, state: str
) -> str:
    """Where the merchant approves the app: ``{admin_base}/admin/oauth/authorize?...``."""
    query = urlencode(
        {"client_id": api_key, "scope": scopes, "redirect_uri": redirect_uri, "state": state}
    )
    return f"{admin_base}/admin/oauth/authorize?{query}"


def new_state(secret_key: str, shop: str, nonce: str) -> str:
    """A signed, timestamped ``state`` naming the shop and the browser's nonce."""
    return URLSafeTimedSerializer(secret_key, salt=_STATE_SALT).dumps({"shop": shop, "n": nonce})


def check_state(
    secret_keys: str | list[str],
    state: object,
    *,
    shop: str,
    browser_nonce: str | None,
    max_age: int = STATE_MAX_AGE_SECONDS,
) -> None:
    """Refuse a callback whose ``state`` we did not sign, that expired, names another shop,
    or was issued to another browser (its nonce is in a cookie only that browser has).
    ``secret_keys`` may list former keys first (``Settings.signing_keys``), so an install
    under way when ``SECRET_KEY`` changed still finishes.

    Raises:
        StateError: with what the merchant should do.
    """
    if not isinstance(state, str) or not browser_nonce:
        raise StateError("the install was not started from this browser: start it again")
    serializer = URLSafeTimedSerializer(secret_keys, salt=_STATE_SALT)
    try:
        data = serializer.loads(state, max_age=max_age)
    except SignatureExpired:
        raise StateError("the install took too long: start it again") from None
    except BadSignature:
        raise StateError("the install's state is invalid: start it again") from None
    if not isinstance(data, dict) or data.get("shop") != shop:
        raise StateError("the install's state belongs to another shop: start it again")
    if not hmac.compare_digest(str(data.get("n", "")).encode(), browser_nonce.encode()):
        raise StateError("the install was not started from this browser: start it again")


def decode_session_token(authorization: str, *, api_key: str, secret: str) -> str:
    """The shop an App Bridge session token (``Authorization: Bearer <jwt>``) speaks for.

    ``ShopifyAPI`` checks the HS256 signature, ``aud``, ``exp``/``nbf`` (10 s leeway) and
    that ``iss`` and ``dest`` are the same myshopify host; we also require ``exp`` and
    ``nbf`` to be present and ``dest`` to be a valid shop, since the caller trusts it.

    Raises:
        OAuthError: any invalid token.
    """
    try:
        claims = session_token.decode_from_header(authorization, api_key, secret)
    except session_token.SessionTokenError as exc:
        raise OAuthError(f"invalid session token: {exc}") from None
    if "exp" not in claims or "nbf" not in claims:
        raise OAuthError("invalid session token: exp and nbf are required")
    dest = urlsplit(str(claims["dest"]))
    shop = valid_shop(dest.hostname or "")
    if dest.scheme != "https" or shop is None or dest.port or dest.path not in ("", "/"):
        raise OAuthError("invalid session token: dest is not a shop")
    return shop
