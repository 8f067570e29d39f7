"""Papers and their sentence embeddings."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Date,
    ForeignKey,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.models.base import (
    Base,
    utcnow,
)


class Paper(Base):
    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)  # arXiv id, no version
    version: Mapped[int | None] = mapped_column(SmallInteger)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    # ACM / MSC classification codes that arrive mixed into arXiv's categories.
    class_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    url: Mapped[str] = mapped_column(String(500))
    pdf_url: Mapped[str | None] = mapped_column(String(500))
    comment: Mapped[str | None] = mapped_column(Text)
    # First listing date: what "new" means for an edition. A re-listing keeps it.
    listed_on: Mapped[date] = mapped_column(Date, index=True)
    # Listing date of the record whose content we hold (decides "newest wins").
    content_listed_on: Mapped[date] = mapped_column(Date)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaperEmbedding(Base):
    """A paper's sentence embedding (float16 bytes) under one model version (the semantic extra).

    Computed once at ingest; a new model version adds rows beside the old ones.
    """

    __tablename__ = "paper_embeddings"

    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
