"""Stores and their destinations: creating, finding, configuring.

Secrets (store webhook secrets, access tokens) are encrypted before they reach the database
and decrypted only where they are used.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.consent import ConsentPolicy
from connector.crypto import TokenCipher, UndecryptableSecret
from connector.destinations import ConfigField
from connector.mapping import EventOptions, check_event_name
from connector.models import OutboxEvent, Store, StoreDestination, utcnow
from connector.services import Services

logger = logging.getLogger(__name__)


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


def find_destination(session: Session, store_id: str, kind: str) -> StoreDestination | None:
    """The store's destination of that kind (one per kind: ``uq_destinations_store_kind``)."""
    query = select(StoreDestination).where(
        StoreDestination.store_id == store_id, StoreDestination.kind == kind
    )
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
    values: Mapping[str, str | None],
    options: dict[str, Any] | None = None,
) -> StoreDestination:
    """Create or update a store's destination from the values of its fields (by
    ``ConfigField.name``); un-pauses it, since its credentials are new.

    A field missing from ``values`` keeps what is stored (a new destination must have every
    required one); each value is trimmed and checked by its field. Raises :class:`StoreError`
    with the field's words, or ValueError for a bad option.
    """
    api = services.destinations.get(kind)
    if api is None:
        known = ", ".join(sorted(services.destinations))
        raise StoreError(f"no destination {kind!r}: choose one of {known}")
    with services.db.session() as session:
        if session.get(Store, store_id) is None:
            raise StoreError(f"no store {store_id}: see `connector stores list`")
        destination = find_destination(session, store_id, kind) or StoreDestination(
            store_id=store_id, kind=kind, account_id="", settings={}
        )
        new = destination.id is None
        for field in api.fields:
            if field.name not in values and not new:
                continue
            value = (values.get(field.name) or "").strip()
            problem = field.problem(value)
            if problem:
                raise StoreError(f"{api.label}: {problem}")
            _store_field(services, destination, field, value)
        merged = EventOptions.from_json({**(destination.options or {}), **(options or {})})
        check_event_name(api, merged)  # ValueError on a name the platform does not know
        if merged.purchase_event is None and api.event_names.get("purchase"):
            # Stored explicitly, so the browser pixel code shown to the merchant names it.
            merged = replace(merged, purchase_event=api.event_names["purchase"][0])
        destination.options = vars(merged)
        destination.paused_reason = None
        destination.paused_at = None
        destination.updated_at = utcnow()
        session.add(destination)
        session.commit()
        return destination


def _store_field(
    services: Services, destination: StoreDestination, field: ConfigField, value: str
) -> None:
    """Write one field where it lives on the row; secrets encrypted.

    A new access token replaces an OAuth grant (its refresh token and expiry are not this
    token's, so renewal must not touch it); a new refresh token makes the access token made
    with the old one stale, so it is dropped and renewed before the next send.
    """
    cipher = services.cipher
    if field.stored_as == "account_id":
        destination.account_id = value
    elif field.stored_as == "test_event_code":
        destination.test_event_code = value or None
    elif field.stored_as == "setting":
        destination.settings = {**(destination.settings or {}), field.name: value or None}
    elif field.stored_as == "access_token":
        if _decrypted_or_none(cipher, destination.access_token_encrypted) != value:
            destination.refresh_token_encrypted = None
            destination.token_expires_at = destination.refresh_expires_at = None
            destination.advertiser_id = None
        destination.access_token_encrypted = cipher.encrypt(value) if value else None
    elif field.stored_as == "refresh_token":
        if _decrypted_or_none(cipher, destination.refresh_token_encrypted) != value:
            destination.access_token_encrypted = None
            destination.token_expires_at = None
        destination.refresh_token_encrypted = cipher.encrypt(value) if value else None


def remove_destination(services: Services, store_id: str, kind: str) -> bool:
    """Delete a store's destination; its events go with it (the foreign key is the store's,
    so they are deleted here). True when there was one."""
    with services.db.session() as session:
        destination = find_destination(session, store_id, kind)
        if destination is None:
            return False
        session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.store_id == store_id, OutboxEvent.destination == kind
            )
        )
        session.delete(destination)
        session.commit()
        return True


def _decrypted_or_none(cipher: TokenCipher, ciphertext: str | None) -> str | None:
    """A stored secret, decrypted; None when there is none, and when no configured key
    decrypts it (a lost SECRET_KEY: entering the value again is the fix)."""
    if not ciphertext:
        return None
    try:
        return cipher.decrypt(ciphertext)
    except UndecryptableSecret:
        return None


def destinations_of(services: Services, store_id: str) -> list[StoreDestination]:
    """The store's destinations, by kind; :class:`StoreError` when there is no such store."""
    with services.db.session() as session:
        if session.get(Store, store_id) is None:
            raise StoreError(f"no store {store_id}: see `connector stores list`")
        query = (
            select(StoreDestination)
            .where(StoreDestination.store_id == store_id)
            .order_by(StoreDestination.kind)
        )
        return list(session.scalars(query))


def consent_policy(services: Services, store_id: str) -> ConsentPolicy:
    """The store's policy; StoreError when there is no such store."""
    with services.db.session() as session:
        store = session.get(Store, store_id)
        if store is None:
            raise StoreError(f"no store {store_id}: see `connector stores list`")
        return ConsentPolicy(store.consent_policy, store.consent_unknown)


def set_consent_policy(services: Services, store_id: str, policy: ConsentPolicy) -> None:
    """Save the store's policy; it applies to events recorded from now on."""
    with services.db.session() as session:
        store = session.get(Store, store_id)
        if store is None:
            raise StoreError(f"no store {store_id}: see `connector stores list`")
        store.consent_policy, store.consent_unknown = policy.policy, policy.unknown
        session.commit()
    logger.info(
        "stores.consent store=%s policy=%s unknown=%s", store_id, policy.policy, policy.unknown
    )
