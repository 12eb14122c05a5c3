"""Expiring offline access tokens: get one for a code, keep it encrypted, refresh it in time.

Shopify's token endpoint is ``POST https://{shop}/admin/oauth/access_token``. The code
exchange sends ``client_id``, ``client_secret`` and ``code`` plus ``expiring=1``, which asks
for an expiring offline token: the answer then adds ``expires_in`` (3600),
``refresh_token`` and ``refresh_token_expires_in``. A refresh sends
``grant_type=refresh_token`` and the refresh token, and rotates it. Public apps created after
2026-04-01 must use expiring tokens
(https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens;
field names from ``shopify_app/exchange/refresh_token.py`` and ``token_exchange.py`` in
github.com/Shopify/shopify-app-python).

Two workers must never refresh the same token at once: with rotation, the loser would send
a refresh token the winner just used. A Redis lock per store serialises refreshes and the
token is read again once the lock is held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests

from connector.models import ShopifyToken, Store, utcnow
from connector.services import Services

logger = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
"""Refresh this long before expiry, so a request never starts with a dying token."""

LOCK_SECONDS = 30


class TokenError(Exception):
    """Shopify refused or could not answer a token request; the message says what to do."""


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint answered (the tokens stay in memory only until encrypted)."""

    access_token: str
    scope: str
    expires_in: int | None
    refresh_token: str | None
    refresh_token_expires_in: int | None


def admin_base_url(shop: str, override: str | None = None) -> str:
    """The base URL of a shop's admin: ``https://{shop}``.

    ``override`` exists for tests and nothing else: a template such as
    ``http://127.0.0.1:8123/{shop}`` sends every Shopify call to a local stand-in. Callers pass
    ``settings.shopify_admin_base_url`` (``SHOPIFY_ADMIN_BASE_URL``), which only tests set.
    """
    return override.format(shop=shop) if override else f"https://{shop}"


def exchange_code(
    services: Services, admin_base: str, *, api_key: str, secret: str, code: str
) -> TokenGrant:
    """The expiring offline token for an authorization code."""
    body = {"client_id": api_key, "client_secret": secret, "code": code, "expiring": 1}
    return _token_request(services, admin_base, body)


def exchange_session_token(
    services: Services, admin_base: str, *, api_key: str, secret: str, id_token: str
) -> TokenGrant:
    """The expiring offline token for an App Bridge session token (embedded apps).

    Token exchange replaces the redirect flow for embedded apps: the request names the
    session token as the subject and asks for an offline token, ``expiring`` 1
    (``shopify_app/exchange/token_exchange.py::_build_request`` in Shopify/shopify-app-python).
    """
    body = {
        "client_id": api_key,
        "client_secret": secret,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": id_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
        "expiring": 1,
    }
    return _token_request(services, admin_base, body)


def refresh_grant(
    services: Services, admin_base: str, *, api_key: str, secret: str, refresh_token: str
) -> TokenGrant:
    """A new access token (and a rotated refresh token) for a refresh token."""
    body = {
        "client_id": api_key,
        "client_secret": secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    }
    return _token_request(services, admin_base, body)


def save_grant(services: Services, store_id: str, grant: TokenGrant) -> None:
    """Store both tokens encrypted, with their expiry times, replacing what was there."""
    now = utcnow()
    cipher = services.cipher
    with services.db.session() as session:
        row = session.get(ShopifyToken, store_id) or ShopifyToken(store_id=store_id)
        row.access_token_encrypted = cipher.encrypt(grant.access_token)
        row.expires_at = _after(now, grant.expires_in)
        row.refresh_token_encrypted = (
            cipher.encrypt(grant.refresh_token) if grant.refresh_token else None
        )
        row.refresh_expires_at = _after(now, grant.refresh_token_expires_in)
        row.scope = grant.scope
        session.add(row)
        session.commit()


def access_token(
    services: Services, store_id: str, admin_base: str, *, force_refresh: bool = False
) -> str:
    """A usable access token for the store, refreshed first when it is about to expire.

    ``force_refresh`` is for a 401 from the Admin API: the token was revoked or expired early.
    A store registered with its own custom app (``stores add-shopify``) has a token that never
    expires and cannot be refreshed: it is used as it is, and a 401 means it was revoked.

    Raises:
        TokenError: no token (the app is not installed), or the refresh failed.
    """
    with services.db.session() as session:
        row = session.get(ShopifyToken, store_id)
        store = session.get(Store, store_id) if row is None else None
    if row is None:
        return _custom_app_token(services, store_id, store, force_refresh=force_refresh)
    if not force_refresh and not _needs_refresh(row):
        return services.cipher.decrypt(row.access_token_encrypted)
    with services.redis.lock(
        f"shopify-token-refresh:{store_id}", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
    ):
        fresh = _load(services, store_id)
        if fresh.updated_at > row.updated_at or (not force_refresh and not _needs_refresh(fresh)):
            return services.cipher.decrypt(fresh.access_token_encrypted)  # another worker did it
        return _refresh(services, store_id, admin_base, fresh)


def _custom_app_token(
    services: Services, store_id: str, store: Store | None, *, force_refresh: bool
) -> str:
    if store is None or not store.access_token_encrypted:
        raise TokenError(f"store {store_id} has no Shopify token: install the app on it")
    if force_refresh:
        raise TokenError(
            "Shopify refused the store's Admin API access token (revoked, or its custom app "
            "uninstalled): reconnect the store with a new token from its custom app"
        )
    return services.cipher.decrypt(store.access_token_encrypted)


def _refresh(services: Services, store_id: str, admin_base: str, row: ShopifyToken) -> str:
    settings = services.settings
    if not row.refresh_token_encrypted:
        raise TokenError("the store's token cannot be refreshed: reinstall the app")
    if not (settings.shopify_api_key and settings.shopify_api_secret):
        raise TokenError("set SHOPIFY_API_KEY and SHOPIFY_API_SECRET to refresh Shopify tokens")
    grant = refresh_grant(
        services,
        admin_base,
        api_key=settings.shopify_api_key,
        secret=settings.shopify_api_secret,
        refresh_token=services.cipher.decrypt(row.refresh_token_encrypted),
    )
    save_grant(services, store_id, grant)
    logger.info("shopify.token-refreshed store=%s", store_id)
    return grant.access_token


def _load(services: Services, store_id: str) -> ShopifyToken:
    with services.db.session() as session:
        row = session.get(ShopifyToken, store_id)
    if row is None:
        raise TokenError(f"store {store_id} has no Shopify token: install the app on it")
    return row


def _needs_refresh(row: ShopifyToken) -> bool:
    return row.expires_at is not None and row.expires_at - REFRESH_MARGIN <= utcnow()


def _after(now: datetime, seconds: int | None) -> datetime | None:
    return now + timedelta(seconds=seconds) if seconds else None


def _token_request(services: Services, admin_base: str, body: dict[str, object]) -> TokenGrant:
    url = f"{admin_base}/admin/oauth/access_token"
    try:
        answer = services.http.post(url, json=body, timeout=services.settings.http_timeout_seconds)
    except requests.RequestException as exc:
        problem = type(exc).__name__
        raise TokenError(f"Shopify's token endpoint did not answer ({problem})") from None
    if answer.status_code != 200:
        raise TokenError(
            f"Shopify refused the token request (HTTP {answer.status_code}): "
            "reinstall the app from the Shopify admin"
        )
    return _grant(answer)


def _grant(answer: requests.Response) -> TokenGrant:
    try:
        data = answer.json()
        token = data["access_token"]
    except (ValueError, KeyError, TypeError):
        raise TokenError("Shopify's token answer has no access_token") from None
    if not isinstance(token, str) or not token:
        raise TokenError("Shopify's token answer has no access_token")
    return TokenGrant(
        access_token=token,
        scope=str(data.get("scope") or ""),
        expires_in=_seconds(data.get("expires_in")),
        refresh_token=data.get("refresh_token") or None,
        refresh_token_expires_in=_seconds(data.get("refresh_token_expires_in")),
    )


def _seconds(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
