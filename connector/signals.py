"""The matching signals an event carried, kept as a small bitmask on its outbox row.

Diagnostics ask "what share of last month's purchases carried a click id, an email...": a
GROUP BY over this column answers it without reading a single payload. The mask is written
when the event is recorded and never changes (a redaction deletes the row).

The signals are neutral: each destination says which key of its own user data carries each
one (``Destination.signal_keys``: TikTok's click id is ``ttclid``, Meta's ``fbc``, Google's
``gclid``), so one column serves every platform. The order is part of the stored data: append
new signals, never reorder (rows written before destinations were plugins used bit 0 for
TikTok's ttclid and bit 6 for its ``_ttp`` cookie, which is what these names mean for TikTok).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Strongest first, as the ad platforms rank their match keys (TikTok's "Event Match
# Quality" guidance and Meta's "Event Match Quality" both put the click id and email/phone
# above IP and user agent).
SIGNALS: tuple[str, ...] = (
    "click_id",
    "email",
    "phone",
    "external_id",
    "ip",
    "user_agent",
    "browser_id",
)


SignalKeys = Mapping[str, str | tuple[str, ...]]
"""A destination's ``signal_keys``: for each signal, the key of its user data that carries it,
or several keys any of which does (Google's click id is a gclid, a gbraid or a wbraid)."""


def keys_for(keys: SignalKeys, signal: str) -> tuple[str, ...]:
    """The user-data keys that carry ``signal`` for a destination; empty when none does."""
    value = keys.get(signal)
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def carries(user: Mapping[str, Any], keys: SignalKeys, signal: str) -> bool:
    """Whether the destination's user data holds a value for ``signal``."""
    return any(user.get(key) for key in keys_for(keys, signal))


def signal_mask(user: Mapping[str, Any], keys: SignalKeys) -> int:
    """The bits of the signals ``user`` carries, in :data:`SIGNALS` order; ``keys`` maps each
    signal to the destination's key(s) for it."""
    mask = 0
    for bit, name in enumerate(SIGNALS):
        if carries(user, keys, name):
            mask |= 1 << bit
    return mask


def signals_in(mask: int) -> list[str]:
    """The signal names a mask holds."""
    return [name for bit, name in enumerate(SIGNALS) if mask & (1 << bit)]
