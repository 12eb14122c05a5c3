"""Every value the connector keeps encrypted, checked and re-encrypted as a whole.

The columns are every ``*_encrypted`` column of the schema (:mod:`connector.models`): store
webhook secrets and API keys, destination tokens, Shopify tokens, kept unreadable webhook
bodies. They are found from the metadata, so a column added later is covered without a list
to keep up to date.

``connector web`` and ``connector worker`` run :func:`check_secrets` before they start (a
changed SECRET_KEY must not look like a working connector that answers every webhook 503);
``connector secrets rotate`` runs :func:`rotate_secrets` after a key change, after which the
old key can leave SECRET_KEY_FALLBACKS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Table, select, update
from sqlalchemy.exc import SQLAlchemyError

from connector.crypto import TokenCipher
from connector.models import Base
from connector.services import Services

logger = logging.getLogger(__name__)

ENCRYPTED_SUFFIX = "_encrypted"
BATCH_ROWS = 500
# Kept webhook bodies are up to a megabyte each, and a broken parser can keep many: they are
# read a few at a time, and the start-up check reads only the oldest and the newest, which
# bound the keys that wrote them (``connector secrets check`` reads them all).
LARGE_COLUMNS = frozenset({"unreadable_webhooks.body_encrypted"})
LARGE_BATCH_ROWS = 10


@dataclass
class ColumnReport:
    """What one encrypted column holds, by the key that wrote each value."""

    column: str
    current: int = 0  # written with the current key
    older: int = 0  # written with a fallback key (rotate: re-encrypted with the current one)
    undecryptable: int = 0  # written with no configured key
    stores: list[str] = field(default_factory=list)  # the stores owning undecryptable values


def encrypted_columns() -> list[Column[Any]]:
    """Every ``*_encrypted`` column of the schema, table by table."""
    return [
        column
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith(ENCRYPTED_SUFFIX)
    ]


def check_secrets(services: Services, *, quick: bool = False) -> list[ColumnReport]:
    """Which stored values the configured keys can read; writes nothing.

    Only signatures are checked (no decryption), so every token and secret of thousands of
    stores takes a fraction of a second; ``quick`` samples the large columns, for start-up.
    """
    reports = []
    with services.db.engine.connect() as connection:
        for column in encrypted_columns():
            report = ColumnReport(_name(column))
            batches = [_sample(connection, column)] if quick and _large(column) else None
            for batch in batches or _batches(connection, column):
                for _key, owner, ciphertext in batch:
                    _classify(services.cipher, report, owner, ciphertext)
            reports.append(report)
    return reports


def rotate_secrets(services: Services) -> list[ColumnReport]:
    """Re-encrypt every value an older key wrote with the current key.

    One transaction per batch, so a long run holds no lock for long and an interruption
    keeps what is done; running it again only counts. A value that changed meanwhile (a
    token refreshed) is left as the app wrote it, with the current key. Undecryptable values
    are counted and left alone.
    """
    return [_rotate_column(services, column) for column in encrypted_columns()]


def _rotate_column(services: Services, column: Column[Any]) -> ColumnReport:
    report = ColumnReport(_name(column))
    after = None
    while True:
        with services.db.engine.begin() as connection:
            rows = _rows(connection, column, after)
            for key, owner, ciphertext in rows:
                if _classify(services.cipher, report, owner, ciphertext) == "older":
                    _store(connection, column, key, ciphertext, services.cipher.rotate(ciphertext))
        if not rows:
            return report
        after = rows[-1][0]


def undecryptable_summary(reports: list[ColumnReport], *, limit: int = 5) -> str | None:
    """One line naming the columns and stores with undecryptable values, or None if none."""
    parts = []
    for report in reports:
        if report.undecryptable:
            shown = ", ".join(report.stores[:limit])
            more = f" and {len(report.stores) - limit} more" if len(report.stores) > limit else ""
            parts.append(f"{report.column} ({report.undecryptable}; stores {shown}{more})")
    return "; ".join(parts) or None


def _classify(cipher: TokenCipher, report: ColumnReport, owner: str, ciphertext: str) -> str:
    """Count the value under the key that wrote it; returns which counter it went to."""
    if cipher.is_current(ciphertext):
        report.current += 1
        return "current"
    if cipher.is_readable(ciphertext):
        report.older += 1
        return "older"
    report.undecryptable += 1
    if owner not in report.stores:
        report.stores.append(owner)
    return "undecryptable"


def _store(connection: Connection, column: Column[Any], key: object, old: str, new: str) -> None:
    """Write the re-encrypted value unless the row changed since it was read."""
    table = column.table
    [primary] = table.primary_key.columns
    connection.execute(
        update(table).where(primary == key, column == old).values({column.name: new})
    )


def _batches(connection: Connection, column: Column[Any]) -> Iterator[list[tuple[Any, str, str]]]:
    """The column's non-null values, in primary key order, a batch at a time."""
    after = None
    while rows := _rows(connection, column, after):
        yield rows
        after = rows[-1][0]


def _rows(connection: Connection, column: Column[Any], after: object) -> list[tuple[Any, str, str]]:
    """(primary key, owning store, ciphertext) of the next batch after the key ``after``."""
    table = column.table
    [primary] = table.primary_key.columns
    query = select(primary, _owner(table), column).where(column.is_not(None)).order_by(primary)
    if after is not None:
        query = query.where(primary > after)
    limit = LARGE_BATCH_ROWS if _large(column) else BATCH_ROWS
    return [tuple(row) for row in connection.execute(query.limit(limit))]


def _sample(connection: Connection, column: Column[Any]) -> list[tuple[Any, str, str]]:
    """The oldest and the newest value of a column (by primary key)."""
    table = column.table
    [primary] = table.primary_key.columns
    rows = {}
    for order in (primary.asc(), primary.desc()):
        query = select(primary, _owner(table), column).where(column.is_not(None))
        for row in connection.execute(query.order_by(order).limit(1)):
            rows[row[0]] = tuple(row)
    return list(rows.values())


def _owner(table: Table) -> Column[Any]:
    """The column naming the store a row belongs to (a store's own id in ``stores``)."""
    return table.c.store_id if "store_id" in table.c else table.c.id


def _large(column: Column[Any]) -> bool:
    return _name(column) in LARGE_COLUMNS


def _name(column: Column[Any]) -> str:
    return f"{column.table.name}.{column.name}"


def startup_refusal(services: Services) -> str | None:
    """Why a web or worker process must not start, in one line, or None.

    Undecryptable stored secrets mean a SECRET_KEY changed without its predecessor in
    SECRET_KEY_FALLBACKS: every webhook of those stores would be answered 503 and every
    delivery fail, so the process refuses to start with the fix instead. A database that
    cannot be read (down, or not migrated yet) is not this check's business: the process
    starts and reports the database the usual way.
    """
    try:
        reports = check_secrets(services, quick=True)
    except SQLAlchemyError as exc:
        logger.warning("secrets.check-skipped error=%s", type(exc).__name__)
        return None
    if (summary := undecryptable_summary(reports)) is None:
        return None
    return (
        "stored secrets do not decrypt with SECRET_KEY, TOKEN_ENCRYPTION_KEY or "
        f"SECRET_KEY_FALLBACKS: {summary}. Put the key they were written with in "
        "SECRET_KEY_FALLBACKS, or enter those secrets again (`connector secrets check` lists "
        "them)"
    )
