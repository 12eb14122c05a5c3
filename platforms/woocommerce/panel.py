"""The WooCommerce part of the Settings page: the health of the store's order webhooks, read
back live from the store, with a Repair button; or, for a store added by hand, how to create
the webhooks; and the click-capture plugin to download.

The page must stay fast and must never break, whatever the merchant's WordPress host does, so
the live read runs under a deadline (:data:`LIVE_READ_SECONDS`), far shorter than the REST
client's own timeouts (10 s to connect, 20 s to read, per page of webhooks): past it the page
says the store did not answer, and the read finishes unseen in the background. Every failure
becomes a sentence saying what happened and what to do.

The webhook secret of a store added by hand is never part of this panel: it shows only after
the merchant presses *Show secret* (see :mod:`platforms.woocommerce.settings` for why).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import render_template, request

from connector.models import Store
from connector.services import Services
from connector.stores import StoreError
from platforms.woocommerce.build_plugin import plugin_version
from platforms.woocommerce.connect import (
    CHECK_EVERY_SECONDS,
    PLATFORM,
    WEBHOOK_TOPICS,
    TopicState,
    app_url_disagreements,
    assess_webhooks,
    delivery_url,
    load_keys,
    webhook_name,
)
from platforms.woocommerce.rest import RestError

logger = logging.getLogger(__name__)

T = TypeVar("T")

LIVE_READ_SECONDS = 4.0
"""How long the Settings page waits for the store's webhook list: a healthy WordPress host
answers in well under a second, a slow shared one in two or three."""

REPAIR_PARAM = "woocommerce_repair"
"""The Settings page's query parameter carrying a repair's outcome (a key of
:data:`REPAIR_OUTCOMES`), so the repair can redirect and a reload does not repair again."""

STATUS_WORDS = {
    "active": "active",
    "paused": "paused in WooCommerce: it delivers nothing",
    "disabled": "disabled by WooCommerce after repeated failed deliveries: it delivers nothing",
}
"""WooCommerce's webhook statuses (REST API v3 docs, webhooks: "active (delivers payload),
paused (delivery paused by admin), disabled (delivery paused by failure)")."""

WHAT_TO_DO = {
    "unreachable": (
        "Check that your site is online (open it in a browser). If it is, your host or a "
        "security plugin may be blocking the connector's requests to /wp-json/: allow them."
    ),
    "redirect": (
        "Your site sends its REST API to another address (http to https, or to www). The store "
        "must be connected again at its final address: ask whoever set up the connector."
    ),
    "address-refused": (
        "The connector only calls stores at a public https:// address, and your store's "
        "address leads to a private or local network (or is plain http). Check the store's "
        "address and its DNS; ask whoever set up the connector to connect the store again at "
        "its public https:// address."
    ),
    "not-woocommerce": (
        "Check that WooCommerce is installed and active, and that no plugin turns off the "
        "WordPress REST API."
    ),
    "keys-refused": (
        "The REST API key was deleted, changed, or lacks write permission. In WordPress open "
        "WooCommerce > Settings > Advanced > REST API: the connector's key must have "
        "Read/Write permissions. If it is gone, make a new Read/Write key and ask whoever set "
        "up the connector to connect the store with it."
    ),
    "refused": (
        "WooCommerce refused the change. Open WooCommerce > Settings > Advanced > Webhooks and "
        "check that no plugin locks webhooks; the connector's log has WooCommerce's answer "
        "(woocommerce.webhook.repair-failed)."
    ),
    "server-error": (
        "Your site is failing (a PHP error, or its host is down). Try again later; if it "
        "lasts, ask your host."
    ),
    "too-many-webhooks": (
        "Your store has thousands of webhooks: delete the ones nobody uses in WooCommerce > "
        "Settings > Advanced > Webhooks."
    ),
    "timeout": (
        "This page waits no longer, so that it stays fast: reload it to try again. Your "
        "webhooks may well be fine."
    ),
    "keys-unusable": (
        "The connector cannot read the keys it saved for this store (its SECRET_KEY or "
        "TOKEN_ENCRYPTION_KEY changed). Ask whoever set up the connector to connect the store "
        "again with a Read/Write REST API key."
    ),
    "failed": "Try again in a few minutes; if it lasts, the connector's log says why.",
}
"""What a merchant can do about each :class:`RestError` ``reason``, and about our own
deadline (``timeout``), unusable saved keys and anything unforeseen (``failed``)."""

REPAIR_OUTCOMES = {
    "repaired": ("ok", "Repaired: your order webhooks are active and deliver to the connector."),
    "healthy": ("ok", "Nothing needed repair: your order webhooks were already working."),
    "incomplete": (
        "bad",
        "The repair left a problem that WooCommerce did not let the connector fix (see below). "
        + WHAT_TO_DO["refused"],
    ),
    "running": (
        "warn",
        "The repair is still waiting for your store to answer; it goes on without this page. "
        "Reload in a minute to see the result.",
    ),
    "address-unknown": (
        "bad",
        "The connector changed nothing: it has no record of the address your webhooks must "
        "deliver to, and they do not agree on one. Ask whoever set up the connector to connect "
        "the store again (connector stores connect-woocommerce).",
    ),
    **{
        reason: ("bad", f"The repair did not finish. {advice}")
        for reason, advice in WHAT_TO_DO.items()
        if reason != "timeout"
    },
}
"""Repair outcome -> (notice style, sentence). The keys are all that travels in the URL, so no
link can make the page say anything else."""

PROBLEM_WORDS = {
    "missing": "missing: no webhook sends this topic to the connector",
    "disabled": "disabled by WooCommerce",
    "paused": "paused",
    "points_elsewhere": "delivers to another address",
    "wrong_topic": "set to another topic",
}
"""The problems :func:`platforms.woocommerce.connect.assess_webhooks` finds, in words."""


class TookTooLong(Exception):
    """The work given to :func:`finish_within` was still running at the deadline."""


@dataclass(frozen=True)
class WebhookRow:
    """One topic the connector needs, as the panel's table shows it."""

    topic: str
    webhook_id: int | None
    name: str | None
    status: str
    status_words: str
    delivers_here: bool
    delivery_url: str | None
    problems: tuple[str, ...]

    @classmethod
    def of(cls, state: TopicState, url: str) -> WebhookRow:
        webhook = state.webhook or {}
        status = str(webhook.get("status") or "missing")
        target = webhook.get("delivery_url")
        return cls(
            topic=state.topic,
            webhook_id=webhook.get("id"),
            name=webhook.get("name"),
            status=status,
            status_words=STATUS_WORDS.get(status, status),
            delivers_here=target == url,
            delivery_url=target if isinstance(target, str) else None,
            problems=tuple(PROBLEM_WORDS.get(p, p) for p in state.problems),
        )


@dataclass(frozen=True)
class Unreadable:
    """Why the webhooks could not be read, and what to do about it."""

    what_happened: str
    what_to_do: str


def finish_within(seconds: float, work: Callable[[], T], *, name: str) -> T:
    """``work()``'s result (or its exception), waiting at most ``seconds``.

    The work runs in a daemon thread: past the deadline it goes on, bounded by its own
    timeouts, and :class:`TookTooLong` is raised, so a web request never waits for a slow
    store longer than it can afford.
    """
    answers: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            answers.put((True, work()))
        except Exception as exc:  # handed to the waiting request, which decides
            answers.put((False, exc))

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        succeeded, value = answers.get(timeout=seconds)
    except queue.Empty:
        raise TookTooLong(name) from None
    if not succeeded:
        raise value
    return value


def read_webhooks(services: Services, store: Store) -> tuple[list[WebhookRow], str]:
    """Our webhooks' states, read from the store now, and the store's address.

    Raises StoreError (keys unusable), RestError, or TookTooLong past :data:`LIVE_READ_SECONDS`.
    """
    keys = load_keys(services, store)
    webhooks = finish_within(
        LIVE_READ_SECONDS, keys.client().list_webhooks, name="woocommerce-panel-read"
    )
    url = store.webhook_url or delivery_url(services, store.id)
    states = assess_webhooks(webhooks, store_id=store.id, url=url)
    return [WebhookRow.of(state, url) for state in states], keys.url


def settings_panel(services: Services, store_id: str) -> str:
    """The panel's HTML for one WooCommerce store (empty for any other store)."""
    with services.db.session() as session:
        store = session.get(Store, store_id)
    if store is None or store.platform != PLATFORM:
        return ""
    rows, store_url, unreadable = None, None, None
    connected = bool(store.access_token_encrypted)
    if connected:
        rows, store_url, unreadable = _live_state(services, store)
    return render_template(
        "woocommerce/settings_panel.html",
        store_id=store_id,
        connected=connected,
        rows=rows,
        store_url=store_url,
        healthy=bool(rows) and not any(row.problems for row in rows),
        unreadable=unreadable,
        repair_outcome=REPAIR_OUTCOMES.get(request.args.get(REPAIR_PARAM, "")),
        check_minutes=CHECK_EVERY_SECONDS // 60,
        **manual_setup(services, store_id),
        plugin_version=plugin_version(),
        collect_url=f"{services.settings.app_url}/collect",
    )


def status_notices(services: Services, store_id: str) -> list[str]:
    """What the Status page must say about where a connected store's webhooks deliver, from
    what is on file (the Status page never waits on the store)."""
    with services.db.session() as session:
        store = session.get(Store, store_id)
    if store is None or store.platform != PLATFORM or not store.access_token_encrypted:
        return []
    if store.webhook_url is None:
        return [
            "The connector has no record yet of the address your WooCommerce webhooks deliver "
            "to, and repairs nothing until it has. Its next check (every "
            f"{CHECK_EVERY_SECONDS // 60} minutes) records it if your webhooks agree on one; "
            "if this message stays, ask whoever set up the connector to run "
            f"`connector stores check {store_id}` and do what it says."
        ]
    return [
        f"A connector process is set up with another address: it would have your webhooks "
        f"deliver to {other}, but they were set up to deliver to {store.webhook_url}. They keep "
        f"delivering to {store.webhook_url}: nothing was changed. If the connector has moved, "
        "whoever set it up should connect the store again (connector stores "
        "connect-woocommerce) with the new APP_URL; otherwise correct APP_URL."
        for other in app_url_disagreements(services, store)
    ]


def manual_setup(services: Services, store_id: str) -> dict[str, Any]:
    """What the steps for creating the webhooks by hand need: where they deliver, and the
    name for each topic (the store id in it lets ``connect-woocommerce`` adopt them later)."""
    return {
        "delivery_url": delivery_url(services, store_id),
        "webhook_names": {topic: webhook_name(topic, store_id) for topic in WEBHOOK_TOPICS},
    }


def _live_state(
    services: Services, store: Store
) -> tuple[list[WebhookRow] | None, str | None, Unreadable | None]:
    try:
        rows, store_url = read_webhooks(services, store)
    except RestError as exc:
        advice = WHAT_TO_DO.get(exc.reason, WHAT_TO_DO["failed"])
        return None, None, Unreadable(_sentence(exc), advice)
    except StoreError as exc:
        return None, None, Unreadable(_sentence(exc), WHAT_TO_DO["keys-unusable"])
    except TookTooLong:
        return (
            None,
            None,
            Unreadable(
                f"Your store did not answer within {LIVE_READ_SECONDS:.0f} seconds.",
                WHAT_TO_DO["timeout"],
            ),
        )
    except Exception:  # the panel is an aid: it must never take the Settings page down
        logger.exception("woocommerce.panel.read-failed store=%s", store.id)
        return (
            None,
            None,
            Unreadable("The connector could not read your webhooks.", WHAT_TO_DO["failed"]),
        )
    return rows, store_url, None


def _sentence(exc: Exception) -> str:
    text = str(exc).rstrip(".")
    return text[:1].upper() + text[1:] + "."
