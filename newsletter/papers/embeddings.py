"""Stored paper embeddings: computed once at ingest, read back for planning.

Vectors live in the ``paper_embeddings`` table, float16 bytes keyed by (paper id,
model version): they commit and roll back with the papers they describe, work the
same on SQLite and PostgreSQL, vanish with their paper (ON DELETE CASCADE), and a
new model version simply adds rows beside the old ones. At 768 bytes a paper, a
year of arXiv (~250,000 papers) is under 200 MB.

Nothing here imports torch: ``recommender.semantic.load_encoder`` does, and only
when a vector actually has to be computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from newsletter.errors import ConfigError
from newsletter.models import Paper, PaperEmbedding
from newsletter.progress import ProgressHook
from recommender import Document, semantic

_CHUNK = 500


def semantic_enabled(setting: bool | None) -> bool:
    """Resolve the ``semantic`` setting: None means "when the extra is installed"."""
    if setting is None:
        return semantic.available()
    if setting and not semantic.available():
        raise ConfigError(
            "semantic = true needs the extra: pip install torch==2.13.0, "
            "then pip install '.[semantic]'"
        )
    return setting


def stored_vectors(
    session: Session, paper_ids: Sequence[int], *, version: str = semantic.MODEL_VERSION
) -> dict[int, bytes]:
    """The stored vectors of ``paper_ids`` under ``version`` (missing ones left out)."""
    found: dict[int, bytes] = {}
    ids = list(paper_ids)
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(PaperEmbedding.paper_id, PaperEmbedding.vector).where(
                PaperEmbedding.model == version,
                PaperEmbedding.paper_id.in_(ids[start : start + _CHUNK]),
            )
        )
        found.update((paper_id, vector) for paper_id, vector in rows)
    return found


def embed_papers(
    session: Session,
    papers: Sequence[Paper],
    *,
    encoder: semantic.Encoder | None = None,
    progress: ProgressHook | None = None,
) -> int:
    """Compute and store the vectors ``papers`` lack under the current model; return how many.

    The caller owns the transaction. Papers that already have one are not recomputed.
    """
    session.flush()
    version = encoder.version if encoder is not None else semantic.MODEL_VERSION
    have = stored_vectors(session, [p.id for p in papers], version=version)
    missing = list({p.id: p for p in papers if p.id not in have}.values())
    if not missing:
        return 0
    encoder = encoder or semantic.load_encoder()
    vectors = encoder.encode_documents(
        [Document(p.title, p.abstract) for p in missing],
        progress=None if progress is None else _advances(progress),
    )
    session.execute(
        insert(PaperEmbedding),
        [
            {"paper_id": p.id, "model": encoder.version, "vector": semantic.to_bytes(v)}
            for p, v in zip(missing, vectors, strict=True)
        ],
    )
    return len(missing)


def _advances(hook: ProgressHook) -> Callable[[int, int], None]:
    """The encoder reports (done so far, total); a ``ProgressHook`` takes (advance, total)."""
    reported = 0

    def on_batch(done: int, total: int) -> None:
        nonlocal reported
        hook(done - reported, total)
        reported = done

    return on_batch


def backfill(
    sessions: Callable[[], Session],
    *,
    since: date | None = None,
    batch: int = 256,
    progress: ProgressHook | None = None,
) -> int:
    """Embed the stored papers that have no vector under the current model (papers
    ingested before the extra was installed, or under an older model), newest first,
    one transaction per ``batch``: an interrupted backfill keeps what it did and the
    next one carries on. ``since`` limits it to papers listed on or after that day.
    Returns how many papers were embedded."""
    if not semantic.available():
        raise ConfigError(
            "embedding papers needs the semantic extra: pip install torch==2.13.0, "
            "then pip install '.[semantic]'"
        )
    has_vector = (
        select(PaperEmbedding.paper_id)
        .where(PaperEmbedding.paper_id == Paper.id, PaperEmbedding.model == semantic.MODEL_VERSION)
        .exists()
    )
    missing = select(Paper).where(~has_vector)
    if since is not None:
        missing = missing.where(Paper.listed_on >= since)
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(missing.subquery())) or 0
    if progress is not None:
        progress(0, total)
    done = 0
    encoder = semantic.load_encoder() if total else None
    while done < total:
        with sessions() as session, session.begin():
            papers = session.scalars(
                missing.order_by(Paper.listed_on.desc(), Paper.id.desc()).limit(batch)
            ).all()
            if not papers:
                break
            embedded = embed_papers(session, papers, encoder=encoder)
        done += embedded
        if progress is not None:
            progress(embedded, total)
        if embedded == 0:  # nothing missing any more (another process filled them in)
            break
    return done


def embed_ingested(
    session: Session, external_ids: Sequence[str], *, progress: ProgressHook | None = None
) -> int:
    """The ingest hook: embed the papers just upserted that have no vector yet."""
    papers: list[Paper] = []
    ids = list(dict.fromkeys(external_ids))
    for start in range(0, len(ids), _CHUNK):
        papers.extend(
            session.scalars(select(Paper).where(Paper.external_id.in_(ids[start : start + _CHUNK])))
        )
    return embed_papers(session, papers, progress=progress)


def forget_vectors(session: Session, paper_ids: Sequence[int]) -> None:
    """Drop the vectors of papers whose text changed, so they are computed afresh."""
    ids = list(paper_ids)
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            delete(PaperEmbedding).where(PaperEmbedding.paper_id.in_(ids[start : start + _CHUNK]))
        )


def paper_matrix(session: Session, papers: Sequence[Paper]) -> npt.NDArray[np.float32]:
    """The papers' vectors as float32 rows in their order, computing any that are missing."""
    embed_papers(session, papers)
    stored = stored_vectors(session, [p.id for p in papers])
    return semantic.from_bytes([stored[p.id] for p in papers])
