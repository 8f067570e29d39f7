"""Relay errors (a relay that is down or refusing) and operators' actions on
subscribers (issue 15)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "relay_errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.SmallInteger(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_errors")),
    )
    op.create_index(
        op.f("ix_relay_errors_created_at"), "relay_errors", ["created_at"], unique=False
    )
    op.create_table(
        "admin_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_actions")),
    )
    op.create_index(op.f("ix_admin_actions_email"), "admin_actions", ["email"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_admin_actions_email"), table_name="admin_actions")
    op.drop_table("admin_actions")
    op.drop_index(op.f("ix_relay_errors_created_at"), table_name="relay_errors")
    op.drop_table("relay_errors")
