"""The shopper's IP address and user agent: sent to the ad platform, then not kept.

Each destination sends them plain in its user data, under its own keys
(``Destination.signal_keys["ip"]`` / ``["user_agent"]``: TikTok ``ip``/``user_agent``, Meta
``client_ip_address``/``client_user_agent``, Google ``ip``/``user_agent``). They are only
needed to send the event, so the outbox row keeps them apart from its payload, in the
``network`` column: delivery puts them back into the user data for the request, and the
UPDATE that records the delivery sets the column to NULL (``connector.retention`` does the
same, later, for events that are never sent again). The row's ``signals`` bitmask, written
when the event was recorded, still says the event carried them, so diagnostics' coverage is
unchanged.

Why a column rather than keys of the payload: dropping two keys out of a JSON payload in the
delivery's UPDATE cost PostgreSQL 16 us of CPU per delivered event (the payload parsed into
``jsonb`` and written back), 40% of the database's share of a delivery; setting a column to
NULL costs nothing beyond the update itself (``bench/README.md``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from connector.destinations import Destination
from connector.signals import keys_for

NETWORK_SIGNALS = ("ip", "user_agent")


@cache
def network_keys(destination: Destination) -> tuple[str, ...]:
    """The keys under which this destination's user data holds the IP and user agent."""
    return tuple(key for s in NETWORK_SIGNALS for key in keys_for(destination.signal_keys, s))


def split_network_signals(
    payload: dict[str, Any], destination: Destination
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``payload`` without the IP and user agent, and those apart (None when it has neither):
    what an outbox row stores in ``payload`` and ``network``."""
    user = payload.get("user")
    keys = network_keys(destination)
    if not isinstance(user, dict) or not any(key in user for key in keys):
        return payload, None
    network = {key: user[key] for key in keys if key in user}
    kept = {key: value for key, value in user.items() if key not in network}
    return {**payload, "user": kept}, network
