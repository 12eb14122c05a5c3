"""merchant sessions kept server-side, so logout and an uninstall end them

The merchant pages' cookie now holds a random id; this table keeps its SHA-256, the store,
and the times that end it (absolute lifetime, idle timeout).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchant_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column(
            "store_id",
            sa.String(32),
            sa.ForeignKey("stores.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_merchant_sessions_store_id", "merchant_sessions", ["store_id"])


def downgrade() -> None:
    op.drop_index("ix_merchant_sessions_store_id", table_name="merchant_sessions")
    op.drop_table("merchant_sessions")
