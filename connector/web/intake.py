"""What every store platform's webhook endpoint does once it knows the store and topic.

The answers are a public contract (the README's "Webhook answers"): 200 accepted (also for
a duplicate, for a topic we deliberately ignore, and for a signed body we cannot read, which
is kept), 401 bad or missing signature, 400 a body that is not JSON, 404 unknown store, 413
too large, 503 only when the event cannot be stored (or the store's secret cannot be
decrypted with the configured keys) so the platform retries. Every error is JSON
``{"error": "..."}`` a person can act on, and each refusal is
logged under a stable key with no personal data.

A webhook is the hot path of ingest. On PostgreSQL every round trip costs CPU on both sides
of a two-core machine, so an order webhook makes two: one read (the store's secret, consent
policy, destinations and the order's click records) and one INSERT of every destination's
row, on a connection in autocommit, where that INSERT is its own transaction (durable when it
returns: no BEGIN, no COMMIT). The store it is verified with comes from memory
(:func:`find_store`), and that copy is checked in the same read: when the store's secret,
platform or domain changed, nothing is written and the webhook is verified again against the
row (:class:`StaleStore`). A remembered copy decides nothing else: a 401, an ignored topic, a
kept body or a privacy request is answered only after the store is read again, so a rotated
secret is never used once the rotation is stored (docs/ARCHITECTURE.md, "Ingest").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from flask import Response, g, jsonify
from sqlalchemy import Connection, Engine, bindparam, event, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from connector.events import Checkout, Order, UnreadablePayload
from connector.models import Store
from connector.pipeline import StoreChanged, record_events
from connector.stores import webhook_secrets
from connector.unreadable import KeptWebhook, keep_unreadable, reason_of
from connector.web import services

logger = logging.getLogger("connector.webhooks")

STORES = Store.__table__
_STORE_COLUMNS = (
    STORES.c.id,
    STORES.c.platform,
    STORES.c.webhook_secret_encrypted,
    STORES.c.domain,
)
STORE_BY_DOMAIN = select(*_STORE_COLUMNS).where(
    STORES.c.platform == bindparam("platform"), STORES.c.domain == bindparam("domain")
)
STORE_BY_ID = select(*_STORE_COLUMNS).where(STORES.c.id == bindparam("store_id"))


STORE_MEMORY_LIMIT = 10_000
"""Stores a web process remembers (a few hundred bytes each); past that it starts afresh."""


@dataclass(frozen=True)
class WebhookStore:
    """What a webhook needs of its store: the id and the secret it is signed with.

    ``remembered`` is True for a copy from memory rather than from the database in this
    request: good for verifying a signature that then records events (which checks the copy
    against the row), for nothing else (:func:`confirmed`).
    """

    id: str
    platform: str
    webhook_secret_encrypted: str | None
    domain: str = ""
    remembered: bool = field(default=False, compare=False)

    @property
    def identity(self) -> tuple[str, str, str | None]:
        """What recording checks against the row (``record_events(verified_with=...)``)."""
        return (self.platform, self.domain, self.webhook_secret_encrypted)


class StaleStore(Exception):
    """A remembered copy of the store is not enough for what the webhook needs next, or no
    longer matches the row: the platform's endpoint starts over with the store read afresh."""


def confirmed(store: WebhookStore) -> None:
    """Go on only with a store read from the database in this request.

    Raises:
        StaleStore: ``store`` is a remembered copy.
    """
    if store.remembered:
        raise StaleStore(store.id)


def find_store(
    connection: Connection,
    platform: str,
    *,
    domain: str | None = None,
    store_id: str | None = None,
    fresh: bool = False,
) -> WebhookStore | None:
    """The store by its platform and domain (Shopify) or by id (WooCommerce), from memory
    unless ``fresh``; a store read from the database is remembered for the next webhook.

    No store is remembered as missing: a store added a moment ago gets its webhooks.
    """
    memory = services().webhook_stores
    key = (platform, domain) if domain is not None else ("", store_id or "")
    if not fresh:
        remembered = memory.get(key)
        if remembered is not None:
            return remembered
    if domain is not None:
        store = store_by_domain(connection, platform, domain)
    else:
        store = store_by_id(connection, store_id or "")
    if store is None:
        memory.pop(key, None)
        return None
    if len(memory) >= STORE_MEMORY_LIMIT:
        memory.clear()
    memory[key] = replace(store, remembered=True)
    return store


Handler = Callable[[Connection, bool], tuple[Response, int]]
"""A platform's webhook handling on a connection; the flag asks for the store read afresh."""


def answer_webhook(handle: Handler) -> tuple[Response, int]:
    """Run a platform's handling on the webhook connection, with a remembered store first and
    again with the store read afresh when it raises :class:`StaleStore`.

    When the connection turns out to be dead (the database restarted, a proxy cut it) the
    webhook is handled once more on a new one; a second failure is the usual 503. Handling a
    webhook twice is safe: its rows insert at most once (the outbox's unique key).
    """
    for attempt in (1, 2):
        try:
            with webhook_connection() as connection:
                g.webhook_retry_allowed = attempt == 1
                try:
                    return handle(connection, False)
                except StaleStore:
                    return handle(connection, True)
        except DBAPIError as error:
            if attempt == 2 or not error.connection_invalidated:
                raise
            logger.warning("webhook.reconnect error=%s", type(error.orig).__name__)
    raise AssertionError("unreachable")


_HELD: dict[tuple[int, int, int], tuple[Engine, Connection]] = {}
"""Each thread's webhook connection, per process and engine; see :func:`webhook_connection`."""
_HELD_LOCK = threading.Lock()


@contextmanager
def webhook_connection() -> Iterator[Connection]:
    """The webhook's one connection, in autocommit, kept by the thread from one webhook to the
    next.

    Autocommit: each statement is its own transaction, so recording is one INSERT round trip
    with no BEGIN or COMMIT around it. Every write a webhook makes is a single statement (the
    INSERT of all its rows; a kept body's row), so nothing is ever half-written. Kept: a pool
    checkout costs a ``SELECT 1`` round trip (``pool_pre_ping``) and a reset per webhook; a
    kept connection found dead fails its first statement instead, and :func:`answer_webhook`
    handles the webhook again on a new one. Kept, it also runs the read and the INSERT as
    prepared statements: psycopg prepares a query once it ran more than ``prepare_threshold``
    (5) times on a connection (https://www.psycopg.org/psycopg3/docs/advanced/prepare.html).
    A connection that saw any error is given back.
    The engine's ``dispose()`` (tests, ``connector`` commands, forks) closes every kept one.
    """
    engine = services().db.engine
    key = (os.getpid(), threading.get_ident(), id(engine))
    held = _HELD.get(key)
    if held is None or held[0] is not engine or held[1].closed or held[1].invalidated:
        _close_held_by_ended_threads()
        connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        with _HELD_LOCK:
            if not event.contains(engine, "engine_disposed", _close_held):
                event.listen(engine, "engine_disposed", _close_held)
            _HELD[key] = (engine, connection)
    else:
        connection = held[1]
    try:
        yield connection
    except BaseException:
        with _HELD_LOCK:
            _HELD.pop(key, None)
        connection.close()
        raise


def _close_held_by_ended_threads() -> None:
    """Give back the connections of threads that have ended (a server that starts a thread
    per request, such as ``flask run``'s), so they never pile up out of the pool."""
    alive = {thread.ident for thread in threading.enumerate()}
    pid = os.getpid()
    with _HELD_LOCK:
        ended = [key for key in _HELD if key[0] == pid and key[1] not in alive]
        connections = [_HELD.pop(key)[1] for key in ended]
    for connection in connections:
        connection.close()


def _close_held(engine: Engine) -> None:
    """Close the connections webhooks keep on ``engine`` (it is being disposed)."""
    with _HELD_LOCK:
        mine = [key for key, (held, _) in _HELD.items() if held is engine]
        connections = [_HELD.pop(key)[1] for key in mine]
    for connection in connections:
        connection.close()


def store_by_domain(connection: Connection, platform: str, domain: str) -> WebhookStore | None:
    """The store of that platform and domain (Shopify names the shop in a header)."""
    row = connection.execute(STORE_BY_DOMAIN, {"platform": platform, "domain": domain}).first()
    return WebhookStore(*row) if row else None


def store_by_id(connection: Connection, store_id: str) -> WebhookStore | None:
    """The store with that id (WooCommerce webhook URLs carry it)."""
    row = connection.execute(STORE_BY_ID, {"store_id": store_id}).first()
    return WebhookStore(*row) if row else None


def refuse(status: int, message: str, *, platform: str, reason: str) -> tuple[Response, int]:
    """An error answer, logged as ``webhook.refused`` with a stable reason key."""
    logger.warning("webhook.refused platform=%s status=%d reason=%s", platform, status, reason)
    g.webhook_result = reason
    return jsonify(error=message), status


def ignore(topic: str, why: str, *, platform: str) -> tuple[Response, int]:
    """A 200 for a valid webhook we deliberately do nothing with (so it is not retried)."""
    logger.info("webhook.ignored platform=%s topic=%s reason=%s", platform, topic, why)
    g.webhook_result, g.webhook_topic = "ignored", topic
    return jsonify(status="ignored", topic=topic, reason=why), 200


class SecretUnavailable(Exception):
    """The store's webhook secret does not decrypt with the configured keys (``SECRET_KEY``
    changed without the old one in ``SECRET_KEY_FALLBACKS``): an operator's fault, answered
    503 so the platform retries once the key is back, never a 401 that would lose the order."""


def store_secrets(store: WebhookStore, *app_secrets: str | None) -> list[str]:
    """The secrets the store's webhooks may be signed with (its own first, then the app's).

    Raises:
        SecretUnavailable: its own secret is stored but cannot be decrypted.
    """
    try:
        return webhook_secrets(services(), store.webhook_secret_encrypted, *app_secrets)
    except ValueError:
        logger.error(
            "webhook.secret-undecryptable platform=%s store=%s: the store's webhook secret does"
            " not decrypt with SECRET_KEY/TOKEN_ENCRYPTION_KEY; put the previous key in"
            " SECRET_KEY_FALLBACKS",
            store.platform,
            store.id,
        )
        raise SecretUnavailable from None


def secret_unavailable(platform: str) -> tuple[Response, int]:
    """503 for :class:`SecretUnavailable`: nothing is lost, the platform sends it again."""
    g.webhook_result = "secret-undecryptable"
    return jsonify(
        error="the connector cannot read this store's webhook secret right now; please retry"
    ), 503


def signature_matches(secrets: list[str], body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the base64 HMAC-SHA256 of the raw body under any secret.

    Shopify (``X-Shopify-Hmac-Sha256``) and WooCommerce (``X-WC-Webhook-Signature``) both sign
    this way. Compared in constant time; several secrets allow a rotation without downtime.
    """
    if not signature:
        return False
    given = signature.strip().encode()
    for secret in secrets:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        if hmac.compare_digest(base64.b64encode(digest), given):
            return True
    return False


class MalformedBody(ValueError):
    """The body is not JSON at all: a sender's defect, answered 400 (docs/ARCHITECTURE.md,
    routes)."""


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object.

    Python's json keeps integers exact, so 64-bit ids never pass through a float.

    Raises:
        MalformedBody: not JSON (or not UTF-8): answered 400.
        UnreadablePayload: JSON, but not an object or nested beyond what the parser can
            follow. Signed by the store, so it is kept, not refused.
    """
    try:
        data = json.loads(body)
    except RecursionError:
        raise UnreadablePayload("the JSON body is nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise UnreadablePayload(f"the JSON body is {_json_kind(data)}, not an object")
    return data


def _json_kind(data: object) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(data), "a number"
    )


def read_and_record(
    connection: Connection,
    store: WebhookStore,
    topic: str,
    body: bytes,
    read: Callable[[dict[str, Any]], Order | Checkout | None],
    *,
    ignored_because: str,
) -> tuple[Response, int]:
    """The answer to a verified webhook: its events recorded, or its body kept unreadable.

    ``read`` returns None for a webhook that means nothing to send, answered "ignored" with
    ``ignored_because``.

    Once the signature holds nothing about the content is refused (a refusal loses the order:
    Shopify retries the same body in vain, WooCommerce never retries). Whatever cannot be
    parsed, read or mapped, including defects of ours, is kept for ``events reprocess``;
    only malformed JSON gets 400 and only a storage failure 503.

    A store remembered from an earlier webhook records events (the INSERT's read checks it)
    and decides nothing else: :class:`StaleStore` asks the caller to start over with the row.
    """
    try:
        payload = parse_json_object(body)
    except MalformedBody as exc:
        confirmed(store)
        return refuse(400, str(exc), platform=store.platform, reason="bad-json")
    except UnreadablePayload as exc:
        return keep(connection, store, topic, body, exc)
    try:
        source = read(payload)
        if source is None:
            confirmed(store)
            return ignore(topic, ignored_because, platform=store.platform)
        return accept(connection, store, topic, source)
    except (StaleStore, SQLAlchemyError):  # start over; or a dead connection (answer_webhook)
        raise
    except Exception as exc:  # a body we cannot map is kept, whatever the reason
        return keep(connection, store, topic, body, exc)


def keep(
    connection: Connection, store: WebhookStore, topic: str, body: bytes, exc: Exception
) -> tuple[Response, int]:
    """Keep a verified body we could not read (200), or 503 when even that cannot be stored."""
    confirmed(store)
    kept = KeptWebhook(
        store_id=store.id,
        platform=store.platform,
        topic=topic,
        reason=reason_of(exc),
        resource_id=getattr(exc, "resource_id", None),
    )
    try:
        keep_unreadable(services(), connection, kept, body)
    except SQLAlchemyError as error:
        _reconnect_if_allowed(error)
        return _not_stored(store.platform, error)
    g.webhook_result, g.webhook_topic = "unreadable", topic
    return jsonify(status="kept", topic=topic, reason=kept.reason), 200


def _reconnect_if_allowed(error: SQLAlchemyError) -> None:
    """Let :func:`answer_webhook` try again on a new connection when this one was dead."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        if g.get("webhook_retry_allowed"):
            raise error


def _not_stored(platform: str, error: SQLAlchemyError) -> tuple[Response, int]:
    """503: the platform sends the webhook again later (Shopify for 4 hours)."""
    logger.error("webhook.store-failed platform=%s error=%s", platform, type(error).__name__)
    return jsonify(error="the event could not be stored; please retry"), 503


def accept(
    connection: Connection, store: WebhookStore, topic: str, source: Order | Checkout
) -> tuple[Response, int]:
    """Store the events of a verified, parsed webhook and answer 200, or 503 if we cannot.

    ``connection`` is the one the webhook found its store with; the events are committed on it.
    A remembered store is checked against the row by the same read that finds the
    destinations; when it changed, nothing is written (:class:`StaleStore`).
    """
    platform = store.platform
    g.webhook_topic = topic
    try:
        result = record_events(
            services(),
            store.id,
            topic,
            source,
            connection=connection,
            verified_with=store.identity if store.remembered else None,
        )
    except StoreChanged:
        raise StaleStore(store.id) from None
    except SQLAlchemyError as exc:
        _reconnect_if_allowed(exc)
        return _not_stored(platform, exc)
    logger.info(
        "webhook.accepted platform=%s topic=%s inserted=%d duplicates=%d skipped=%d",
        platform,
        topic,
        result.inserted,
        result.duplicates,
        result.skipped,
    )
    g.webhook_result = "accepted" if result.inserted or result.skipped else "duplicate"
    return (
        jsonify(
            status="accepted",
            events=result.inserted,
            duplicates=result.duplicates,
            skipped=result.skipped,
        ),
        200,
    )
