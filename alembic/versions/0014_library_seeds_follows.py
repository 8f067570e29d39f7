"""A reader's library as seeds, its imports, and followed authors (issue 16)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "library_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_library_imports_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_imports")),
    )
    op.create_index(op.f("ix_library_imports_subscriber_id"), "library_imports", ["subscriber_id"])
    op.create_index(op.f("ix_library_imports_status"), "library_imports", ["status"])
    op.create_table(
        "library_seeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=True),
        sa.Column("arxiv_id", sa.String(length=64), nullable=True),
        sa.Column("doi", sa.String(length=255), nullable=True),
        sa.Column("title_key", sa.String(length=300), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("abstract", sa.Text(), nullable=False),
        sa.Column("authors", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_library_seeds_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_library_seeds_paper_id_papers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_seeds")),
    )
    op.create_index(op.f("ix_library_seeds_subscriber_id"), "library_seeds", ["subscriber_id"])
    op.create_index(op.f("ix_library_seeds_paper_id"), "library_seeds", ["paper_id"])
    op.create_index(op.f("ix_library_seeds_doi"), "library_seeds", ["doi"])
    op.create_table(
        "followed_authors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_followed_authors_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followed_authors")),
        sa.UniqueConstraint("subscriber_id", "key", name=op.f("uq_followed_authors_subscriber_id")),
    )
    op.create_index(
        op.f("ix_followed_authors_subscriber_id"), "followed_authors", ["subscriber_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_followed_authors_subscriber_id"), table_name="followed_authors")
    op.drop_table("followed_authors")
    for column in ("doi", "paper_id", "subscriber_id"):
        op.drop_index(op.f(f"ix_library_seeds_{column}"), table_name="library_seeds")
    op.drop_table("library_seeds")
    op.drop_index(op.f("ix_library_imports_status"), table_name="library_imports")
    op.drop_index(op.f("ix_library_imports_subscriber_id"), table_name="library_imports")
    op.drop_table("library_imports")
