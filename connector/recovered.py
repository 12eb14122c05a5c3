"""The recovered-conversions ledger: which purchases reached the ad platform only because the
server sent them.

**How it is measured.** Every purchase the connector records becomes one outbox row per
destination, with the order id as its ``event_id`` (connector.mapping: the same id the browser
pixel sends, so the platform merges the two). Where the storefront code of the connector runs
next to the ad platform's pixel on the thank-you page (the Shopify Web Pixel or custom pixel,
the WordPress plugin), it reports through ``POST /collect`` what that pixel did for the order:
a *pixel receipt* (:class:`connector.models.PixelReceipt`), "reported" when the pixel script
loaded and its purchase call was made, "blocked" when the script did not load (an ad blocker,
a network error, or not within a few seconds). The ledger joins each purchase row of the
destination to its receipt by (store, pixel = destination kind, event_id):

- *delivered and blocked*: only the server reached the platform. These are the **recovered**
  purchases.
- *delivered and reported*: both did; the platform counts the order once.
- *delivered, no receipt*: the browser's part is unknown. The shopper closed the page before
  the receipt went, or something blocked the connector's own beacon, or the storefront code is
  not installed: nothing the connector receives tells these apart.

So the recovered share is a floor, not an estimate: the purchases without a receipt may hide
more blocked pixels. The true share lies between ``recovered / delivered`` and
``(recovered + unreceipted) / delivered`` (:attr:`Ledger.share_bounds`). When no receipt at
all came in the period, the storefront code is not installed (or not running): the ledger says
so (:attr:`Ledger.code_installed`) rather than report 0% recovered, or call every purchase
recovered.

**Where the numbers come from.** One GROUP BY over the store's purchase rows of the window
(``ix_events_store_received``) outer-joined to ``pixel_receipts`` by its unique key, summing the
rows' ``value`` and ``currency`` columns (written with the row; :data:`VALUE` reads the JSON
payload only for rows recorded before those columns existed), so a store with 100,000
purchases a month costs one index range scan and no payload decoding. Measured on 2 busy cores
with 100,000 purchases in the window (and as many of another store), reading the two out of
each JSON payload took 1.5 to 2.2 s on PostgreSQL (2.1 to 2.8 s on SQLite), three quarters of
it the JSON; the same GROUP BY without it took 0.5 s. The Settings
page's test purchase (:data:`TEST_EVENT_TOPIC`) is left out. Days are UTC days of
``received_at``, like the Diagnostics page's window. Events older than
``EVENT_RETENTION_DAYS`` are deleted (connector.retention), so a window longer than that
counts only what is kept.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import ColumnElement, and_, false, func, or_, select

from connector.destinations import Destination
from connector.models import EventStatus, OutboxEvent, PixelReceipt, Store, utcnow
from connector.services import Services

if TYPE_CHECKING:
    from connector.plugins import StorePlatform

DEFAULT_DAYS = 30
DEFAULT_PIXEL = "tiktok"
"""The destination whose browser pixel the storefront code reports on today (TikTok's)."""

RECEIPT_PIXELS: tuple[str, ...] = (DEFAULT_PIXEL,)
"""Destinations whose purchases carry a browser outcome in the Delivery log: those whose
pixel the connector's storefront code reports receipts for."""

REPORTED = "reported"
BLOCKED = "blocked"
NO_RECEIPT = "no receipt"

VALUE = func.coalesce(OutboxEvent.value, OutboxEvent.payload["value"].as_float())
CURRENCY = func.coalesce(OutboxEvent.currency, OutboxEvent.payload["currency"].as_string())
"""A purchase's value and currency: the row's columns, else (a row recorded before they
existed) its JSON payload's. COALESCE evaluates its second argument only when the first is
NULL, on PostgreSQL and SQLite alike, so current rows cost no JSON reading."""
BROWSER_OUTCOMES = (REPORTED, BLOCKED, NO_RECEIPT)
"""What the browser did for a purchase, as the ledger, the CSV and the Delivery log say it."""

OUTCOME_WORDS = {
    REPORTED: "the browser pixel reported it too",
    BLOCKED: "the browser pixel was blocked or failed to load",
    NO_RECEIPT: (
        "no receipt from the browser (page closed early, the connector's beacon blocked, or "
        "no storefront code installed: these cannot be told apart)"
    ),
}

TEST_EVENT_TOPIC = "connector/test-event"
"""The topic :func:`connector.testevent.send_test_event` records its test purchase under: no
shopper bought it, so the ledger leaves it out."""

UNKNOWN = "unknown"
"""Browser family or device of an event recorded without a user agent (or before they were
kept)."""

CSV_COLUMNS = (
    "order_id",
    "time",
    "value",
    "currency",
    "server_status",
    "browser_outcome",
    "browser",
    "device",
)

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
"""Currencies written with their symbol; any other is written with its ISO code after the
amount ("1,200 SEK"), which no reader mistakes."""


@dataclass(frozen=True)
class Tally:
    """A number of purchases and their value, summed per currency."""

    count: int = 0
    value: Mapping[str, float] = field(default_factory=dict)

    def __add__(self, other: Tally) -> Tally:
        value = defaultdict(float, self.value)
        for currency, amount in other.value.items():
            value[currency] += amount
        return Tally(self.count + other.count, dict(value))


@dataclass(frozen=True)
class Row:
    """One line of a breakdown: purchases delivered by the server, by browser outcome."""

    key: str
    delivered: int = 0
    reported: int = 0
    blocked: int = 0
    unreceipted: int = 0
    recovered_value: Mapping[str, float] = field(default_factory=dict)

    @property
    def share(self) -> float:
        """The share of this line's delivered purchases only the server delivered."""
        return self.blocked / self.delivered if self.delivered else 0.0


@dataclass(frozen=True)
class Cause:
    """Purchases with one server status and one browser outcome: the ledger by cause."""

    status: str
    outcome: str
    tally: Tally
    words: str


@dataclass(frozen=True)
class Ledger:
    """The recovered-conversions ledger of one store, destination and window."""

    store_id: str
    pixel: str
    label: str  # the destination's name for people ("TikTok")
    days: int
    since: datetime
    purchases: int  # every purchase row of the window, whatever its status
    delivered: Tally
    reported: Tally  # delivered, and the browser reported it too
    recovered: Tally  # delivered, and the browser's pixel was blocked
    unreceipted: Tally  # delivered, no receipt
    not_delivered: Mapping[str, int]  # status -> purchases (pending, failed, dead, skipped)
    by_day: tuple[Row, ...]
    by_browser: tuple[Row, ...]
    by_device: tuple[Row, ...]
    by_cause: tuple[Cause, ...]
    first_receipt_at: datetime | None  # the earliest receipt for this pixel, ever
    last_receipt_at: datetime | None  # the latest one
    install_hint: str | None = None  # how this store's platform installs the storefront code

    @property
    def code_installed(self) -> bool:
        """Whether the storefront code sent any receipt in the window."""
        return self.last_receipt_at is not None and self.last_receipt_at >= self.since

    @property
    def installed_since(self) -> datetime | None:
        """When the first receipt came, if that was inside the window: purchases before it
        have no receipt because the storefront code was not there yet."""
        if self.first_receipt_at is not None and self.first_receipt_at > self.since:
            return self.first_receipt_at
        return None

    @property
    def share(self) -> float:
        """Recovered purchases over delivered ones: the floor of the true share."""
        return self.recovered.count / self.delivered.count if self.delivered.count else 0.0

    @property
    def unreceipted_share(self) -> float:
        return self.unreceipted.count / self.delivered.count if self.delivered.count else 0.0

    @property
    def share_bounds(self) -> tuple[float, float]:
        """Where the true share lies: every unreceipted purchase reported by the browser, or
        every one blocked."""
        return self.share, self.share + self.unreceipted_share

    def to_json(self) -> dict[str, object]:
        """The numbers, for ``connector stores recovered`` (values rounded to cents)."""
        return {
            "store_id": self.store_id,
            "pixel": self.pixel,
            "days": self.days,
            "since": self.since.isoformat(),
            "storefront_code_installed": self.code_installed,
            "last_receipt_at": self.last_receipt_at.isoformat() if self.last_receipt_at else None,
            "purchases": self.purchases,
            "delivered": _tally_json(self.delivered),
            "browser_reported": _tally_json(self.reported),
            "recovered": {
                **_tally_json(self.recovered),
                "share": round(self.share, 4) if self.code_installed else None,
            },
            "no_receipt": {
                **_tally_json(self.unreceipted),
                "share": round(self.unreceipted_share, 4),
            },
            "not_delivered": dict(self.not_delivered),
            "by_day": [_row_json(row) for row in self.by_day],
            "by_browser": [_row_json(row) for row in self.by_browser],
            "by_device": [_row_json(row) for row in self.by_device],
            "by_cause": [
                {"status": c.status, "browser": c.outcome, **_tally_json(c.tally)}
                for c in self.by_cause
            ],
            "headline": headline(self),
            "install_hint": None if self.code_installed else self.install_hint,
        }


def ledger(
    services: Services,
    store_id: str,
    days: int = DEFAULT_DAYS,
    *,
    pixel: str = DEFAULT_PIXEL,
    platform: StorePlatform | None = None,
    now: datetime | None = None,
) -> Ledger:
    """The ledger of ``store_id``'s purchases for destination ``pixel`` received in the last
    ``days`` days. ``platform`` (the store's) supplies how to install its storefront code."""
    destination = _destination(services, pixel)
    since = (now or utcnow()) - timedelta(days=days)
    joined = _joined(pixel)
    window = _window(store_id, destination, since)
    day = func.date(OutboxEvent.received_at)
    outcome = func.coalesce(PixelReceipt.outcome, NO_RECEIPT)
    currency = CURRENCY
    query = (
        select(
            day,
            OutboxEvent.browser,
            OutboxEvent.device,
            OutboxEvent.status,
            outcome,
            currency,
            func.count(),
            func.sum(VALUE),
        )
        .select_from(joined)
        .where(*window)
        .group_by(
            day, OutboxEvent.browser, OutboxEvent.device, OutboxEvent.status, outcome, currency
        )
    )
    with services.db.session() as session:
        groups = [_Group(*row) for row in session.execute(query)]
        first, last = session.execute(
            select(func.min(PixelReceipt.received_at), func.max(PixelReceipt.received_at)).where(
                PixelReceipt.store_id == store_id, PixelReceipt.pixel == pixel
            )
        ).one()
    hint = None
    if platform is not None and platform.storefront_install:
        hint = platform.storefront_install.format(store_id=store_id)
    return _ledger_of(
        groups,
        store_id=store_id,
        pixel=pixel,
        label=destination.label,
        days=days,
        since=since,
        first_receipt_at=first,
        last_receipt_at=last,
        install_hint=hint,
    )


def ledger_for_store(
    services: Services,
    store_id: str,
    days: int = DEFAULT_DAYS,
    *,
    pixel: str = DEFAULT_PIXEL,
    platforms: Iterable[StorePlatform] = (),
) -> Ledger | None:
    """:func:`ledger` with the store's platform found among ``platforms``; None when there
    is no such store."""
    with services.db.session() as session:
        store = session.get(Store, store_id)
        platform_name = store.platform if store is not None else None
    if platform_name is None:
        return None
    platform = next((p for p in platforms if p.name == platform_name), None)
    return ledger(services, store_id, days, pixel=pixel, platform=platform)


def orders(
    services: Services,
    store_id: str,
    days: int = DEFAULT_DAYS,
    *,
    pixel: str = DEFAULT_PIXEL,
    now: datetime | None = None,
) -> Iterator[dict[str, object]]:
    """Every purchase of the window, oldest first, as :data:`CSV_COLUMNS`; read in chunks, so
    100,000 orders never sit in memory at once."""
    destination = _destination(services, pixel)
    since = (now or utcnow()) - timedelta(days=days)
    query = (
        select(
            OutboxEvent.event_id,
            OutboxEvent.event_time,
            VALUE,
            CURRENCY,
            OutboxEvent.status,
            PixelReceipt.outcome,
            OutboxEvent.browser,
            OutboxEvent.device,
        )
        .select_from(_joined(pixel))
        .where(*_window(store_id, destination, since))
        .order_by(OutboxEvent.received_at, OutboxEvent.id)
        .execution_options(yield_per=2000)
    )
    with services.db.session() as session:
        for (
            order_id,
            event_time,
            value,
            currency,
            status,
            outcome,
            browser,
            device,
        ) in session.execute(query):
            yield {
                "order_id": order_id,
                "time": datetime.fromtimestamp(event_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "value": f"{value:.2f}" if value is not None else "",
                "currency": currency or "",
                "server_status": status,
                "browser_outcome": outcome or NO_RECEIPT,
                "browser": browser or UNKNOWN,
                "device": device or UNKNOWN,
            }


class Writer(Protocol):
    """Where :func:`write_csv` writes: a text file, or anything with its ``write``."""

    def write(self, text: str, /) -> object: ...


def write_csv(rows: Iterable[Mapping[str, object]], out: Writer | None = None) -> str:
    """The orders as CSV with a header line; written to ``out`` when given, else returned."""
    buffer = io.StringIO()
    writer = csv.DictWriter(out or buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


# -- words -------------------------------------------------------------------------------------


def headline(ledger: Ledger) -> str:
    """The Status page's first sentence (and the command's), the no-receipt count included."""
    start = f"Last {ledger.days} days: "
    sent = ledger.delivered
    if not sent.count:
        return f"{start}no purchases sent from the server to {ledger.label} yet."
    lead = f"{start}{_count(sent.count, 'purchase')} worth {money(sent.value)} sent from the server"
    if not ledger.code_installed:
        return (
            f"{lead}. How many of them {ledger.label} also got from the browser is unknown: no "
            f"pixel receipt came from your storefront in that time, so the connector's "
            "storefront code is not installed or not running."
        )
    if ledger.recovered.count:
        words = (
            f"{lead}; {ledger.recovered.count:,} of them ({percent(ledger.share)}, worth "
            f"{money(ledger.recovered.value)}) never reached {ledger.label} from the browser."
        )
    else:
        words = f"{lead}; the browser pixel was blocked for none of those with a receipt."
    if ledger.unreceipted.count:
        low, high = ledger.share_bounds
        words += (
            f" For {ledger.unreceipted.count:,} more ({percent(ledger.unreceipted_share)}) the "
            "browser sent no receipt (the page was closed early, the connector's beacon was "
            "blocked, or the storefront code was missing), so the share that reached "
            f"{ledger.label} only from the server lies between {percent(low)} and "
            f"{percent(high)}."
        )
    return words


def money(values: Mapping[str, float], *, cents: bool = False) -> str:
    """Amounts per currency for people: "$98,400", "$98,400 + €1,200", "1,200 SEK"; "—" for
    none (no purchase, so no currency)."""
    if not values:
        return "—"
    parts = []
    for currency in sorted(values, key=lambda c: (-values[c], c)):
        amount = f"{values[currency]:,.2f}" if cents else f"{round(values[currency]):,}"
        symbol = CURRENCY_SYMBOLS.get(currency)
        parts.append(f"{symbol}{amount}" if symbol else f"{amount} {currency}")
    return " + ".join(parts)


def percent(share: float) -> str:
    """A share as a whole percentage; "<1%" for a share that rounds to nothing."""
    if 0 < share < 0.005:
        return "<1%"
    return f"{share * 100:.0f}%"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


# -- the Delivery log's browser column ---------------------------------------------------------


def with_receipts():  # type: ignore[no-untyped-def]
    """The outbox outer-joined to each row's own receipt (pixel = the row's destination), for
    a list of events of any destination: the Delivery log."""
    return OutboxEvent.__table__.outerjoin(
        PixelReceipt.__table__,
        and_(
            PixelReceipt.store_id == OutboxEvent.store_id,
            PixelReceipt.pixel == OutboxEvent.destination,
            PixelReceipt.event_id == OutboxEvent.event_id,
        ),
    )


def receipt_purchases(services: Services) -> ColumnElement[bool]:
    """Rows that can have a browser outcome: purchases of :data:`RECEIPT_PIXELS`."""
    return or_(
        *(
            and_(
                OutboxEvent.destination == kind,
                OutboxEvent.event_name.in_(services.destinations[kind].event_names["purchase"]),
            )
            for kind in RECEIPT_PIXELS
            if kind in services.destinations
        ),
        false(),
    )


def outcome_is(outcome: str) -> ColumnElement[bool]:
    """The receipt condition of one browser outcome, on :func:`with_receipts`."""
    if outcome == NO_RECEIPT:
        return PixelReceipt.id.is_(None)
    return PixelReceipt.outcome == outcome


def browser_outcome(services: Services, event: OutboxEvent, outcome: str | None) -> str | None:
    """What the Delivery log shows for a row: its receipt's outcome, "no receipt", or None for
    a row no receipt can be about (a checkout, another destination's purchase)."""
    if event.destination not in RECEIPT_PIXELS or event.destination not in services.destinations:
        return None
    if event.event_name not in services.destinations[event.destination].event_names.get(
        "purchase", ()
    ):
        return None
    return outcome or NO_RECEIPT


# -- queries and sums --------------------------------------------------------------------------


def _joined(pixel: str):  # type: ignore[no-untyped-def]
    """The outbox outer-joined to the receipts by their unique key."""
    return OutboxEvent.__table__.outerjoin(
        PixelReceipt.__table__,
        and_(
            PixelReceipt.store_id == OutboxEvent.store_id,
            PixelReceipt.pixel == pixel,
            PixelReceipt.event_id == OutboxEvent.event_id,
        ),
    )


def _destination(services: Services, pixel: str) -> Destination:
    """The destination whose browser pixel the receipts are about; ValueError if none."""
    destination = services.destinations.get(pixel)
    if destination is None:
        raise ValueError(f"there is no destination {pixel!r}")
    return destination


def _window(
    store_id: str, destination: Destination, since: datetime
) -> tuple[ColumnElement[bool], ...]:
    """The store's purchase rows for ``destination`` received since ``since``."""
    return (
        OutboxEvent.store_id == store_id,
        OutboxEvent.received_at >= since,
        OutboxEvent.destination == destination.kind,
        OutboxEvent.event_name.in_(tuple(destination.event_names.get("purchase", ()))),
        OutboxEvent.source_topic != TEST_EVENT_TOPIC,
    )


@dataclass(frozen=True)
class _Group:
    """One row of the ledger's GROUP BY."""

    day: object
    browser: str | None
    device: str | None
    status: str
    outcome: str
    currency: str | None
    count: int
    value: float | None


def _ledger_of(groups: list[_Group], **fields: object) -> Ledger:
    delivered = [g for g in groups if g.status == EventStatus.DELIVERED]

    def tally(rows: Iterable[_Group]) -> Tally:
        total = Tally()
        for g in rows:
            total += Tally(g.count, {g.currency or "": g.value or 0.0})
        return total

    not_delivered: dict[str, int] = defaultdict(int)
    for g in groups:
        if g.status != EventStatus.DELIVERED:
            not_delivered[g.status] += g.count
    return Ledger(
        purchases=sum(g.count for g in groups),
        delivered=tally(delivered),
        reported=tally(g for g in delivered if g.outcome == REPORTED),
        recovered=tally(g for g in delivered if g.outcome == BLOCKED),
        unreceipted=tally(g for g in delivered if g.outcome not in (REPORTED, BLOCKED)),
        not_delivered=dict(sorted(not_delivered.items())),
        by_day=_rows(delivered, lambda g: _day(g.day), sort_by_key=True),
        by_browser=_rows(delivered, lambda g: g.browser or UNKNOWN),
        by_device=_rows(delivered, lambda g: g.device or UNKNOWN),
        by_cause=_causes(groups),
        **fields,  # type: ignore[arg-type]
    )


def _rows(groups: list[_Group], key_of, *, sort_by_key: bool = False) -> tuple[Row, ...]:  # type: ignore[no-untyped-def]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    values: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for g in groups:
        key = key_of(g)
        outcome = g.outcome if g.outcome in (REPORTED, BLOCKED) else NO_RECEIPT
        counts[key][outcome] += g.count
        if outcome == BLOCKED:
            values[key][g.currency or ""] += g.value or 0.0
    rows = [
        Row(
            key=key,
            delivered=sum(by_outcome.values()),
            reported=by_outcome[REPORTED],
            blocked=by_outcome[BLOCKED],
            unreceipted=by_outcome[NO_RECEIPT],
            recovered_value=dict(values[key]),
        )
        for key, by_outcome in counts.items()
    ]
    if sort_by_key:
        return tuple(sorted(rows, key=lambda r: r.key))
    return tuple(sorted(rows, key=lambda r: (-r.delivered, r.key)))


STATUS_ORDER = (
    EventStatus.DELIVERED,
    EventStatus.PENDING,
    EventStatus.FAILED,
    EventStatus.DEAD,
    EventStatus.SKIPPED,
)

SERVER_WORDS = {
    EventStatus.DELIVERED: "Delivered by the server",
    EventStatus.PENDING: "Not delivered yet (waiting)",
    EventStatus.FAILED: "Not delivered: refused by the ad platform",
    EventStatus.DEAD: "Not delivered: retries ran out",
    EventStatus.SKIPPED: "Not sent on purpose (test order, bot, consent held back...)",
}


def _causes(groups: list[_Group]) -> tuple[Cause, ...]:
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for g in groups:
        outcome = g.outcome if g.outcome in (REPORTED, BLOCKED) else NO_RECEIPT
        tallies[g.status, outcome] += Tally(g.count, {g.currency or "": g.value or 0.0})
    order = {status: i for i, status in enumerate(STATUS_ORDER)}

    def words(status: str, outcome: str) -> str:
        server = SERVER_WORDS.get(status, status)  # type: ignore[call-overload]
        if status == EventStatus.DELIVERED and outcome == BLOCKED:
            return f"Recovered: {server.lower()}; {OUTCOME_WORDS[outcome]}"
        return f"{server}; {OUTCOME_WORDS[outcome]}"

    return tuple(
        Cause(status, outcome, tally, words(status, outcome))
        for (status, outcome), tally in sorted(
            tallies.items(),
            key=lambda item: (order.get(item[0][0], 99), BROWSER_OUTCOMES.index(item[0][1])),
        )
    )


def _day(value: object) -> str:
    """A UTC day as ISO text (SQLite's ``date()`` answers text, PostgreSQL's a date)."""
    if isinstance(value, datetime | date):
        return value.isoformat()[:10]
    return str(value)


def _tally_json(tally: Tally) -> dict[str, object]:
    return {
        "count": tally.count,
        "value": {currency: round(amount, 2) for currency, amount in sorted(tally.value.items())},
    }


def _row_json(row: Row) -> dict[str, object]:
    return {
        "key": row.key,
        "delivered": row.delivered,
        "reported": row.reported,
        "blocked": row.blocked,
        "no_receipt": row.unreceipted,
        "recovered_value": {c: round(v, 2) for c, v in sorted(row.recovered_value.items())},
    }
