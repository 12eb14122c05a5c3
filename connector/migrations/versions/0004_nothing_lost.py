"""nothing lost: unreadable webhooks kept, event source and parse notes, reconciliation
checkpoints, each store's recorded webhook address

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "unreadable_webhooks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "store_id",
            sa.String(32),
            sa.ForeignKey("stores.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body_encrypted", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("reprocessed_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("store_id", "body_sha256", name="uq_unreadable_webhooks_body"),
    )
    op.create_index(
        "ix_unreadable_webhooks_store_received",
        "unreadable_webhooks",
        ["store_id", "received_at"],
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("parse_notes", sa.Text(), nullable=True))
    with op.batch_alter_table("stores") as batch:
        batch.add_column(sa.Column("webhook_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reconciled_until", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reconciled_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reconcile_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stores") as batch:
        batch.drop_column("reconcile_error")
        batch.drop_column("reconciled_at")
        batch.drop_column("reconciled_until")
        batch.drop_column("webhook_url")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("parse_notes")
        batch.drop_column("source")
    op.drop_index("ix_unreadable_webhooks_store_received", table_name="unreadable_webhooks")
    op.drop_table("unreadable_webhooks")
