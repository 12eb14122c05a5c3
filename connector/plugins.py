"""How store platforms plug in: each package under the top-level ``platforms/`` exposes
``PLATFORM``, a :class:`StorePlatform`. The core never imports a platform by name; the app
factory and the command line load them all here, so a new store platform is one new folder.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
from flask import Blueprint

from connector.events import Checkout, Order
from connector.models import Store
from connector.services import Services

logger = logging.getLogger(__name__)

PLATFORMS_PACKAGE = "platforms"


@dataclass(frozen=True)
class PeriodicTask:
    """Work a worker does every so often (one worker per period, whatever their number)."""

    name: str
    every_seconds: float
    run: Callable[[Services], object]


def in_own_thread(name: str, run: Callable[[Services], object]) -> Callable[[Services], None]:
    """``run`` as a periodic task's body that starts a thread and returns at once.

    The worker runs its periodic tasks one after another in one thread, so a task that waits
    on other hosts (a store's API, with its timeouts) would hold up the sweep that re-queues
    due events. A round still running when the next one is due makes that one skip.
    """
    running = threading.Lock()

    def round_(services: Services) -> None:
        try:
            run(services)
        except Exception:  # the thread must not die silently; the next round tries again
            logger.exception("periodic.failed task=%s", name)
        finally:
            running.release()

    def start(services: Services) -> None:
        if running.acquire(blocking=False):
            threading.Thread(target=round_, args=(services,), name=name, daemon=True).start()

    return start


@dataclass(frozen=True)
class EmbeddedHead:
    """What a store platform's admin needs in the ``<head>`` of the pages it frames (Shopify:
    App Bridge), and the script origins the pages' Content-Security-Policy must then allow."""

    html: str
    script_sources: tuple[str, ...] = ()


WebhookReader = Callable[[str, dict[str, Any]], "Order | Checkout | None"]
"""(topic, verified JSON body) -> the order or checkout it means, or None when it means
nothing to send (a topic or an order status we ignore). Raises
:class:`~connector.events.UnreadablePayload` (or any error, which counts the same) when the
body cannot be read: the webhook then keeps it and ``events reprocess`` calls this again."""


@dataclass(frozen=True)
class FetchedOrder:
    """An order read back from the store's API by reconciliation, as its webhook would have
    brought it: the topic that webhook would have had, the parsed order, and the store's
    last-change time of the order, which moves the reconciliation checkpoint.

    ``order`` is None for an order that means nothing to send (not paid yet: its webhook
    would have been ignored too) or that cannot be read; ``unreadable`` then says why,
    naming the field and the order id, never a value. Yielding those as well lets the
    checkpoint move past them and the run count them. ``body`` is then what was handed to
    the platform's ``read_webhook`` (the webhook's shape), which reconciliation keeps like an
    unreadable webhook, so ``events reprocess`` recovers it once the code is fixed.
    """

    topic: str
    order: Order | None
    updated_at: datetime
    unreadable: str | None = None
    body: dict[str, Any] | None = None


class FetchError(Exception):
    """The store's API cannot be read (revoked token or keys, no API access, unreachable);
    the message says what the merchant or operator must do."""


class NoApiAccess(FetchError):
    """The store was connected without API access (added by hand, without keys or token),
    so there is nothing to read orders with; the message says how to give access. Raised
    before any request; reconciliation shows it on the Status page without logging it as a
    failure every period."""


OrderFetcher = Callable[[Services, Store, datetime], Iterator[FetchedOrder]]
"""(services, store, since) -> every order created or updated after ``since`` (naive UTC),
paged from the store's API, in any order (the checkpoint moves only once the whole read is
done); raises :class:`FetchError` (:class:`NoApiAccess` for a store without API access)."""


@dataclass(frozen=True)
class StorePlatform:
    """A store platform: webhook routes, ``connector stores ...`` commands, periodic work, and
    what its merchants must do in their store that the Settings page shows (``settings_panel``
    returns HTML for one store, e.g. Shopify's custom pixel to paste), and for an admin that
    frames the pages, what they must load (``embedded_head``). The Diagnostics page speaks the
    platform's language through ``signal_advice`` and ``click_source_labels``; whatever they
    leave out gets the core's generic words (:mod:`connector.diagnostics`).

    The two mappings are left out of the hash: a dict cannot be hashed, and ``name`` already
    tells platforms apart."""

    name: str
    blueprint: Blueprint
    commands: tuple[click.Command, ...] = ()
    periodic: tuple[PeriodicTask, ...] = ()
    settings_panel: Callable[[Services, str], str] | None = None
    status_notices: Callable[[Services, str], list[str]] | None = None
    """(services, store id) -> sentences the Status page shows as warnings, from what is on
    file (the Status page must not wait on the store): things the merchant or operator must
    know about the store's connection."""
    embedded_head: Callable[[Services], EmbeddedHead] | None = None
    signal_advice: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Signal name (:data:`connector.signals.SIGNALS`) -> what a merchant of this platform
    does in their store to raise that signal's coverage."""
    click_source_labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    """``Event.click_source`` value this platform's parser writes -> where the click id came
    from, in words a shop owner understands."""
    capture_sources: frozenset[str] = frozenset()
    """The ``click_source`` values only storefront click capture of this platform fills (an
    order attribute, an order meta field), as opposed to best-effort ones (a landing page)."""
    read_webhook: WebhookReader | None = None
    """How a verified webhook body becomes an order or checkout; ``events reprocess`` reads
    kept unreadable bodies again through it."""
    fetch_orders: OrderFetcher | None = None
    """Reads recent orders from the store's API, for reconciliation; None when the platform
    has no such API."""
    storefront_install: str | None = None
    """How a merchant of this platform installs the connector's storefront code (what sends
    click ids and pixel receipts), for the recovered-conversions ledger to say when no receipt
    came (:mod:`connector.recovered`); ``{store_id}`` is replaced by the store's id."""


def load_store_platforms() -> list[StorePlatform]:
    """Every platform package, in name order."""
    package = importlib.import_module(PLATFORMS_PACKAGE)
    found = []
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        platform = getattr(
            importlib.import_module(f"{PLATFORMS_PACKAGE}.{module.name}"), "PLATFORM", None
        )
        if platform is not None:
            found.append(platform)
    return found
