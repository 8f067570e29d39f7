"""Delivery engine: bounces, the shared send-rate counters, an edition/status index

The new delivery states (retry, bounced) need no DDL: states are short strings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum("hard", "soft", name="bouncekind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("code", sa.SmallInteger(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_bounces_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
        sa.UniqueConstraint("delivery_id", "kind", name=op.f("uq_bounces_delivery_id")),
    )
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounces_delivery_id"), ["delivery_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bounces_email"), ["email"], unique=False)
    op.create_table(
        "send_rate",
        sa.Column("scope", sa.String(length=1), nullable=False),
        sa.Column("bucket", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "bucket", name=op.f("pk_send_rate")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_edition_id_status", ["edition_id", "status"], unique=False
        )
        batch_op.create_index("ix_deliveries_message_id", ["message_id"], unique=False)


def downgrade() -> None:
    # Deliveries in the new states go back to the nearest old one.
    op.execute("UPDATE deliveries SET status = 'pending' WHERE status = 'retry'")
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'bounced'")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_message_id")
        batch_op.drop_index("ix_deliveries_edition_id_status")
    op.drop_table("send_rate")
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bounces_email"))
        batch_op.drop_index(batch_op.f("ix_bounces_delivery_id"))
    op.drop_table("bounces")
