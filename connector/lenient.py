"""Single values read out of a store's JSON body without trusting their type or size.

A verified webhook (or an order fetched back from the store) is the store's word, but its
values come from themes, apps and extensions as much as from the platform itself: a
quantity arrives as ``"2"``, an amount as ``1e30`` or ``NaN``, an object as a list. Each
reader here returns the value in the one form the connector uses, or None when there is no
usable value, and never raises: the platform's parser decides whether None makes the whole
body unreadable (no id, currency or total) or only costs a detail, said in a parse note.

Bounds come from where the values go: amounts end as TikTok ``value`` floats rounded to the
currency's minor unit (:func:`connector.mapping._money`, a 28-digit decimal context), ids as
``event_id`` and click-record columns of at most :data:`MAX_TOKEN_CHARS` and
:data:`MAX_ID_CHARS` characters, and a NUL or other control character cannot be stored in a
PostgreSQL text column at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_AMOUNT = Decimal("1e15")
"""Amounts must be below this: far above any real order in any currency (a billion US dollars
in Iranian rials is about 4e13), and low enough to stay exact as a float with its cents and
inside the mapping's decimal precision whatever is added up."""

MIN_AMOUNT = Decimal("1e-9")
"""A non-zero amount must be at least this: nothing is priced in billionths, and the bound keeps
a rate derived from two amounts (Shopify's shop and presentment totals) within range."""

MAX_QUANTITY = 2**31 - 1
"""Quantities must fit a 32-bit signed integer: a wider one is no real order, and an ad
platform's integer field need not take it."""

MAX_ID_CHARS = 64
"""An order id longer than this cannot be stored with the click records it used."""

MAX_TOKEN_CHARS = 255
"""A checkout or cart token longer than this cannot be stored as an ``event_id`` or looked up."""


def amount(value: object) -> Decimal | None:
    """A finite amount, 0 or from :data:`MIN_AMOUNT` to below :data:`MAX_AMOUNT`, from a
    decimal string (``"199.00"``), a JSON number (read through its shortest text form, so
    12.99 stays 12.99) or a Decimal; None for anything else (``"12,50"``, ``"NaN"``,
    ``"1e30"``, ``-1``, ``true``, a list)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    if isinstance(value, int) and not 0 <= value < MAX_AMOUNT:
        return None  # before str(), which refuses integers of over 4300 digits
    text = str(value).strip()
    if not text.isascii():
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite() or not (number == 0 or MIN_AMOUNT <= number < MAX_AMOUNT):
        return None
    return number.copy_abs()  # "-0.00" is 0.00


def quantity(value: object) -> int | None:
    """A whole number from 0 to :data:`MAX_QUANTITY`: an integer, an integral JSON number
    (``2.0``) or an integer-like string (``"2"``, what some extensions send); None for a
    fraction, a negative number or anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= MAX_QUANTITY else None
    number = amount(value)
    if number is None or number > MAX_QUANTITY or number != number.to_integral_value():
        return None
    return int(number)


def line_fields(line: object, notes: list[str]) -> tuple[dict[str, Any], int] | None:
    """A line item as an object with its whole ``quantity``, or None and the note saying why
    it was left out of contents (both platforms' lines carry ``quantity`` the same way)."""
    if not isinstance(line, dict):
        notes.append("a line item that is not an object was left out of contents")
        return None
    count = quantity(line.get("quantity"))
    if count is None:
        notes.append(
            "a line item whose 'quantity' is not a whole number from 0 was left out of contents"
        )
        return None
    return line, count


def text(value: object) -> str | None:
    """A string with its surrounding whitespace trimmed; None when empty or not a string."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def first_text(*values: object) -> str | None:
    """The first of ``values`` that is a non-empty string."""
    return next((t for t in map(text, values) if t), None)


def identifier(value: object, max_chars: int = MAX_TOKEN_CHARS) -> str | None:
    """An id or token as a string: straight from an ``int`` (exact at any size, since
    Python's json never turns an integer into a float), or a printable string of at most
    ``max_chars`` characters. Floats are refused: a 64-bit id that went through a float has
    lost its last digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        ident = str(value) if 0 <= value < 10**max_chars else None
    else:
        ident = text(value)
    if ident is None or len(ident) > max_chars or not ident.isprintable():
        return None
    return ident


def currency_code(value: object) -> str | None:
    """An ISO 4217 style code, upper case; None for anything but three ASCII letters."""
    code = text(value)
    if code and len(code) == 3 and code.isascii() and code.isalpha():
        return code.upper()
    return None


def as_object(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one, so a nested ``.get`` is safe."""
    return value if isinstance(value, dict) else {}


def iso_time(value: object) -> datetime | None:
    """An ISO 8601 date-time, in UTC when it carries an offset and naive when it does not
    (what a naive time means is the caller's to say); None when it is missing, not ISO
    8601, or out of the range a datetime can hold once moved to UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed
    except (ValueError, OverflowError):
        return None
