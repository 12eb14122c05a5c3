"""the shopper's IP address and user agent in a column of their own; events stored as sent

An outbox row keeps its event as its destination sends it, encoded, in ``events.wire``
(``Destination.event_element``): a worker joins the stored elements into a request instead of
parsing, rebuilding and encoding every event, a third of its CPU. It holds the IP and user
agent too, so it is emptied when ``network`` is (below). Rows recorded before this revision
have none and are rebuilt from their payload when sent.

An outbox row keeps the shopper's IP and user agent (under its destination's keys) in
``events.network`` instead of in the payload's user data. Delivery sets the column to NULL
in the UPDATE that records the delivery, which costs the database nothing more than the
update itself; dropping two keys out of the JSON payload there cost PostgreSQL 16 us of CPU
per delivered event (parsing the payload into ``jsonb`` and back), 40% of its share of a
delivery.

Rows recorded before this revision that still hold them (pending, failed, dead or skipped
events: delivered ones were scrubbed when delivered) have them moved into the column.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 17:30:00
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Every destination's IP and user-agent keys as of this revision (TikTok ip/user_agent, Meta
# client_ip_address/client_user_agent, Google ip/user_agent): a migration must not change
# with the code that runs after it.
NETWORK_KEYS = ("ip", "user_agent", "client_ip_address", "client_user_agent")
CHUNK = 1000

events = sa.table(
    "events",
    sa.column("id", sa.BigInteger),
    sa.column("status", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("network", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("network", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("wire", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # With the event as sent beside its payload, a row outgrows PostgreSQL's 2 KB toast
        # target. The payload (which delivery no longer reads) goes out of line, uncompressed
        # (EXTERNAL), and the event as sent stays in the row, compressed only if the row is
        # still too big (MAIN): the claim reads the row alone, and the UPDATE recording a
        # delivery writes a new row version holding a pointer to the payload instead of a copy
        # of it. Measured against keeping both inline: 16-17,000 -> 20-22,800 events/s per
        # worker, and no slower a webhook (bench/README.md). Storage strategies:
        # https://www.postgresql.org/docs/15/storage-toast.html
        op.execute("ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTERNAL")
        op.execute("ALTER TABLE events ALTER COLUMN wire SET STORAGE MAIN")
    _move_network_signals(op.get_bind())


def _move_network_signals(connection: sa.Connection) -> None:
    """Move the keys out of every payload still holding one, a chunk at a time by id."""
    as_text = sa.cast(events.c.payload, sa.Text)
    may_hold = sa.or_(*(as_text.contains(f'"{key}"') for key in NETWORK_KEYS))
    after = 0
    while True:
        rows = connection.execute(
            sa.select(events.c.id, events.c.payload)
            .where(may_hold, events.c.status != "delivered", events.c.id > after)
            .order_by(events.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        changes = [change for row in rows if (change := _split(row.id, row.payload))]
        if changes:
            connection.execute(
                events.update()
                .where(events.c.id == sa.bindparam("moved_id"))
                .values(payload=sa.bindparam("kept"), network=sa.bindparam("moved")),
                changes,
            )
        after = rows[-1].id


def _split(id_: int, payload: Any) -> dict[str, Any] | None:
    if isinstance(payload, str):
        payload = json.loads(payload)
    user = payload.get("user") if isinstance(payload, dict) else None
    if not isinstance(user, dict) or not any(key in user for key in NETWORK_KEYS):
        return None
    moved = {key: user[key] for key in NETWORK_KEYS if key in user}
    kept = {key: value for key, value in user.items() if key not in moved}
    return {"moved_id": id_, "kept": {**payload, "user": kept}, "moved": moved}


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(events.c.id, events.c.payload, events.c.network).where(
            events.c.network.is_not(None)
        )
    ).all()
    for row in rows:
        payload = json.loads(row.payload) if isinstance(row.payload, str) else row.payload
        network = json.loads(row.network) if isinstance(row.network, str) else row.network
        if isinstance(payload, dict) and isinstance(network, dict):
            payload = {**payload, "user": {**payload.get("user", {}), **network}}
            connection.execute(events.update().where(events.c.id == row.id).values(payload=payload))
    if connection.dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTENDED")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("wire")
        batch.drop_column("network")
