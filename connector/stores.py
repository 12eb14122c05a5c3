"""Stores and their destinations: creating, finding, configuring.

Secrets (store webhook secrets, access tokens) are encrypted before they reach the database
and decrypted only where they are used.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.crypto import TokenCipher, UndecryptableSecret
from connector.mapping import EventOptions
from connector.models import Destination, Store, utcnow
from connector.services import Services


class StoreError(Exception):
    """A store operation cannot be done; the message says why and what to do."""


def add_store(
    services: Services,
    *,
    platform: str,
    domain: str,
    webhook_secret: str | None,
    access_token: str | None = None,
) -> Store:
    """Register a store; refuses a second store with the same platform and domain."""
    cipher = services.cipher
    store = Store(
        id=new_store_id(),
        platform=platform,
        domain=domain,
        webhook_secret_encrypted=cipher.encrypt(webhook_secret) if webhook_secret else None,
        access_token_encrypted=cipher.encrypt(access_token) if access_token else None,
    )
    with services.db.session() as session:
        session.add(store)
        try:
            session.commit()
        except IntegrityError:
            raise StoreError(f"a {platform} store for {domain} is already registered") from None
    return store


def new_store_id() -> str:
    """An unguessable id; it appears in WooCommerce webhook URLs."""
    return "st_" + secrets.token_hex(8)


def find_store(session: Session, *, platform: str, domain: str) -> Store | None:
    """The active store with that platform and domain."""
    query = select(Store).where(Store.platform == platform, Store.domain == domain)
    return session.scalar(query)


def find_destination(session: Session, store_id: str, kind: str) -> Destination | None:
    """The store's destination of that kind (one per kind: ``uq_destinations_store_kind``)."""
    query = select(Destination).where(Destination.store_id == store_id, Destination.kind == kind)
    return session.scalar(query)


def webhook_secrets(
    services: Services, encrypted_secret: str | None, *fallbacks: str | None
) -> list[str]:
    """The secrets a webhook of a store may be signed with: its own (``encrypted_secret``,
    the store's ``webhook_secret_encrypted``), then the app's."""
    found = []
    if encrypted_secret:
        found.append(decrypted(services.cipher, encrypted_secret))
    found.extend(secret for secret in fallbacks if secret)
    return found


@lru_cache(maxsize=1024)
def decrypted(cipher: TokenCipher, ciphertext: str) -> str:
    """``cipher.decrypt(ciphertext)``, remembered per process.

    Every webhook needs its store's secret, and Fernet's check and decryption cost more than
    the HMAC they serve. The result depends on nothing but the key and the ciphertext, and a
    new secret is a new ciphertext, so nothing here can go stale: a rotated secret is used
    from the first webhook after it is stored. Failures are not remembered.
    """
    return cipher.decrypt(ciphertext)


def set_destination(
    services: Services,
    store_id: str,
    *,
    kind: str,
    pixel_code: str,
    access_token: str,
    test_event_code: str | None,
    options: dict[str, Any] | None = None,
) -> Destination:
    """Create or update a store's destination; un-pauses it, since the token is new."""
    with services.db.session() as session:
        if session.get(Store, store_id) is None:
            raise StoreError(f"no store {store_id}: see `connector stores list`")
        destination = find_destination(session, store_id, kind) or Destination(
            store_id=store_id, kind=kind
        )
        if _token_of(services, destination) != access_token:
            # A pasted token replaces an OAuth grant: its refresh token and expiry are not
            # this token's, so renewal must not touch it.
            destination.refresh_token_encrypted = None
            destination.token_expires_at = destination.refresh_expires_at = None
            destination.advertiser_id = None
        destination.pixel_code = pixel_code
        destination.access_token_encrypted = services.cipher.encrypt(access_token)
        destination.test_event_code = test_event_code
        merged = {**(destination.options or {}), **(options or {})}
        destination.options = vars(EventOptions.from_json(merged))  # ValueError on a bad choice
        destination.paused_reason = None
        destination.paused_at = None
        destination.updated_at = utcnow()
        session.add(destination)
        session.commit()
        return destination


def _token_of(services: Services, destination: Destination) -> str | None:
    """The destination's current access token, decrypted; None for a new destination, and
    for one whose token no configured key decrypts (a lost SECRET_KEY: entering the token
    again is the fix)."""
    if not destination.access_token_encrypted:
        return None
    try:
        return services.cipher.decrypt(destination.access_token_encrypted)
    except UndecryptableSecret:
        return None
