"""the delivery queue: pending outbox rows found in a narrow table of their own

``pending_events`` holds one row per pending outbox row (its id, store, destination and next
attempt), indexed for the claim; ``events`` loses the two indexes that named ``status`` and
``next_attempt_at``. Recording a delivery then changes no indexed column of ``events``, and
PostgreSQL writes the new row version as a heap-only tuple (HOT) in the same page, without an
entry in any index, when the page has room: the table now keeps 20% of each page free
(fillfactor 80) for them. A delivered version is small (its ``wire`` and ``network`` are
emptied, its payload is a pointer out of line), so a page's rows all fit again in that room.
Measured with the claim and the outcome alone (500 events a batch, bench/README.md): 28 us of
PostgreSQL CPU per delivered event before, 11 to 15 us with the queue, every outcome a
heap-only update; the table 11% larger per event, its indexes 55% smaller, 5% more in all
(fillfactor 70 took no less CPU and 21% more room; 100 left almost no update heap-only).
HOT: https://www.postgresql.org/docs/15/storage-hot.html

Triggers put a row in the queue, on both databases: on the insert of a pending event, and on
an UPDATE that makes an event pending or moves its next attempt (a retry, a replay, an
operator's hand). Whoever writes ``events``, a pending event is never missing from the
queue, so never left unsent. Delivery deletes the queue rows of events it finishes, in the
transaction that records them: a trigger doing it would run once per delivered row.

SQLite: ``batch_alter_table`` on ``events`` rebuilds the table and drops its triggers. A
later migration that batch-alters ``events`` must create them again (``create_triggers``);
``tests/connector/test_delivery_queue.py`` fails when they are missing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The events that enter the queue, and when (the same condition on both databases).
ENTERS_ON_UPDATE = (
    "NEW.status = 'pending' AND (OLD.status IS DISTINCT FROM NEW.status "
    "OR OLD.next_attempt_at IS DISTINCT FROM NEW.next_attempt_at)"
)

POSTGRESQL_TRIGGERS = (
    """
    CREATE OR REPLACE FUNCTION events_enter_queue() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO pending_events (event_id, store_id, destination, next_attempt_at)
        VALUES (NEW.id, NEW.store_id, NEW.destination, NEW.next_attempt_at)
        ON CONFLICT (event_id) DO UPDATE SET next_attempt_at = EXCLUDED.next_attempt_at;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER events_enter_queue_on_insert AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION events_enter_queue()
    """,
    f"""
    CREATE TRIGGER events_enter_queue_on_update
    AFTER UPDATE OF status, next_attempt_at ON events
    FOR EACH ROW WHEN ({ENTERS_ON_UPDATE}) EXECUTE FUNCTION events_enter_queue()
    """,
)
SQLITE_ENTER = (
    "INSERT OR REPLACE INTO pending_events (event_id, store_id, destination, next_attempt_at) "
    "VALUES (NEW.id, NEW.store_id, NEW.destination, NEW.next_attempt_at)"
)
SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER events_enter_queue_on_insert AFTER INSERT ON events
    FOR EACH ROW WHEN NEW.status = 'pending' BEGIN {SQLITE_ENTER}; END
    """,
    f"""
    CREATE TRIGGER events_enter_queue_on_update
    AFTER UPDATE OF status, next_attempt_at ON events
    FOR EACH ROW WHEN {ENTERS_ON_UPDATE.replace("IS DISTINCT FROM", "IS NOT")}
    BEGIN {SQLITE_ENTER}; END
    """,
)


def upgrade() -> None:
    op.create_table(
        "pending_events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_pending_events_claim",
        "pending_events",
        ["store_id", "destination", "next_attempt_at"],
    )
    op.execute(
        "INSERT INTO pending_events (event_id, store_id, destination, next_attempt_at) "
        "SELECT id, store_id, destination, next_attempt_at FROM events WHERE status = 'pending'"
    )
    create_triggers()
    op.drop_index("ix_events_claim", table_name="events")
    op.drop_index("ix_events_status", table_name="events")
    if op.get_bind().dialect.name == "postgresql":
        # Room in each page for the row versions outcomes write (new pages; existing pages
        # gain it as VACUUM frees them). https://www.postgresql.org/docs/15/sql-createtable.html
        op.execute("ALTER TABLE events SET (fillfactor = 80)")


def create_triggers() -> None:
    """The triggers that put pending events in the queue, for this database."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events RESET (fillfactor)")
        op.execute("DROP TRIGGER events_enter_queue_on_update ON events")
        op.execute("DROP TRIGGER events_enter_queue_on_insert ON events")
        op.execute("DROP FUNCTION events_enter_queue()")
    else:
        op.execute("DROP TRIGGER events_enter_queue_on_update")
        op.execute("DROP TRIGGER events_enter_queue_on_insert")
    op.create_index("ix_events_status", "events", ["status", "next_attempt_at"])
    op.create_index(
        "ix_events_claim", "events", ["store_id", "destination", "status", "next_attempt_at"]
    )
    op.drop_index("ix_pending_events_claim", table_name="pending_events")
    op.drop_table("pending_events")
