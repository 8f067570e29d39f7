"""Subscriber weekday (the day a weekly issue goes out) and delivery due time (run as a service, issue 6)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("send_weekday", sa.SmallInteger(), nullable=False, server_default="0")
        )
        batch_op.create_check_constraint(
            op.f("ck_subscribers_send_weekday_range"), "send_weekday >= 0 AND send_weekday <= 6"
        )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("due_at")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_subscribers_send_weekday_range"), type_="check")
        batch_op.drop_column("send_weekday")
