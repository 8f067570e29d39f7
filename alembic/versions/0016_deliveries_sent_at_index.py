"""An index on deliveries.sent_at: the operators' views at scale (issue 14)

``newsletter status``, the dashboard and /metrics ask when an issue was last sent, how
many went out today and how late those of the last 24 hours were. Without an index
each of those read the whole outbox, which grows by a million rows a day for a million
subscribers (7M rows: 0.25 s for the last send alone). Building it takes a few seconds
per ten million deliveries, while writes to deliveries wait: upgrade between sends.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_deliveries_sent_at", "deliveries", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_sent_at", table_name="deliveries")
