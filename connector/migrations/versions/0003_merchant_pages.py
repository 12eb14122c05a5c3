"""merchant pages: signal mask for diagnostics, TikTok OAuth grants, storefront domains

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 05:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# connector.signals.SIGNALS at the time of writing; a migration never imports app code.
SIGNALS = ("ttclid", "email", "phone", "external_id", "ip", "user_agent", "ttp")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("signals", sa.Integer(), nullable=True))
    op.create_index("ix_events_store_received", "events", ["store_id", "received_at"])
    with op.batch_alter_table("destinations") as batch:
        batch.add_column(sa.Column("refresh_token_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("token_expires_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("refresh_expires_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("advertiser_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("stores") as batch:
        batch.add_column(sa.Column("storefront_domains", sa.JSON(), nullable=True))
    _backfill_signals()


def _backfill_signals() -> None:
    """Existing rows get their mask from the stored payload, so diagnostics cover them."""
    events = sa.table(
        "events", sa.column("id", sa.Integer), sa.column("payload", sa.JSON), sa.column("signals")
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(events.c.id, events.c.payload)).all()
    for row_id, payload in rows:
        user = (payload or {}).get("user") or {}
        mask = sum(1 << bit for bit, name in enumerate(SIGNALS) if user.get(name))
        connection.execute(sa.update(events).where(events.c.id == row_id).values(signals=mask))


def downgrade() -> None:
    with op.batch_alter_table("stores") as batch:
        batch.drop_column("storefront_domains")
    with op.batch_alter_table("destinations") as batch:
        batch.drop_column("advertiser_id")
        batch.drop_column("refresh_expires_at")
        batch.drop_column("token_expires_at")
        batch.drop_column("refresh_token_encrypted")
    op.drop_index("ix_events_store_received", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("signals")
