"""Shopify's mandatory privacy webhooks, and ``app/uninstalled``.

Public apps must handle ``customers/data_request``, ``customers/redact`` and ``shop/redact``
(https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance); they arrive at the
same ``POST /webhooks/shopify`` as every topic, so the 401 on a bad HMAC is the route's.
Bodies: ``shop_id``, ``shop_domain``, ``customer {id, email, phone}``, ``orders_to_redact`` or
``orders_requested``, ``data_request {id}`` (the samples of
https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance). ``shop/redact``
comes 48 hours after an uninstall.

What we hold about a customer: outbox events (hashed identifiers, never raw email or phone)
and storefront click records. A customer's events are found by the order ids Shopify names
and by their customer id, email and phone, run through each event's destination's own
normalisation and hashing exactly as when the event was written
(``Destination.user_data``; the phone with the country the event stored where the destination
stores it plain, since a national number cannot be normalised without it).
Their click records are those an order of theirs used, or whose checkout token is one of
their InitiateCheckout events. Rows are scanned per store in Python rather than with JSON
operators so the same code runs on SQLite and PostgreSQL.

A data request's export is written to ``<instance>/shopify-data-requests/<store>/
<customer key>-<request id>.json``, readable by the connector's user only (0600, folders
0700), with no IP address or user agent (an event lists them in ``signals`` when it carried
them). The customer key is a hash of the store and customer id (their email, else phone, when
Shopify gives no id), so ``customers/redact`` finds their exports without a raw identifier in
a file name; ``shop/redact`` deletes the store's folder, and ``connector.retention`` deletes
exports after 30 days.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from connector.clicks import CONSENT_COLUMNS, STORED_COLUMNS
from connector.destinations import Destination
from connector.events import ClickIds, Shopper
from connector.models import ClickRecord, OutboxEvent, ShopifyToken, Store, StoreDestination, utcnow
from connector.retention import DATA_REQUESTS_FOLDER
from connector.services import Services
from connector.signals import keys_for, signals_in
from connector.web.merchant.access import end_store_sessions

logger = logging.getLogger(__name__)

IDENTITY_SIGNALS = ("email", "phone", "external_id")
"""The signals whose hashes say who a customer is (an IP or a click id says no one)."""

UNINSTALLED_REASON = "the Shopify app was uninstalled from this store; reinstall it to resume"
EXPORT_NOTE = (
    "personal data is stored only as SHA-256 hashes; click ids are stored as sent; the IP "
    "address and user agent an event lists in signals were sent to the ad platform with it "
    "and are not kept"
)


@dataclass(frozen=True)
class Customer:
    """Whom a request is about: the order ids Shopify names and the customer's identifiers,
    raw, held in memory for the length of the request only."""

    order_ids: frozenset[str]
    customer_id: str | None
    email: str | None
    phone: str | None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], orders_key: str) -> Customer:
        customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
        orders = payload.get(orders_key) if isinstance(payload.get(orders_key), list) else []
        customer_id = customer.get("id")
        return cls(
            order_ids=frozenset(str(o) for o in orders if isinstance(o, int | str)),
            customer_id=str(customer_id) if isinstance(customer_id, int | str) else None,
            email=_text(customer.get("email")),
            phone=_text(customer.get("phone")),
        )

    def owns(self, payload: dict[str, Any], destination: Destination | None) -> bool:
        """Whether an outbox payload is about this customer: one of their orders, or their
        email, phone or customer id as the payload's destination hashed it."""
        if str(payload.get("order_id")) in self.order_ids:
            return True
        user = payload.get("user") or {}
        if destination is None or not user:
            return False
        country = user.get("country") if len(str(user.get("country") or "")) == 2 else None
        shopper = Shopper(
            email=self.email, phone=self.phone, customer_id=self.customer_id, country_code=country
        )
        theirs = destination.user_data(shopper, ClickIds(), 0)
        keys = [k for s in IDENTITY_SIGNALS for k in keys_for(destination.signal_keys, s)]
        return any(theirs.get(key) and user.get(key) == theirs[key] for key in keys)

    def file_key(self, store_id: str) -> str | None:
        """What names this customer's export files: a hash, not their id, email or phone.
        The same customer gets the same key in a data request and in a redaction."""
        email = (self.email or "").strip().lower()
        phone = "".join(ch for ch in self.phone or "" if ch.isdigit())
        identifier = self.customer_id or email or phone
        if not identifier:
            return None
        return hashlib.sha256(f"{store_id}:{identifier}".encode()).hexdigest()[:32]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def redact_customer(services: Services, store: Store, payload: dict[str, Any]) -> dict[str, Any]:
    """``customers/redact``: delete the customer's events and click records."""
    customer = Customer.from_payload(payload, "orders_to_redact")
    with services.db.session() as session:
        events = list(_customer_events(services, session, store.id, customer))
        orders, checkouts = _orders_and_checkouts(events, customer)
        deleted_events = _delete_events(session, [e.id for e in events])
        deleted_clicks = session.execute(
            delete(ClickRecord).where(_click_records_of(store.id, orders, checkouts))
        ).rowcount
        session.commit()
    deleted_exports = _delete_exports_of(services, store.id, customer)
    logger.info(
        "shopify.customer-redacted store=%s events=%d click_records=%d exports=%d",
        store.id,
        deleted_events,
        deleted_clicks,
        deleted_exports,
    )
    return {"status": "redacted", "events": deleted_events, "click_records": deleted_clicks}


def export_customer(services: Services, store: Store, payload: dict[str, Any]) -> dict[str, Any]:
    """``customers/data_request``: write what we hold about the customer to a JSON file the
    merchant can hand over, under the instance folder, and log that the request came."""
    customer = Customer.from_payload(payload, "orders_requested")
    with services.db.session() as session:
        events = list(_customer_events(services, session, store.id, customer))
        orders, checkouts = _orders_and_checkouts(events, customer)
        clicks = session.scalars(
            select(ClickRecord).where(_click_records_of(store.id, orders, checkouts))
        ).all()
    request_id = _request_id(payload)
    path = _store_exports(services, store.id) / (
        f"{customer.file_key(store.id) or 'unidentified'}-{request_id}.json"
    )
    document = {
        "shop": store.domain,
        "data_request_id": request_id,
        "received_at": utcnow().isoformat() + "Z",
        "note": EXPORT_NOTE,
        "events": [_event_json(e) for e in events],
        "click_records": [_click_json(c) for c in clicks],
    }
    _write_private(path, json.dumps(document, indent=2, sort_keys=True))
    logger.info(
        "shopify.data-request store=%s request=%s events=%d click_records=%d file=%s",
        store.id,
        request_id,
        len(events),
        len(clicks),
        path,
    )
    return {"status": "recorded", "events": len(events), "click_records": len(clicks)}


def redact_shop(services: Services, store: Store, _payload: dict[str, Any]) -> dict[str, Any]:
    """``shop/redact``: delete the store and, through the foreign keys, all it owns."""
    with services.db.session() as session:
        session.execute(delete(Store).where(Store.id == store.id))
        session.commit()
    _delete_store_exports(services, store.id)
    logger.info("shopify.shop-redacted store=%s", store.id)
    return {"status": "redacted"}


def uninstall(services: Services, store: Store, _payload: dict[str, Any]) -> dict[str, Any]:
    """``app/uninstalled``: delete the tokens and pause every destination, with the reason
    (one already paused for another reason keeps it, so that reason is not lost).

    Events and settings stay until ``shop/redact``: the merchant may reinstall, and the law
    lets us keep them until Shopify asks for their deletion.
    """
    with services.db.session() as session:
        session.execute(delete(ShopifyToken).where(ShopifyToken.store_id == store.id))
        session.execute(
            update(Store)
            .where(Store.id == store.id)
            .values(status="uninstalled", access_token_encrypted=None)
        )
        session.execute(
            update(StoreDestination)
            .where(StoreDestination.store_id == store.id, StoreDestination.paused_reason.is_(None))
            .values(paused_reason=UNINSTALLED_REASON, paused_at=utcnow(), updated_at=utcnow())
        )
        session.commit()
    end_store_sessions(services, store.id)
    logger.info("shopify.uninstalled store=%s", store.id)
    return {"status": "uninstalled"}


def _customer_events(
    services: Services, session: Session, store_id: str, customer: Customer
) -> Iterator[OutboxEvent]:
    query = (
        select(OutboxEvent).where(OutboxEvent.store_id == store_id).execution_options(yield_per=500)
    )
    return (
        event
        for event in session.scalars(query)
        if customer.owns(event.payload or {}, services.destinations.get(event.destination))
    )


def _orders_and_checkouts(
    events: list[OutboxEvent], customer: Customer
) -> tuple[set[str], set[str]]:
    orders = set(customer.order_ids)
    orders.update(str(e.payload["order_id"]) for e in events if e.payload.get("order_id"))
    # A checkout's event has no order id; its event_id is the checkout token.
    checkouts = {e.event_id for e in events if not e.payload.get("order_id")}
    return orders, checkouts


def _click_records_of(store_id: str, orders: set[str], checkouts: set[str]):  # type: ignore[no-untyped-def]
    return (ClickRecord.store_id == store_id) & or_(
        ClickRecord.order_id.in_(orders),
        (ClickRecord.token_kind == "checkout") & ClickRecord.token.in_(checkouts),
    )


def _delete_events(session: Session, ids: list[int]) -> int:
    deleted = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        deleted += session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(chunk))).rowcount
    return deleted


def _request_id(payload: dict[str, Any]) -> str:
    request = payload.get("data_request") if isinstance(payload.get("data_request"), dict) else {}
    raw = str(request.get("id", "unknown"))
    return "".join(ch for ch in raw if ch.isalnum() or ch in "-_")[:64] or "unknown"


def _exports_folder(services: Services) -> Path:
    return services.settings.instance_path / DATA_REQUESTS_FOLDER


def _store_exports(services: Services, store_id: str) -> Path:
    """The store's export folder, created (or narrowed, if an older version left it open)
    so only the connector's user can list or read it."""
    folder = _exports_folder(services) / store_id
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (folder.parent, folder):
        path.chmod(0o700)
    return folder


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte: created 0600 rather than
    chmod-ed after writing, and narrowed if a retried request overwrites an older file."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _delete_exports_of(services: Services, store_id: str, customer: Customer) -> int:
    """Delete the customer's data-request exports; returns how many."""
    key = customer.file_key(store_id)
    if key is None:
        return 0
    found = list((_exports_folder(services) / store_id).glob(f"{key}-*.json"))
    for path in found:
        path.unlink(missing_ok=True)
    return len(found)


def _delete_store_exports(services: Services, store_id: str) -> None:
    """Delete every export of the store, including those named ``<store>-<request>.json``
    directly in the exports folder by earlier versions."""
    folder = _exports_folder(services)
    shutil.rmtree(folder / store_id, ignore_errors=True)
    for path in folder.glob(f"{store_id}-*.json"):
        path.unlink(missing_ok=True)


def _event_json(event: OutboxEvent) -> dict[str, Any]:
    """The event's payload as stored, which never holds the shopper's IP and user agent (they
    are kept apart until delivery, ``connector.privacy``): the export names them only as
    signals the event carried."""
    return {
        "event_name": event.event_name,
        "event_id": event.event_id,
        "status": event.status,
        "received_at": event.received_at.isoformat() + "Z",
        "signals": signals_in(event.signals or 0),
        "payload": event.payload or {},
    }


def _click_json(record: ClickRecord) -> dict[str, Any]:
    """Everything the record holds about the customer: the click ids and ad cookies of every
    platform it keeps (:data:`connector.clicks.STORED_COLUMNS`, an fbclid kept as its fbc) and
    the consent the storefront reported, as Shopify's ``customers/data_request`` asks for the
    customer's data the app stores (https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance)."""
    return {
        "token_kind": record.token_kind,
        "token": record.token,
        **{name: getattr(record, name) for name in STORED_COLUMNS},
        "consent": {name: getattr(record, column) for name, column in CONSENT_COLUMNS.items()},
        "order_id": record.order_id,
        "created_at": record.created_at.isoformat() + "Z",
    }
