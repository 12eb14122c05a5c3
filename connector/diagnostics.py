"""Match-quality diagnostics for one store and destination: what the ad platform can match our
events on, and why not.

Everything here is a handful of GROUP BY queries over the outbox, filtered by the store and
``received_at`` (the ``ix_events_store_received`` index): no payload is ever read, so a store
with 100,000 events a month costs a few index range scans, not 100,000 JSON decodes. The
``signals`` bitmask (:mod:`connector.signals`) is what makes the coverage one query.

**Which events count.** Coverage, click-id sources and the score are computed over the events
that were or will be sent to the destination: ``pending``, ``delivered``, ``failed`` and
``dead``. Skipped events (bots, test orders, point-of-sale orders...) never reach it, so they
would only blur what the platform sees; they are counted apart, by reason. Each destination has
its own rows, user data and signals, so every number here is for one destination.

**The score is our estimate, not the platform's own.** TikTok and Meta each compute an
"Event Match Quality"; TikTok describes it as
"a weighted average of all your match key coverages" (TikTok Events Manager, "Monitor and
diagnose", https://ads.tiktok.com/help/article/tiktok-events-manager-monitor-and-diagnose)
but publishes neither the weights nor the formula. We do the same with our own documented
weights (:data:`SIGNAL_WEIGHTS`) over the store's purchase events, and read the result in the
tiers of issue #6 (:data:`TIERS`). The only authoritative numbers are the platforms' own
(TikTok and Meta Events Manager, Google Ads' conversion diagnostics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from connector.consent import is_held_back
from connector.destinations import Destination
from connector.models import EventStatus, OutboxEvent, UnreadableWebhook, utcnow
from connector.services import Services
from connector.signals import SIGNALS, keys_for

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
"""Events that were or will be sent: the base of every share and of the score."""

FAILED_STATUSES = (EventStatus.FAILED, EventStatus.DEAD)

BOT_SKIP_REASON = "bot user agent"
"""The skip reason :func:`connector.mapping.skip_reason` writes for a bot's order."""

SIGNAL_WEIGHTS: dict[str, int] = {
    "click_id": 30,
    "email": 25,
    "phone": 20,
    "external_id": 10,
    "ip": 5,
    "user_agent": 5,
    "browser_id": 5,
}
"""Our weights per matching signal, summing to 100 so the score reads as a percentage.

The order follows TikTok's own list of match keys, "How to set up matching events with Events
API" (https://ads.tiktok.com/help/article/how-to-set-up-matching-events-with-events-api,
February 2025): the click id first (it ties the event to one ad click), then hashed email and
phone ("Advanced Matching ... to better match website events with ads on TikTok"), then the
advertiser's external id, then IP address and user agent ("end user device and connection
information") and the pixel's first-party cookie (``_ttp``), which only helps alongside the
pixel. Meta's list of customer information parameters ranks the same way (click id ``fbc`` and
email first: https://developers.facebook.com/docs/marketing-api/conversions-api/best-practices).
One set of weights serves every destination, so scores compare.
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
"""Where the click id came from (``OutboxEvent.click_source``), in words a shop owner
understands, for the sources the core writes itself (stored click records,
``connector.clicks.STORED_SOURCES``). Each platform labels the sources its parser writes
(``StorePlatform.click_source_labels``); a source nobody labels shows under its own name."""

CAPTURE_SOURCES = frozenset({"stored_checkout_token", "stored_cart_token"})
"""Click sources only storefront click capture fills: the core's stored click records (``POST
/collect``), plus each platform's own (``StorePlatform.capture_sources``)."""

SIGNAL_LABELS: dict[str, str] = {
    "click_id": "Ad click id",
    "email": "Email",
    "phone": "Phone",
    "external_id": "Customer id",
    "ip": "IP address",
    "user_agent": "Browser (user agent)",
    "browser_id": "Ad platform cookie",
}
"""Generic labels; :func:`signal_labels` names the platform's click id and cookie."""

SIGNAL_ACTIONS: dict[str, str] = {
    "click_id": (
        "Have your storefront keep the click id of the ad's landing page (ttclid, fbclid, "
        "gclid) and send it with the order, as the connector's click capture does."
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
    "browser_id": (
        "Install the platform's pixel and send its cookie (_ttp, _fbp) with the order, as the "
        "connector's click capture does."
    ),
}
"""What raises a signal's coverage on any store platform. A platform says it in its own terms
through ``StorePlatform.signal_advice``, which wins where it has an entry."""


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
    """Failed and dead events with one platform code, the latest message and what to do."""

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
class ConsentCount:
    """Events recorded with one consent state (:func:`connector.consent.consent_state`)."""

    state: str
    count: int


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
    # Events by the shopper's consent as recorded ("granted", "denied", "limited", "unknown").
    consent: tuple[ConsentCount, ...] = ()

    @property
    def skipped(self) -> int:
        return sum(skip.count for skip in self.skips)

    @property
    def held_back(self) -> tuple[SkipCount, ...]:
        """The skips the store's consent policy made."""
        return tuple(skip for skip in self.skips if is_held_back(skip.reason))

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
    destination: Destination | None = None,
    now: datetime | None = None,
) -> Diagnostics:
    """The diagnostics of ``store_id``'s events for ``destination`` received in the last
    ``days`` days (naive UTC, like every stored time).

    ``platform`` is the store's platform, whose advice and click-source labels replace the
    generic ones; the caller passes it (the page has it at hand), so this module never names a
    platform. Without it every text is generic.
    """
    if destination is None:  # the deployment's first default destination
        kinds = [*services.settings.default_destinations, *sorted(services.destinations)]
        destination = services.destinations[kinds[0]]
    advice = platform.signal_advice if platform else {}
    source_labels = platform.click_source_labels if platform else {}
    since = (now or utcnow()) - timedelta(days=days)
    window = (
        OutboxEvent.store_id == store_id,
        OutboxEvent.destination == destination.kind,
        OutboxEvent.received_at >= since,
    )
    with services.db.session() as session:
        labels = signal_labels(destination)
        coverage = _coverage(session, window, labels)
        click_sources = _click_sources(session, window, source_labels)
        skips = _skips(session, window)
        consent = _consent_states(session, window)
        failures = _failures(session, window, destination)
        unreadable = session.scalar(
            select(func.count()).where(
                UnreadableWebhook.store_id == store_id, UnreadableWebhook.received_at >= since
            )
        )
    purchase_names = destination.event_names.get("purchase", ())
    estimate = estimate_match(coverage, purchase_names)
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
        best_change=best_change(coverage, purchase_names, advice, capture_works=capture_works),
        capture_works=capture_works,
        unreadable=unreadable or 0,
        consent=consent,
    )


def signal_labels(destination: Destination) -> dict[str, str]:
    """:data:`SIGNAL_LABELS` with the destination's click id and cookie named: "TikTok click
    id", "Meta cookie (_fbp)"."""
    labels = dict(SIGNAL_LABELS)
    labels["click_id"] = f"{destination.label} click id"
    cookies = keys_for(destination.signal_keys, "browser_id")
    if cookies:
        labels["browser_id"] = f"{destination.label} cookie (_{cookies[0]})"
    return labels


def estimate_match(
    coverage: Iterable[EventCoverage], purchase_names: Iterable[str]
) -> MatchEstimate | None:
    """Our score: the :data:`SIGNAL_WEIGHTS`-weighted share of purchase events carrying each
    signal (equivalently, the average over purchases of the weights of the signals each one
    carried). None without purchases. Not the platform's EMQ: see the module docstring."""
    purchases = _purchases(coverage, purchase_names)
    if purchases is None:
        return None
    score = sum(SIGNAL_WEIGHTS[s.signal] * s.share for s in purchases.signals)
    return MatchEstimate(score=score, tier=tier_of(score), purchases=purchases.events)


def tier_of(score: float) -> str:
    """The issue's tier for a 0-100 score."""
    return next(name for floor, name in TIERS if score >= floor)


def best_change(
    coverage: Iterable[EventCoverage],
    purchase_names: Iterable[str],
    advice: Mapping[str, str],
    *,
    capture_works: bool,
) -> BestChange | None:
    """The signal whose missing purchase coverage × weight is largest, with its action: the
    platform's ``advice`` for it, else :data:`SIGNAL_ACTIONS`.

    When storefront click capture already produced click ids in the window, the click id is
    not a candidate: the purchases still without one most likely did not come from an ad of
    this platform, and "install click capture" would be advice the merchant already followed.
    None when nothing is missing or there are no purchases.
    """
    purchases = _purchases(coverage, purchase_names)
    if purchases is None:
        return None
    candidates = [s for s in purchases.signals if not (s.signal == "click_id" and capture_works)]
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


def _purchases(
    coverage: Iterable[EventCoverage], purchase_names: Iterable[str]
) -> EventCoverage | None:
    """The purchase events of all names merged (a store may have changed its event name)."""
    names = set(purchase_names)
    rows = [c for c in coverage if c.event_name in names]
    events = sum(c.events for c in rows)
    if not events:
        return None
    counts = {name: sum(c.signals[bit].count for c in rows) for bit, name in enumerate(SIGNALS)}
    labels = {share.signal: share.label for share in rows[0].signals}
    return _event_coverage("purchase", events, counts, labels)


def _coverage(
    session: Session, window: tuple[ColumnElement[bool], ...], labels: Mapping[str, str]
) -> tuple[EventCoverage, ...]:
    mask = func.coalesce(OutboxEvent.signals, 0)
    carried = [
        func.sum(case((mask.bitwise_and(1 << bit) != 0, 1), else_=0)) for bit in range(len(SIGNALS))
    ]
    query = (
        select(OutboxEvent.event_name, func.count(), *carried)
        .where(*window, OutboxEvent.status.in_(SENT_STATUSES))
        .group_by(OutboxEvent.event_name)
        .order_by(func.count().desc(), OutboxEvent.event_name)
    )
    return tuple(
        _event_coverage(name, events, dict(zip(SIGNALS, counts, strict=True)), labels)
        for name, events, *counts in session.execute(query)
    )


def _event_coverage(
    name: str, events: int, counts: dict[str, int], labels: Mapping[str, str]
) -> EventCoverage:
    shares = tuple(
        SignalShare(signal, labels[signal], int(counts[signal]), counts[signal] / events)
        for signal in SIGNALS
    )
    return EventCoverage(event_name=name, events=events, signals=shares)


def _click_sources(
    session: Session, window: tuple[ColumnElement[bool], ...], labels: Mapping[str, str]
) -> tuple[ClickSourceCount, ...]:
    query = (
        select(OutboxEvent.click_source, func.count())
        .where(*window, OutboxEvent.status.in_(SENT_STATUSES))
        .group_by(OutboxEvent.click_source)
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
        select(OutboxEvent.last_error, func.count())
        .where(*window, OutboxEvent.status == EventStatus.SKIPPED)
        .group_by(OutboxEvent.last_error)
        .order_by(func.count().desc(), OutboxEvent.last_error)
    )
    return tuple(
        SkipCount(reason or "no reason recorded", count) for reason, count in session.execute(query)
    )


def _consent_states(
    session: Session, window: tuple[ColumnElement[bool], ...]
) -> tuple[ConsentCount, ...]:
    """Events by consent state; rows recorded before consent was known to the connector (no
    state) count as unknown."""
    state = func.coalesce(OutboxEvent.consent, "unknown")
    query = select(state, func.count()).where(*window).group_by(state)
    counts = dict(session.execute(query).all())
    return tuple(
        ConsentCount(name, counts[name])
        for name in ("granted", "limited", "denied", "unknown")
        if counts.get(name)
    )


def _failures(
    session: Session, window: tuple[ColumnElement[bool], ...], destination: Destination
) -> tuple[FailureGroup, ...]:
    """Grouped by code; the latest message is that of the group's last received event."""
    groups = session.execute(
        select(OutboxEvent.last_code, func.count(), func.max(OutboxEvent.id))
        .where(*window, OutboxEvent.status.in_(FAILED_STATUSES))
        .group_by(OutboxEvent.last_code)
        .order_by(func.count().desc(), func.max(OutboxEvent.id).desc())
    ).all()
    latest_ids = [latest for _code, _count, latest in groups]
    messages = dict(
        session.execute(
            select(OutboxEvent.id, OutboxEvent.last_error).where(OutboxEvent.id.in_(latest_ids))
        ).all()
    )
    return tuple(
        FailureGroup(
            code=code,
            count=count,
            latest_message=messages.get(latest),
            meaning=destination.advice(code).meaning,
            action=destination.advice(code).action,
        )
        for code, count, latest in groups
    )
