"""Match-quality diagnostics for one store: what TikTok can match our events on, and why not.

Everything here is a handful of GROUP BY queries over the outbox, filtered by the store and
``received_at`` (the ``ix_events_store_received`` index): no payload is ever read, so a store
with 100,000 events a month costs a few index range scans, not 100,000 JSON decodes. The
``signals`` bitmask (:mod:`connector.signals`) is what makes the coverage one query.

**Which events count.** Coverage, click-id sources and the score are computed over the events
that were or will be sent to TikTok: ``pending``, ``delivered``, ``failed`` and ``dead``.
Skipped events (bots, test orders, point-of-sale orders...) never reach TikTok, so they would
only blur what TikTok sees; they are counted apart, by reason.

**The score is our estimate, not TikTok's Event Match Quality (EMQ).** TikTok computes EMQ as
"a weighted average of all your match key coverages" (TikTok Events Manager, "Monitor and
diagnose", https://ads.tiktok.com/help/article/tiktok-events-manager-monitor-and-diagnose)
but publishes neither the weights nor the formula. We do the same with our own documented
weights (:data:`SIGNAL_WEIGHTS`) over the store's purchase events, and read the result in the
tiers of issue #6 (:data:`TIERS`). The only authoritative number is the one in TikTok Events
Manager.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from connector.mapping import PURCHASE_EVENT_NAMES
from connector.models import Event, EventStatus, UnreadableWebhook, utcnow
from connector.services import Services
from connector.signals import SIGNALS

if TYPE_CHECKING:
    from connector.plugins import StorePlatform

WINDOWS_DAYS = (7, 30)
"""The windows the Diagnostics page offers, in days of ``received_at``."""

SENT_STATUSES = (
    EventStatus.PENDING,
    EventStatus.DELIVERED,
    EventStatus.FAILED,
    EventStatus.DEAD,
)
"""Events that were or will be sent to TikTok: the base of every share and of the score."""

FAILED_STATUSES = (EventStatus.FAILED, EventStatus.DEAD)

BOT_SKIP_REASON = "bot user agent"
"""The skip reason :func:`connector.mapping.skip_reason` writes for a bot's order."""

SIGNAL_WEIGHTS: dict[str, int] = {
    "ttclid": 30,
    "email": 25,
    "phone": 20,
    "external_id": 10,
    "ip": 5,
    "user_agent": 5,
    "ttp": 5,
}
"""Our weights per matching signal, summing to 100 so the score reads as a percentage.

The order follows TikTok's own list of match keys, "How to set up matching events with Events
API" (https://ads.tiktok.com/help/article/how-to-set-up-matching-events-with-events-api,
February 2025): the click id first (it ties the event to one ad click), then hashed email and
phone ("Advanced Matching ... to better match website events with ads on TikTok"), then the
advertiser's external id, then IP address and user agent ("end user device and connection
information") and the ``_ttp`` first-party cookie, which only helps alongside the pixel.
TikTok's pixel tooling warns "advanced matching parameter is missing" unless email or phone
is there (tiktok/gtm-template-pixel#2), hence email and phone right after the click id. The
numbers themselves are ours: TikTok does not publish EMQ's weights.
"""

TIERS: tuple[tuple[float, str], ...] = (
    (80.0, "Excellent"),
    (60.0, "Good"),
    (40.0, "Fair"),
    (0.0, "Poor"),
)
"""Score floors of the tiers issue #6 names: Excellent 80%+, Good 60-80%, Fair 40-60%,
Poor under 40%."""

CLICK_SOURCE_LABELS: dict[str | None, str] = {
    "stored_checkout_token": "Click capture on your storefront (matched by checkout)",
    "stored_cart_token": "Click capture on your storefront (matched by cart)",
    None: "No click id",
}
"""Where the ttclid came from (``Event.click_source``), in words a shop owner understands, for
the sources the core writes itself (stored click records, ``connector.clicks.STORED_SOURCES``).
Each platform labels the sources its parser writes (``StorePlatform.click_source_labels``); a
source nobody labels shows under its own name."""

CAPTURE_SOURCES = frozenset({"stored_checkout_token", "stored_cart_token"})
"""Click sources only storefront click capture fills: the core's stored click records (``POST
/collect``), plus each platform's own (``StorePlatform.capture_sources``)."""

SIGNAL_LABELS: dict[str, str] = {
    "ttclid": "TikTok click id",
    "email": "Email",
    "phone": "Phone",
    "external_id": "Customer id",
    "ip": "IP address",
    "user_agent": "Browser (user agent)",
    "ttp": "TikTok cookie (_ttp)",
}

SIGNAL_ACTIONS: dict[str, str] = {
    "ttclid": (
        "Have your storefront keep the ttclid parameter of the ad's landing page and "
        "send it with the order (an order attribute named ttclid)."
    ),
    "email": "Make email required at checkout.",
    "phone": "Make the phone number required at checkout.",
    "external_id": (
        "Offer customer accounts at checkout: guest orders carry no customer id, and "
        "the customer id is what ties repeat buyers together."
    ),
    "ip": "Check that your storefront sends the shopper's IP address with each order.",
    "user_agent": (
        "Check that your storefront sends the shopper's browser (user agent) with orders."
    ),
    "ttp": "Install the TikTok pixel and send its _ttp cookie with the order.",
}
"""What raises a signal's coverage on any store platform. A platform says it in its own terms
through ``StorePlatform.signal_advice``, which wins where it has an entry."""


@dataclass(frozen=True)
class FailureAdvice:
    """What a TikTok code means and what a shop owner does about it."""

    meaning: str
    action: str


_TOKEN_ADVICE = FailureAdvice(
    "TikTok's access token expired, is missing or is no longer valid",
    "Connect TikTok again on the Settings page (or paste a new Events API access token from "
    "TikTok Events Manager), then replay these events from the Delivery log.",
)
_RATE_ADVICE = FailureAdvice(
    "TikTok asked us to send more slowly",
    "Nothing to change: the connector slows down and retries by itself. Replay these events "
    "from the Delivery log.",
)
_SERVER_ADVICE = FailureAdvice(
    "TikTok had an internal error and our retries ran out",
    "Replay these events from the Delivery log once TikTok works again.",
)
_UNKNOWN_ADVICE = FailureAdvice(
    "a code this page does not know yet",
    "Report the code and message to whoever runs this connector.",
)

FAILURE_ADVICE: dict[int | None, FailureAdvice] = {
    40001: FailureAdvice(
        "the access token may not send events to this pixel",
        "Generate the access token from this pixel's own settings in TikTok Events Manager, "
        "as an admin or operator of the ad account, save it on the Settings page, then "
        "replay these events from the Delivery log.",
    ),
    40002: FailureAdvice(
        "TikTok refused a field of the event (the message names it)",
        "Read the message: a product id or price points to that product in your store; "
        "anything else, report to whoever runs this connector. Replay after the fix.",
    ),
    40003: _TOKEN_ADVICE,
    40061: FailureAdvice(
        "a batch had a size TikTok does not accept",
        "This is a connector bug, not a problem with your shop: report it with the message.",
    ),
    40062: FailureAdvice(
        "TikTok received personal data that was not hashed",
        "This is a connector bug (email and phone are always hashed before sending): report "
        "it with the message and do not replay until it is fixed.",
    ),
    40100: _RATE_ADVICE,
    40102: _TOKEN_ADVICE,
    40103: _TOKEN_ADVICE,
    40104: _TOKEN_ADVICE,
    40105: _TOKEN_ADVICE,
    40107: _TOKEN_ADVICE,
    40130: _TOKEN_ADVICE,
    40132: _RATE_ADVICE,
    61000: _RATE_ADVICE,
    60001: _SERVER_ADVICE,
    50000: _SERVER_ADVICE,
    None: FailureAdvice(
        "no answer code: TikTok could not be reached (network error or timeout), or the "
        "event was not sent at all",
        "If the message says TikTok did not answer or could not be reached, replay these "
        "events from the Delivery log. An event more than 7 days old cannot be sent: TikTok "
        "refuses web events that old.",
    ),
}
"""TikTok codes, from TikTok's Business API SDK (``business_api_client/tiktok_business/
tiktok_code.py``, github.com/tiktok/tiktok-business-api-sdk) and the README's
"Troubleshooting by TikTok code"; how each is handled is
:func:`connector.destinations.tiktok.client.classify`. Token and permission codes pause the
destination rather than fail events, so they show here only for events failed earlier."""


@dataclass(frozen=True)
class SignalShare:
    """How many events of one name carried one signal."""

    signal: str
    label: str
    count: int
    share: float  # 0..1 of the event name's events


@dataclass(frozen=True)
class EventCoverage:
    """Signal coverage of one event name, in :data:`SIGNALS` order."""

    event_name: str
    events: int
    signals: tuple[SignalShare, ...]

    def share(self, signal: str) -> float:
        return next(s.share for s in self.signals if s.signal == signal)


@dataclass(frozen=True)
class ClickSourceCount:
    """Events whose ttclid came from one place (``source`` None: events without one)."""

    source: str | None
    label: str
    count: int


@dataclass(frozen=True)
class SkipCount:
    """Events deliberately not sent, for one reason."""

    reason: str
    count: int


@dataclass(frozen=True)
class FailureGroup:
    """Failed and dead events with one TikTok code, the latest message and what to do."""

    code: int | None
    count: int
    latest_message: str | None
    meaning: str
    action: str


@dataclass(frozen=True)
class MatchEstimate:
    """Our weighted-coverage score of the purchase events (0-100) and its tier."""

    score: float
    tier: str
    purchases: int


@dataclass(frozen=True)
class BestChange:
    """The signal whose missing coverage costs the most score, and how to raise it."""

    signal: str
    label: str
    share: float
    points: float  # what the score would gain if every purchase carried the signal
    action: str


@dataclass(frozen=True)
class Diagnostics:
    """Everything the Diagnostics page shows for one store and one window."""

    store_id: str
    days: int
    since: datetime
    sent: int
    coverage: tuple[EventCoverage, ...]
    click_sources: tuple[ClickSourceCount, ...]
    bots: int
    skips: tuple[SkipCount, ...]
    failures: tuple[FailureGroup, ...]
    estimate: MatchEstimate | None
    best_change: BestChange | None
    capture_works: bool  # storefront click capture produced click ids in the window
    unreadable: int = 0  # verified webhooks kept because they could not be read

    @property
    def skipped(self) -> int:
        return sum(skip.count for skip in self.skips)

    @property
    def empty(self) -> bool:
        """No event at all in the window, sent or skipped."""
        return self.sent == 0 and self.skipped == 0


def diagnose(
    services: Services,
    store_id: str,
    days: int,
    *,
    platform: StorePlatform | None = None,
    destination: str = "tiktok",
    now: datetime | None = None,
) -> Diagnostics:
    """The diagnostics of ``store_id``'s events for ``destination`` received in the last
    ``days`` days (naive UTC, like every stored time).

    ``platform`` is the store's platform, whose advice and click-source labels replace the
    generic ones; the caller passes it (the page has it at hand), so this module never names a
    platform. Without it every text is generic.
    """
    advice = platform.signal_advice if platform else {}
    source_labels = platform.click_source_labels if platform else {}
    since = (now or utcnow()) - timedelta(days=days)
    window = (
        Event.store_id == store_id,
        Event.destination == destination,
        Event.received_at >= since,
    )
    with services.db.session() as session:
        coverage = _coverage(session, window)
        click_sources = _click_sources(session, window, source_labels)
        skips = _skips(session, window)
        failures = _failures(session, window)
        unreadable = session.scalar(
            select(func.count()).where(
                UnreadableWebhook.store_id == store_id, UnreadableWebhook.received_at >= since
            )
        )
    estimate = estimate_match(coverage)
    captured = CAPTURE_SOURCES | (platform.capture_sources if platform else frozenset())
    capture_works = any(c.source in captured and c.count for c in click_sources)
    return Diagnostics(
        store_id=store_id,
        days=days,
        since=since,
        sent=sum(c.events for c in coverage),
        coverage=coverage,
        click_sources=click_sources,
        bots=sum(s.count for s in skips if s.reason == BOT_SKIP_REASON),
        skips=skips,
        failures=failures,
        estimate=estimate,
        best_change=best_change(coverage, advice, capture_works=capture_works),
        capture_works=capture_works,
        unreadable=unreadable or 0,
    )


def estimate_match(coverage: Iterable[EventCoverage]) -> MatchEstimate | None:
    """Our score: the :data:`SIGNAL_WEIGHTS`-weighted share of purchase events carrying each
    signal (equivalently, the average over purchases of the weights of the signals each one
    carried). None without purchases. Not TikTok's EMQ: see the module docstring."""
    purchases = _purchases(coverage)
    if purchases is None:
        return None
    score = sum(SIGNAL_WEIGHTS[s.signal] * s.share for s in purchases.signals)
    return MatchEstimate(score=score, tier=tier_of(score), purchases=purchases.events)


def tier_of(score: float) -> str:
    """The issue's tier for a 0-100 score."""
    return next(name for floor, name in TIERS if score >= floor)


def best_change(
    coverage: Iterable[EventCoverage], advice: Mapping[str, str], *, capture_works: bool
) -> BestChange | None:
    """The signal whose missing purchase coverage × weight is largest, with its action: the
    platform's ``advice`` for it, else :data:`SIGNAL_ACTIONS`.

    When storefront click capture already produced click ids in the window, the click id is
    not a candidate: the purchases still without one most likely did not come from a TikTok
    ad, and "install click capture" would be advice the merchant already followed. None when
    nothing is missing or there are no purchases.
    """
    purchases = _purchases(coverage)
    if purchases is None:
        return None
    candidates = [s for s in purchases.signals if not (s.signal == "ttclid" and capture_works)]
    worst = max(candidates, key=lambda s: (1 - s.share) * SIGNAL_WEIGHTS[s.signal])
    points = (1 - worst.share) * SIGNAL_WEIGHTS[worst.signal]
    if points <= 0:
        return None
    return BestChange(
        signal=worst.signal,
        label=worst.label,
        share=worst.share,
        points=points,
        action=advice.get(worst.signal, SIGNAL_ACTIONS[worst.signal]),
    )


def advice_for(code: int | None) -> FailureAdvice:
    """:data:`FAILURE_ADVICE` for a code; any 5xxxx is a TikTok-side error."""
    if code in FAILURE_ADVICE:
        return FAILURE_ADVICE[code]
    if code is not None and code >= 50000:
        return _SERVER_ADVICE
    return _UNKNOWN_ADVICE


def _purchases(coverage: Iterable[EventCoverage]) -> EventCoverage | None:
    """The purchase events of all names merged (a store may have changed its event name)."""
    rows = [c for c in coverage if c.event_name in PURCHASE_EVENT_NAMES]
    events = sum(c.events for c in rows)
    if not events:
        return None
    counts = {name: sum(c.signals[bit].count for c in rows) for bit, name in enumerate(SIGNALS)}
    return _event_coverage("purchase", events, counts)


def _coverage(
    session: Session, window: tuple[ColumnElement[bool], ...]
) -> tuple[EventCoverage, ...]:
    mask = func.coalesce(Event.signals, 0)
    carried = [
        func.sum(case((mask.bitwise_and(1 << bit) != 0, 1), else_=0)) for bit in range(len(SIGNALS))
    ]
    query = (
        select(Event.event_name, func.count(), *carried)
        .where(*window, Event.status.in_(SENT_STATUSES))
        .group_by(Event.event_name)
        .order_by(func.count().desc(), Event.event_name)
    )
    return tuple(
        _event_coverage(name, events, dict(zip(SIGNALS, counts, strict=True)))
        for name, events, *counts in session.execute(query)
    )


def _event_coverage(name: str, events: int, counts: dict[str, int]) -> EventCoverage:
    shares = tuple(
        SignalShare(signal, SIGNAL_LABELS[signal], int(counts[signal]), counts[signal] / events)
        for signal in SIGNALS
    )
    return EventCoverage(event_name=name, events=events, signals=shares)


def _click_sources(
    session: Session, window: tuple[ColumnElement[bool], ...], labels: Mapping[str, str]
) -> tuple[ClickSourceCount, ...]:
    query = (
        select(Event.click_source, func.count())
        .where(*window, Event.status.in_(SENT_STATUSES))
        .group_by(Event.click_source)
        .order_by(func.count().desc())
    )
    return tuple(
        ClickSourceCount(source, click_source_label(source, labels), count)
        for source, count in session.execute(query)
    )


def click_source_label(source: str | None, labels: Mapping[str, str]) -> str:
    """The platform's label for ``source``, else the core's, else the source's own name."""
    if source is not None and source in labels:
        return labels[source]
    return CLICK_SOURCE_LABELS.get(source, source or "")


def _skips(session: Session, window: tuple[ColumnElement[bool], ...]) -> tuple[SkipCount, ...]:
    query = (
        select(Event.last_error, func.count())
        .where(*window, Event.status == EventStatus.SKIPPED)
        .group_by(Event.last_error)
        .order_by(func.count().desc(), Event.last_error)
    )
    return tuple(
        SkipCount(reason or "no reason recorded", count) for reason, count in session.execute(query)
    )


def _failures(
    session: Session, window: tuple[ColumnElement[bool], ...]
) -> tuple[FailureGroup, ...]:
    """Grouped by code; the latest message is that of the group's last received event."""
    groups = session.execute(
        select(Event.last_code, func.count(), func.max(Event.id))
        .where(*window, Event.status.in_(FAILED_STATUSES))
        .group_by(Event.last_code)
        .order_by(func.count().desc(), func.max(Event.id).desc())
    ).all()
    latest_ids = [latest for _code, _count, latest in groups]
    messages = dict(
        session.execute(select(Event.id, Event.last_error).where(Event.id.in_(latest_ids))).all()
    )
    return tuple(
        FailureGroup(
            code=code,
            count=count,
            latest_message=messages.get(latest),
            meaning=advice_for(code).meaning,
            action=advice_for(code).action,
        )
        for code, count, latest in groups
    )
