"""Ad platforms we deliver to: one subpackage each, found by :func:`load_destinations`.

A destination package exposes ``DESTINATION``, an object with the :class:`Destination`
interface below. Adding an ad platform means adding one folder here and nothing else.

``DESTINATION`` may also have a ``blueprint`` attribute: a Flask blueprint of the platform's own
pages (TikTok's "Connect with TikTok" OAuth and pixel choice), which the web app registers
(``app.register_blueprints``). Its store pages use ``connector.web.merchant.access`` for access
and CSRF, as the merchant pages do.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import requests

from connector.events import ConversionEvent

if TYPE_CHECKING:  # the services import this package: only the type checker needs them
    from connector.models import Destination as DestinationRow
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
class DestinationConfig:
    """The decrypted settings of one configured destination, for one delivery run."""

    api_base: str
    pixel_code: str
    access_token: str
    test_event_code: str | None
    timeout: float


class Destination(Protocol):
    """The contract a destination package implements."""

    kind: str
    max_batch: int

    def problem(self, event: ConversionEvent, now: int) -> str | None:
        """Why this event can never be accepted (too old, say), or None; checked before sending."""

    def send(
        self, http: requests.Session, config: DestinationConfig, events: list[ConversionEvent]
    ) -> SendResult:
        """Send one batch and classify the answer; never raises for network or API errors."""

    def access_token(self, services: Services, row: DestinationRow) -> str:
        """The token to send with, decrypted from ``row``; a destination whose tokens expire
        renews it here first. Never raises for the platform's trouble."""

    def after_send(
        self,
        services: Services,
        row: DestinationRow,
        config: DestinationConfig,
        result: SendResult,
        resend: Callable[[DestinationConfig], SendResult],
    ) -> SendResult:
        """A second look at an answer: a destination may renew an expired token and
        ``resend`` once; otherwise it returns ``result`` as it is."""


def load_destinations() -> dict[str, Destination]:
    """Every destination package below this one, by kind."""
    found: dict[str, Destination] = {}
    for module in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        destination = getattr(importlib.import_module(module.name), "DESTINATION", None)
        if destination is not None:
            found[destination.kind] = destination
    return found
