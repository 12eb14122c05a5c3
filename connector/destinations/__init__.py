"""Ad platforms we deliver to: one subpackage each, found by :func:`load_destinations`.

A destination package (``connector/destinations/<kind>/``) exposes ``DESTINATION``, an object
with the :class:`Destination` interface below, and owns everything specific to its ad
platform: its API base and other environment variables, the fields a merchant fills in, its
event names, how it normalises and hashes shopper data, which click ids it uses, its batch
limit, how it classifies answers, its test event and its failure advice. The core names no ad
platform; adding one is one new folder here (docs/ARCHITECTURE.md walks through it).

``DESTINATION`` may also have a ``follow_up`` method, for platforms that process a request
after accepting it and report on it later (Google's Data Manager API): :mod:`connector.followup`
asks it about delivered requests and keeps its words with the attempt, for the delivery log.

``DESTINATION`` may also have a ``blueprint`` attribute: a Flask blueprint of the platform's own
pages (TikTok's "Connect with TikTok" OAuth and pixel choice), which the web app registers
(``app.register_blueprints``). Its store pages use ``connector.web.merchant.access`` for access
and CSRF, as the merchant pages do.

Why shopper data is hashed by each destination, at the edge, rather than once: the platforms'
rules differ in ways a hash cannot undo (TikTok wants a phone as E.164 with ``+``, Meta the same
digits without it; Meta hashes city and country, TikTok sends them plain; Google removes the
dots of a Gmail address). One neutral hash would match on at most one platform, and keeping
raw values to hash later would store personal data. So while the webhook's raw shopper is in
memory, each of the store's destinations builds its own user data (:meth:`Destination.user_data`)
and only that goes into its outbox row.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson
import requests

from connector.events import ClickIds, ConversionEvent, Shopper

if TYPE_CHECKING:  # the services import this package: only the type checker needs them
    from connector.models import StoreDestination
    from connector.services import Services


class Outcome(StrEnum):
    """How a destination answered one request, in the terms the delivery loop acts on."""

    DELIVERED = "delivered"
    RETRY = "retry"  # transient: rate limit, outage, timeout; back off and send again
    REJECTED = "rejected"  # the payload is wrong; isolate the bad event, fail it, send the rest
    PARTIAL = "partial"  # some events were taken: fail the refused ones, the rest is delivered
    PAUSE = "pause"  # token, permission or address is wrong; pause the destination, keep events


@dataclass(frozen=True)
class SendResult:
    """What happened to one request, with the platform's own code and words for the log."""

    outcome: Outcome
    message: str
    http_status: int | None = None
    code: int | None = None
    request_id: str | None = None
    retry_after: float | None = None
    fix: str | None = None  # with PAUSE: what the merchant must do, shown with the pause
    # With REJECTED or PARTIAL: the events the platform names as refused, by their position in
    # the batch, each with the platform's words about it; empty when it names none.
    refused: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FailureAdvice:
    """What a platform's result code means and what a shop owner does about it."""

    meaning: str
    action: str


@dataclass(frozen=True)
class FollowUp:
    """What a platform later says about a request it accepted: ``done`` once its processing is
    final (nothing more to ask), ``message`` in its words for the delivery log."""

    done: bool
    message: str


StoredAs = Literal["account_id", "access_token", "refresh_token", "test_event_code", "setting"]


@dataclass(frozen=True)
class ConfigField:
    """One thing a merchant enters to connect a destination: the settings card's input and the
    ``connector destinations set`` flag are both drawn from it.

    ``stored_as`` says where it lives on the store's destination row: ``account_id`` (what
    events are sent to: a pixel, a dataset, an ad account), ``access_token`` and
    ``refresh_token`` (encrypted), ``test_event_code``, or ``setting`` (the row's ``settings``
    JSON, under ``name``). ``pattern`` is matched against the trimmed value.
    """

    name: str
    label: str
    help: str
    stored_as: StoredAs
    required: bool = True
    secret: bool = False
    pattern: str | None = None
    example: str = ""

    @property
    def flag(self) -> str:
        """The command-line flag: ``pixel_code`` -> ``--pixel-code``."""
        return "--" + self.name.replace("_", "-")

    def problem(self, value: str) -> str | None:
        """Why ``value`` cannot be accepted, in words for the merchant; None when it can."""
        if not value:
            return f"Enter the {self.label} ({self.help})" if self.required else None
        if self.pattern and not re.fullmatch(self.pattern, value):
            example = f", for example {self.example}" if self.example else ""
            return f"The {self.label} does not look right{example} ({self.help})"
        return None


@dataclass(frozen=True)
class EnvVar:
    """An environment variable a destination reads (its API base first), with its default."""

    name: str
    default: str | None = None
    help: str = ""


@dataclass(frozen=True)
class DestinationConfig:
    """The decrypted settings of one configured destination, for one delivery run.

    ``env`` holds the destination's own environment variables (:attr:`Destination.env`), read
    once at start; ``validate_only`` asks the platform to check the batch without recording it
    (the test button of a platform without test event codes).
    """

    api_base: str
    account_id: str
    access_token: str
    test_event_code: str | None
    timeout: float
    settings: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str | None] = field(default_factory=dict)
    validate_only: bool = False


class Destination(Protocol):
    """The contract a destination package implements.

    Attributes:
        kind: the registry key, stored on rows and used in commands (``tiktok``).
        label: the platform's name for people (``TikTok``).
        env: its environment variables, the API base first (``TIKTOK_API_BASE``).
        fields: what a merchant enters to connect it.
        event_names: for each moment (``purchase``, ``checkout``), the event names the merchant
            may choose from, the default first; a moment missing here sends nothing.
        click_ids: the :class:`~connector.events.ClickIds` fields it uses, its click id first.
        signal_keys: for each neutral signal of :mod:`connector.signals`, the key of
            :meth:`user_data` that carries it (or a tuple of keys, any of which does), for
            diagnostics' coverage.
        max_batch: the most events one request may carry.
        max_requests_per_second: the platform's own request rate limit for one destination
            (0: none documented; ``DESTINATION_MAX_QPS`` applies to every destination).
        test_mode: ``code`` when test events carry a test event code the merchant enters,
            ``validate`` when the test button asks the platform to validate without recording.
        test_hint: how a merchant gets test events in, for messages (a test order with no way
            to be sent as a test says this).
        setup: what the merchant sets up on the platform's side, for the settings card.
    """

    kind: str
    label: str
    env: tuple[EnvVar, ...]
    fields: tuple[ConfigField, ...]
    event_names: Mapping[str, tuple[str, ...]]
    click_ids: tuple[str, ...]
    signal_keys: Mapping[str, str | tuple[str, ...]]
    max_batch: int
    max_requests_per_second: float
    test_mode: Literal["code", "validate"]
    test_hint: str
    setup: str

    def advice(self, code: int | None) -> FailureAdvice:
        """What one of the platform's result codes means and what the merchant should do;
        ``None`` is an event that got no answer code (unreachable, or refused before sending).
        Diagnostics shows it beside failed events."""

    def user_data(self, shopper: Shopper, clicks: ClickIds, event_time: int) -> dict[str, Any]:
        """The matching signals this platform receives for one shopper, normalised and hashed
        by its own documented rules; only this is stored. ``event_time`` (seconds) dates click
        ids that need a time (Meta's ``fbc``)."""

    def problem(self, event: ConversionEvent, now: int) -> str | None:
        """Why this event can never be accepted (too old, or nothing to match it by), or None.

        Checked when the event is recorded: one that no time will mend is recorded skipped with
        this reason (and an order read back by reconciliation, any problem). Before sending, an
        event stored as sent is checked by :meth:`timing_problem` alone, from its time."""

    def timing_problem(self, event_time: int, now: int) -> str | None:
        """The part of :meth:`problem` that depends on when the event is sent: too old, or
        too far ahead of the clock; checked before every send from the row's event time.

        It must describe a window (times from some age to some lead on ``now`` pass, all
        others fail): a batch whose oldest and newest events pass is sent without asking for
        each event between (``connector.delivery``)."""

    def event_element(self, event: ConversionEvent) -> dict[str, Any]:
        """The event as one element of the request's list of events, exactly as it is sent.

        The outbox stores it encoded when the event is recorded (IP and user agent included,
        dropped with the rest once the event is final), so a worker frames stored elements
        instead of rebuilding events: parsing, rebuilding and encoding an event cost a third
        of a worker's CPU (``bench/README.md``)."""

    def send_elements(
        self, http: requests.Session, config: DestinationConfig, elements: list[bytes]
    ) -> SendResult:
        """Send one batch of encoded :meth:`event_element` outputs, framed in the request's
        envelope (:func:`frame_elements`), and classify the answer; never raises for network
        or API errors."""

    def send(
        self, http: requests.Session, config: DestinationConfig, events: list[ConversionEvent]
    ) -> SendResult:
        """Send one batch of events (:meth:`send_elements` of their elements); never raises
        for network or API errors."""

    def access_token(self, services: Services, row: StoreDestination) -> str:
        """The token to send with, decrypted from ``row``; a destination whose tokens expire
        renews it here first. Never raises for the platform's trouble."""

    def after_send(
        self,
        services: Services,
        row: StoreDestination,
        config: DestinationConfig,
        result: SendResult,
        resend: Callable[[DestinationConfig], SendResult],
    ) -> SendResult:
        """A second look at an answer: a destination may renew an expired token and
        ``resend`` once; otherwise it returns ``result`` as it is."""


def retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, given as seconds or as an HTTP date
    (RFC 9110, section 10.2.3); None without a usable one. Every platform may send it with a
    429 or 503."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def post_encoded(
    http: requests.Session,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    timeout: float,
    params: Mapping[str, str] | None = None,
) -> requests.Response:
    """POST a body already encoded as JSON (:func:`frame_elements`). Bodies are encoded by
    orjson, never by ``requests``' ``json=``: the standard library's encoder cost 9 us of a
    worker's CPU per event in a batch of 500, orjson 0.5 us (``bench/README.md``)."""
    return http.post(
        url,
        data=body,
        params=params,
        headers={"Content-Type": "application/json", **headers},
        timeout=timeout,
    )


def frame_elements(envelope: Mapping[str, Any], key: str, elements: Sequence[bytes]) -> bytes:
    """One JSON object: ``envelope`` with ``key`` holding ``elements``, each already encoded.

    The outbox keeps each event as its destination sends it (:meth:`Destination.event_element`,
    encoded when the event is recorded), so a batch's body is its stored elements joined
    inside the request's envelope, without parsing or encoding any of them again.
    """
    if not key.isidentifier():
        raise ValueError(f"an element key needs no escaping: {key!r}")
    head = orjson.dumps(envelope)
    joint = b"," if len(head) > 2 else b""
    return b'%s%s"%s":[%s]}' % (head[:-1], joint, key.encode(), b",".join(elements))


def load_destinations() -> dict[str, Destination]:
    """Every destination package below this one, by kind."""
    found: dict[str, Destination] = {}
    for module in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        destination = getattr(importlib.import_module(module.name), "DESTINATION", None)
        if destination is not None:
            found[destination.kind] = destination
    return found


def destination_env(
    destinations: Mapping[str, Destination], environ: Mapping[str, str]
) -> dict[str, str | None]:
    """Every destination's environment variables, read once: set values, else defaults.
    A URL loses its trailing slash, so paths can be appended."""
    values: dict[str, str | None] = {}
    for destination in destinations.values():
        for var in destination.env:
            value = environ.get(var.name) or var.default
            values[var.name] = value.rstrip("/") if value and "://" in value else value
    return values
