"""The shopper's IP address and user agent: sent to the ad platform, then not kept.

Each destination stores them plain in the outbox payload's user data, under its own keys
(``Destination.signal_keys["ip"]`` / ``["user_agent"]``: TikTok ``ip``/``user_agent``, Meta
``client_ip_address``/``client_user_agent``, Google ``ip``/``user_agent``). They are only
needed to send the event: once it is delivered (or can no longer be replayed usefully) they
are dropped from the payload. The row's ``signals`` bitmask, written when the event was
recorded, still says the event carried them, so diagnostics' coverage is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm import Session

from connector.destinations import Destination, load_destinations
from connector.models import OutboxEvent
from connector.signals import keys_for

NETWORK_SIGNALS = ("ip", "user_agent")
EVENTS = OutboxEvent.__table__


@cache
def known_destinations() -> Mapping[str, Destination]:
    """Every destination by kind, loaded once, for code that has no ``Services`` at hand."""
    return load_destinations()


def network_keys(destination: Destination) -> list[str]:
    """The keys under which this destination's user data holds the IP and user agent."""
    return [key for s in NETWORK_SIGNALS for key in keys_for(destination.signal_keys, s)]


def all_network_keys(destinations: Mapping[str, Destination]) -> set[str]:
    """Every destination's IP and user-agent keys, to find payloads that may hold them."""
    return {key for destination in destinations.values() for key in network_keys(destination)}


def without_network_signals(
    payload: dict[str, Any], destination: Destination | None
) -> dict[str, Any] | None:
    """A copy of ``payload`` with the shopper's IP and user agent removed from its user data,
    or None when it holds neither (or its destination is unknown, so its keys are too)."""
    user = payload.get("user")
    if destination is None or not isinstance(user, dict):
        return None
    held = [key for key in network_keys(destination) if key in user]
    if not held:
        return None
    kept = {key: value for key, value in user.items() if key not in held}
    return {**payload, "user": kept}


def forget_network_signals(
    session: Session,
    rows: Iterable[tuple[int, str, dict[str, Any] | None]],
    destinations: Mapping[str, Destination],
    *,
    only_statuses: Iterable[str],
) -> int:
    """Rewrite the payloads of ``rows`` (id, destination kind, payload) that hold an IP or user
    agent, in one executemany; a row whose status has since left ``only_statuses`` (a replay
    made it pending again) is left as it is. Returns how many payloads were rewritten."""
    changes = []
    for id_, kind, payload in rows:
        scrubbed = without_network_signals(payload or {}, destinations.get(kind))
        if scrubbed is not None:
            changes.append({"scrubbed_id": id_, "scrubbed_payload": scrubbed})
    if changes:
        session.execute(
            update(EVENTS)
            .where(
                EVENTS.c.id == bindparam("scrubbed_id"),
                # Not IN (...): an expanding parameter cannot go in an executemany.
                or_(*(EVENTS.c.status == status for status in only_statuses)),
            )
            .values(payload=bindparam("scrubbed_payload", type_=EVENTS.c.payload.type)),
            changes,
        )
    return len(changes)
