"""The store of record: stores, their destinations, the event outbox and delivery attempts.

The ``events`` table is a transactional outbox: the webhook request inserts a row before it
answers 200, and that row, not anything in Redis, is the truth about what must be delivered.
Its unique key (store, destination, event name, event_id) is what makes a repeated webhook
delivery insert nothing. Times are naive UTC throughout (SQLite keeps no zone).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    """Now, as the naive UTC datetime every column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class EventStatus(StrEnum):
    """Where an outbox row stands; the values are shown to merchants and operators."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # the destination refused it permanently; replayable
    DEAD = "dead"  # retries exhausted; replayable
    SKIPPED = "skipped"  # deliberately not sent (point of sale, bot...), with the reason


class EventSource(StrEnum):
    """How an event's order or checkout reached the connector."""

    WEBHOOK = "webhook"
    RECONCILED = "reconciled"  # read from the store's API: its webhook never came
    REPROCESSED = "reprocessed"  # a kept unreadable webhook, read again by newer code
    BACKFILLED = "backfilled"  # read from the store's API for a destination added later


class Base(DeclarativeBase):
    """Declarative base; its metadata is what Alembic migrates."""


class Store(Base):
    """A connected shop on one store platform."""

    __tablename__ = "stores"
    __table_args__ = (UniqueConstraint("platform", "domain", name="uq_stores_platform_domain"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    domain: Mapped[str] = mapped_column(String(255))
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Other hostnames the storefront is served from (a Shopify shop's primary domain), which
    # ``POST /collect`` accepts as an Origin besides ``domain``.
    storefront_domains: Mapped[list[str] | None] = mapped_column(JSON)
    # The address the store's webhooks were made to deliver to, recorded when they were made
    # through the store's API; repairs point webhooks here and nowhere else, so a process
    # started with another (or no) APP_URL can never send a store's orders astray.
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # Reconciliation (connector.reconcile): orders changed up to ``reconciled_until`` have been
    # read from the store's API; ``reconciled_at`` is when that last ran, and
    # ``reconcile_error`` why the last run could not (revoked keys, no API access).
    reconciled_until: Mapped[datetime | None] = mapped_column(DateTime)
    reconciled_at: Mapped[datetime | None] = mapped_column(DateTime)
    reconcile_error: Mapped[str | None] = mapped_column(Text)
    # What the shopper's consent decides (connector.consent): "ignore", "respect" or
    # "limited", and for "respect" whether an event without known consent is sent or held.
    consent_policy: Mapped[str] = mapped_column(String(16), server_default="respect")
    consent_unknown: Mapped[str] = mapped_column(String(8), server_default="send")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class StoreDestination(Base):
    """An ad platform a store sends to (one per kind), with its credentials and options.

    Not to be confused with :class:`connector.destinations.Destination`, the code of an ad
    platform: this row is one store's configuration of it. Its columns are the same for every
    platform; what each means is the destination's (:class:`connector.destinations.ConfigField`).
    """

    __tablename__ = "destinations"
    __table_args__ = (UniqueConstraint("store_id", "kind", name="uq_destinations_store_kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    # What events are sent to on the platform: a TikTok pixel code, a Meta pixel (dataset) id,
    # a Google Ads customer id.
    account_id: Mapped[str] = mapped_column(String(64))
    # None for a destination whose access tokens are only ever made from its refresh token
    # (Google), until the first is made.
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    # Set when the token came from the ad platform's OAuth ("Connect with TikTok") rather
    # than being pasted: what refreshing it needs, and the account its pixels belong to.
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    advertiser_id: Mapped[str | None] = mapped_column(String(64))
    test_event_code: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The destination's other, non-secret fields (a Google conversion action...), by name.
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class OutboxEvent(Base):
    """One conversion event for one destination: the outbox row.

    Each destination of a store has its own row for the same order, with its own status,
    attempts and payload (:class:`connector.events.ConversionEvent` with that destination's
    user data), so one platform's trouble never holds back another's events.
    """

    __tablename__ = "events"
    # No index names ``status`` or ``next_attempt_at``: the rows a worker claims are found in
    # ``pending_events`` (PendingEvent), so recording an outcome changes no indexed column and
    # PostgreSQL writes it as a heap-only update (the table keeps 20% of each page free for
    # them, migration 0009).
    __table_args__ = (
        UniqueConstraint(
            "store_id", "destination", "event_name", "event_id", name="uq_events_dedup"
        ),
        Index("ix_events_store_received", "store_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(32))
    event_name: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(255))
    source_topic: Mapped[str] = mapped_column(String(64))
    # How the order reached us (EventSource): its webhook, reconciliation with the store's API
    # because the webhook never came, or a kept unreadable webhook read again.
    source: Mapped[str | None] = mapped_column(String(16))
    # What the store sent that had to be read leniently (a missing offset, a missing price...),
    # so a merchant can see why a value is not exactly what the store shows.
    parse_notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    event_time: Mapped[int] = mapped_column(BigInteger)
    click_source: Mapped[str | None] = mapped_column(String(32))
    # Bitmask of the matching signals the event carried (connector.signals), for diagnostics.
    signals: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Retries stop here and the row goes dead; a replay moves it forward again.
    give_up_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_code: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(128))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The shopper's consent as the event was recorded ("granted", "denied", "limited": sale
    # of data opted out, "unknown") and where it was found; the browser family and device of
    # the shopper's user agent, kept for the recovered-conversions ledger (the user agent
    # itself is scrubbed after delivery).
    consent: Mapped[str | None] = mapped_column(String(16))
    consent_source: Mapped[str | None] = mapped_column(String(32))
    browser: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(16))
    # The payload's value and currency as columns, so the ledger sums a month of purchases
    # without reading every JSON payload (None on rows recorded before they existed).
    value: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(16))
    # The shopper's IP address and user agent, under the destination's keys, kept apart from
    # the payload until the event is final: delivery sets the column to NULL in the UPDATE
    # that records it (connector.privacy says why and when).
    network: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # The event as its destination sends it (Destination.event_element), encoded when it was
    # recorded, so a worker frames stored elements instead of rebuilding events; it holds the
    # IP and user agent too, so it is emptied with ``network``. None on rows never to be sent
    # (skipped) and on rows recorded before it existed, which are rebuilt from the payload.
    wire: Mapped[str | None] = mapped_column(Text)


class PendingEvent(Base):
    """The delivery queue: one row per pending outbox row, what a worker claims.

    A row is here exactly while its event is ``pending``. It enters by database triggers
    (migration 0009), on the insert of a pending event and on every change that makes an
    event pending or moves its next attempt (a retry, a replay, an operator's UPDATE), so no
    writer can leave a pending event out of the queue. It leaves with the outcome that makes
    its event final (``connector.delivery``), in the same transaction; one an out-of-band
    write left behind is inert (the claim reads only pending events) and the hourly retention
    run deletes it.

    Why a table apart: with the claim index on ``events`` (status, next attempt), recording a
    delivery changed an indexed column, so every delivered event cost a new row version and an
    entry in each of the table's five indexes; the heap-only update it is now, plus deleting
    this narrow row, halved PostgreSQL's CPU per delivered event (bench/README.md).
    """

    __tablename__ = "pending_events"
    __table_args__ = (
        Index("ix_pending_events_claim", "store_id", "destination", "next_attempt_at"),
    )

    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    store_id: Mapped[str] = mapped_column(String(32))
    destination: Mapped[str] = mapped_column(String(32))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)


class Attempt(Base):
    """One request to a destination (a batch), kept for the delivery log and diagnostics."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer)
    event_count: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    # A platform that reports on accepted requests later (Destination.follow_up): its latest
    # words, when it was last asked, and whether its processing is final.
    follow_up: Mapped[str | None] = mapped_column(Text)
    followed_up_at: Mapped[datetime | None] = mapped_column(DateTime)
    follow_up_done: Mapped[bool | None] = mapped_column(Boolean)


class UnreadableWebhook(Base):
    """A verified webhook we could not turn into events, kept so nothing is lost.

    The platform already has its 200 (a refusal would only make Shopify retry the same body
    and WooCommerce disable the webhook), so this row is the order's only copy: the raw body,
    encrypted because it holds raw email and phone, until ``connector events reprocess``
    reads it again with fixed code or ``UNREADABLE_RETENTION_DAYS`` pass. One row per store
    and body (``body_sha256``), so a platform's retries of the same body keep one copy.
    """

    __tablename__ = "unreadable_webhooks"
    __table_args__ = (
        UniqueConstraint("store_id", "body_sha256", name="uq_unreadable_webhooks_body"),
        Index("ix_unreadable_webhooks_store_received", "store_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    topic: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    body_encrypted: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    reprocessed_at: Mapped[datetime | None] = mapped_column(DateTime)


class ShopifyToken(Base):
    """A Shopify app install's expiring offline token and its refresh token, both encrypted.

    Kept apart from :class:`Store` because only OAuth-installed Shopify stores have one, and
    ``app/uninstalled`` deletes the row outright. Shopify offline tokens expire after an hour
    and the refresh token is rotated on every refresh
    (https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens).
    """

    __tablename__ = "shopify_tokens"

    store_id: Mapped[str] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True
    )
    access_token_encrypted: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    scope: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ClickRecord(Base):
    """Click ids and ad cookies a storefront reported for a checkout or cart token
    (``POST /collect``).

    The order webhook carries the same tokens, which is how the click reaches the order.
    ``order_id`` is filled when an order used the record, so ``customers/redact`` can find it.
    """

    __tablename__ = "click_records"
    __table_args__ = (
        UniqueConstraint("store_id", "token_kind", "token", name="uq_click_records_token"),
        Index("ix_click_records_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    token_kind: Mapped[str] = mapped_column(String(16))  # "checkout" or "cart"
    token: Mapped[str] = mapped_column(String(255))
    ttclid: Mapped[str | None] = mapped_column(Text)
    ttp: Mapped[str | None] = mapped_column(Text)
    # Meta's click cookie (built from an fbclid when the storefront saw one, as
    # ``fb.1.<ms>.<fbclid>``) and browser cookie, and Google's click ids.
    fbc: Mapped[str | None] = mapped_column(Text)
    fbp: Mapped[str | None] = mapped_column(Text)
    gclid: Mapped[str | None] = mapped_column(Text)
    gbraid: Mapped[str | None] = mapped_column(Text)
    wbraid: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The shopper's consent as the storefront last reported it (True granted, False denied,
    # None unknown). Unlike the click ids it may change: the latest report is the choice.
    consent_marketing: Mapped[bool | None] = mapped_column(Boolean)
    consent_analytics: Mapped[bool | None] = mapped_column(Boolean)
    consent_sale_of_data: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class PixelReceipt(Base):
    """What the storefront's browser pixel did for one purchase (``POST /collect``).

    ``outcome`` is "reported" (the ad platform's pixel script loaded and its purchase call was
    made) or "blocked" (the script did not load). Joined to the outbox by ``event_id``, it is
    what tells a purchase the browser also reported from one only the server delivered
    (connector.recovered). It holds no personal data.
    """

    __tablename__ = "pixel_receipts"
    __table_args__ = (
        UniqueConstraint("store_id", "pixel", "event_id", name="uq_pixel_receipts_event"),
        Index("ix_pixel_receipts_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    pixel: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MerchantSession(Base):
    """A browser logged in to one store's merchant pages (connector.web.merchant.access).

    The cookie holds a random id; only its SHA-256 is kept here, so a copy of the table lets
    no one in. A session ends at ``expires_at`` (absolute), after a while unused
    (``last_seen_at``), or when its row is deleted: logout, an uninstall, a deleted store.
    """

    __tablename__ = "merchant_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
