"""Every value the connector keeps encrypted, checked, re-encrypted or forgotten as a whole.

The columns are every ``*_encrypted`` column of the schema (:mod:`connector.models`): store
webhook secrets and API keys, destination tokens, Shopify tokens, kept unreadable webhook
bodies. They are found from the metadata, so a column added later is covered without a list
to keep up to date.

``connector web``, ``worker`` and ``run`` check a sample before they start
(:func:`startup_refusal`: a changed SECRET_KEY must not look like a working connector that
answers every webhook 503); ``connector secrets check`` checks every value, and ``connector
secrets rotate`` (:func:`rotate_secrets`) moves them all to the current key, after which the
old key can leave SECRET_KEY_FALLBACKS; ``connector secrets forget`` is for a key lost for
good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Executable,
    Table,
    Update,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from connector.crypto import CURRENT, FALLBACK, TokenCipher
from connector.models import Base
from connector.services import Services

logger = logging.getLogger(__name__)

ENCRYPTED_SUFFIX = "_encrypted"
BATCH_ROWS = 500
# The start-up check reads about this many values of a column, spread evenly over its primary
# key (time order for numbered rows, random order for store ids): a key missing from
# SECRET_KEY_FALLBACKS wrote everything of its time, which such a sample meets, and the check
# stays near 0.1 s whatever the number of stores (each value costs about 10 us, so all the
# secrets of 10,000 stores would take 0.4-1 s).
SAMPLE_VALUES = 1000
# Kept webhook bodies are up to a megabyte each, and a broken parser can keep many: they are
# read a few at a time, and the start-up check reads only the oldest, one between and the
# newest.
LARGE_COLUMNS = frozenset({"unreadable_webhooks.body_encrypted"})
# Columns that may be empty in the schema but whose row means nothing once a lost key made
# their value unreadable: a destination with a token no key reads is deleted by ``forget``
# (and entered again), not kept with no token (a Google destination has none until its
# refresh token makes one, hence the nullable column).
FORGET_DELETES_ROW = frozenset({"destinations.access_token_encrypted"})
LARGE_BATCH_ROWS = 10
LARGE_SAMPLE_VALUES = 3


@dataclass
class ColumnReport:
    """What one encrypted column holds, by the key that wrote each value."""

    column: str
    current: int = 0  # written with the current key
    fallback: int = 0  # written with a fallback key (rotate: re-encrypted with the current one)
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


def check_secrets(services: Services, *, sample: int | None = None) -> list[ColumnReport]:
    """Which stored values the configured keys can read: every one, or about ``sample`` of
    each column, spread from its oldest to its newest; writes nothing. Only signatures are
    checked, nothing is decrypted."""
    reports = []
    with services.db.engine.connect() as connection:
        for column in encrypted_columns():
            report = ColumnReport(_name(column))
            batches = (
                [_spread(connection, column, sample)] if sample else _batches(connection, column)
            )
            for batch in batches:
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

    def rotated(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "new": services.cipher.rotate(row["old"])}

    return [
        _change_column(services, column, FALLBACK, _rewrite(column), rotated)
        for column in encrypted_columns()
    ]


def forget_undecryptable(services: Services) -> list[ColumnReport]:
    """Remove what no configured key decrypts: the way out when a key is lost for good.

    A column that may be empty is emptied (a store's webhook secret or API keys); a row that
    means nothing without its value is deleted (a destination and its delivery log, a
    Shopify token, a kept webhook body). The processes can then start, and each store named
    in the report needs its secret, keys or token entered again. Values a configured key
    reads are never touched.
    """
    return [
        _change_column(services, column, None, _forget(column)) for column in encrypted_columns()
    ]


def _change_column(
    services: Services,
    column: Column[Any],
    written_with: str | None,
    statement: Executable,
    parameters: Callable[[dict[str, Any]], dict[str, Any]] = dict,
) -> ColumnReport:
    """Run ``statement`` for each value of the column that the key ``written_with``
    (CURRENT, FALLBACK, or None: no key) wrote, with ``parameters`` of ``{"row": primary
    key, "old": value}``; counts every value, one transaction per batch."""
    report = ColumnReport(_name(column))
    after = None
    while True:
        with services.db.engine.begin() as connection:
            rows = _rows(connection, column, after)
            chosen = [
                parameters({"row": key, "old": ciphertext})
                for key, owner, ciphertext in rows
                if _classify(services.cipher, report, owner, ciphertext) == written_with
            ]
            if chosen:
                connection.execute(statement, chosen)
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


def _classify(cipher: TokenCipher, report: ColumnReport, owner: str, ciphertext: str) -> str | None:
    """Count the value under the key that wrote it (:meth:`TokenCipher.key_of`), returned."""
    written_with = cipher.key_of(ciphertext)
    if written_with == CURRENT:
        report.current += 1
    elif written_with == FALLBACK:
        report.fallback += 1
    else:
        report.undecryptable += 1
        if owner not in report.stores:
            report.stores.append(owner)
    return written_with


def _forget(column: Column[Any]) -> Executable:
    """Empty the value, or delete its row when the column cannot be empty; unless the row
    changed since it was read."""
    [primary] = column.table.primary_key.columns
    unchanged = (primary == bindparam("row"), column == bindparam("old"))
    if column.nullable and _name(column) not in FORGET_DELETES_ROW:
        return update(column.table).where(*unchanged).values({column.name: None})
    return delete(column.table).where(*unchanged)


def _rewrite(column: Column[Any]) -> Update:
    """The update of one re-encrypted value (run for a whole batch at once), which leaves a
    row that changed since it was read as it is."""
    [primary] = column.table.primary_key.columns
    return (
        update(column.table)
        .where(primary == bindparam("row"), column == bindparam("old"))
        .values({column.name: bindparam("new")})
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


def _spread(connection: Connection, column: Column[Any], size: int) -> list[tuple[Any, str, str]]:
    """Every value of a small column; of a larger one, ``size`` values spread evenly over its
    primary key, from the oldest to the newest."""
    table = column.table
    [primary] = table.primary_key.columns
    size = min(size, LARGE_SAMPLE_VALUES) if _large(column) else size
    present = column.is_not(None)
    count = connection.scalar(select(func.count()).select_from(table).where(present)) or 0
    step = max(1, -(-count // size))  # ceil: at most ``size`` picks, plus the newest
    numbered = (
        select(primary.label("key"), func.row_number().over(order_by=primary).label("n"))
        .where(present)
        .subquery()
    )
    picked = select(numbered.c.key).where(
        or_((numbered.c.n - 1) % step == 0, numbered.c.n == count)
    )
    query = select(primary, _owner(table), column).where(primary.in_(picked))
    return [tuple(row) for row in connection.execute(query)]


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
        reports = check_secrets(services, sample=SAMPLE_VALUES)
    except SQLAlchemyError as exc:
        logger.warning("secrets.check-skipped error=%s", type(exc).__name__)
        return None
    if (summary := undecryptable_summary(reports)) is None:
        return None
    return (
        "stored secrets do not decrypt with SECRET_KEY, TOKEN_ENCRYPTION_KEY or "
        f"SECRET_KEY_FALLBACKS: {summary}. Put the key they were written with in "
        "SECRET_KEY_FALLBACKS; if it is lost for good, `connector secrets forget --yes` removes "
        "them, and those stores need their secrets entered again"
    )
