"""destinations as plugins: a neutral account id and per-destination settings

The TikTok-named ``pixel_code`` becomes ``account_id`` (what events are sent to, whatever the
platform calls it), ``settings`` holds a destination's other non-secret fields, and the access
token may be absent until a refresh token makes one. Click records keep Meta's and Google's
click ids and cookies beside TikTok's. Attempts keep what a platform reports later about a
request it accepted (Google's request status).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CLICK_COLUMNS = ("fbc", "fbp", "gclid", "gbraid", "wbraid")


def upgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.alter_column(
            "pixel_code",
            new_column_name="account_id",
            existing_type=sa.String(64),
            existing_nullable=False,
        )
        batch.add_column(sa.Column("settings", sa.JSON(), nullable=True))
        # Google's access tokens are made from its refresh token, after the row exists.
        batch.alter_column("access_token_encrypted", existing_type=sa.Text(), nullable=True)
    with op.batch_alter_table("click_records") as batch:
        for column in CLICK_COLUMNS:
            batch.add_column(sa.Column(column, sa.Text(), nullable=True))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("follow_up", sa.Text(), nullable=True))
        batch.add_column(sa.Column("followed_up_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("follow_up_done", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        for column in ("follow_up_done", "followed_up_at", "follow_up"):
            batch.drop_column(column)
    with op.batch_alter_table("click_records") as batch:
        for column in CLICK_COLUMNS:
            batch.drop_column(column)
    with op.batch_alter_table("destinations") as batch:
        batch.drop_column("settings")
        batch.alter_column("access_token_encrypted", existing_type=sa.Text(), nullable=False)
        batch.alter_column(
            "account_id",
            new_column_name="pixel_code",
            existing_type=sa.String(64),
            existing_nullable=False,
        )
