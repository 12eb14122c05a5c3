"""proof and consent: pixel receipts, the shopper's consent, the store's consent policy

``pixel_receipts`` keeps what the storefront's browser pixel did for a purchase; click records
gain the consent the storefront reported; events record the consent applied, the shopper's
browser family and device, and their value and currency (the ledger sums them without reading
the JSON payload); stores gain their consent policy (existing stores get the default,
"respect" with unknown consent sent, which sends what they sent before: no consent was known).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CONSENT_COLUMNS = ("consent_marketing", "consent_analytics", "consent_sale_of_data")
EVENT_COLUMNS = (
    ("consent", 16),
    ("consent_source", 32),
    ("browser", 32),
    ("device", 16),
    ("currency", 16),
)


def upgrade() -> None:
    op.create_table(
        "pixel_receipts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "store_id",
            sa.String(32),
            sa.ForeignKey("stores.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("pixel", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("store_id", "pixel", "event_id", name="uq_pixel_receipts_event"),
    )
    op.create_index("ix_pixel_receipts_received_at", "pixel_receipts", ["received_at"])
    with op.batch_alter_table("click_records") as batch:
        for column in CONSENT_COLUMNS:
            batch.add_column(sa.Column(column, sa.Boolean(), nullable=True))
    with op.batch_alter_table("events") as batch:
        for column, length in EVENT_COLUMNS:
            batch.add_column(sa.Column(column, sa.String(length), nullable=True))
        batch.add_column(sa.Column("value", sa.Float(), nullable=True))
    with op.batch_alter_table("stores") as batch:
        batch.add_column(
            sa.Column("consent_policy", sa.String(16), nullable=False, server_default="respect")
        )
        batch.add_column(
            sa.Column("consent_unknown", sa.String(8), nullable=False, server_default="send")
        )


def downgrade() -> None:
    with op.batch_alter_table("stores") as batch:
        batch.drop_column("consent_unknown")
        batch.drop_column("consent_policy")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("value")
        for column, _length in reversed(EVENT_COLUMNS):
            batch.drop_column(column)
    with op.batch_alter_table("click_records") as batch:
        for column in reversed(CONSENT_COLUMNS):
            batch.drop_column(column)
    op.drop_index("ix_pixel_receipts_received_at", table_name="pixel_receipts")
    op.drop_table("pixel_receipts")
