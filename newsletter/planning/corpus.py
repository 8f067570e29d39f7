"""The TF-IDF model an edition ranks with: the stored one, refitted when it is stale.

Without a model directory (``model_dir`` unset) the model is fitted afresh for each
edition on its candidates plus the newest older papers, never on papers listed
after the edition, so replanning a past edition gives the same result. With one,
the fitted model and the vectors of every paper it was fitted on are reused until
the corpus has grown by ``refit_growth``; papers newer than the fit are embedded
with the stored vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import scipy.sparse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import Paper
from newsletter.planning import modelstore
from newsletter.progress import ProgressHook
from recommender import Document, TfidfModel, fit_transform

REFIT_STEPS = 3  # load the papers, fit, store


def _document(paper: Paper) -> Document:
    return Document(paper.title, paper.abstract)


def refit(
    session: Session,
    directory: Path,
    *,
    corpus_limit: int,
    progress: ProgressHook | None = None,
) -> modelstore.StoredModel:
    """Fit on the newest ``corpus_limit`` papers and store model and vectors.

    ``progress`` counts three steps: papers loaded, model fitted, model stored.
    """
    corpus = session.scalars(
        select(Paper).order_by(Paper.listed_on.desc(), Paper.id.desc()).limit(corpus_limit)
    ).all()
    if progress is not None:
        progress(1, REFIT_STEPS)
    model, vectors = fit_transform([_document(p) for p in corpus])
    if progress is not None:
        progress(1, REFIT_STEPS)
    stored = modelstore.save(
        directory,
        model,
        paper_ids=np.array([p.id for p in corpus], dtype=np.int64),
        vectors=vectors,
    )
    if progress is not None:
        progress(1, REFIT_STEPS)
    return stored


@dataclass(frozen=True)
class EditionModel:
    model: TfidfModel
    vectors: scipy.sparse.csr_matrix  # the candidates, in their order
    texts: modelstore.TextCache | None  # interest texts embedded with this model


def model_for_edition(
    session: Session,
    candidates: Sequence[Paper],
    *,
    earliest: date,
    corpus_limit: int,
    model_dir: Path | None,
    refit_growth: float,
) -> EditionModel:
    """The model to rank with, and the candidates' vectors in its space (row order kept)."""
    if model_dir is None:
        older = session.scalars(
            select(Paper)
            .where(Paper.listed_on < earliest)
            .order_by(Paper.listed_on.desc(), Paper.id.desc())
            .limit(max(corpus_limit - len(candidates), 0))
        ).all()
        model, vectors = fit_transform([_document(p) for p in [*candidates, *older]])
        return EditionModel(model, scipy.sparse.csr_matrix(vectors[: len(candidates)]), None)
    stored = modelstore.load(model_dir)
    total = session.scalar(select(func.count(Paper.id))) or 0
    if stored is None or modelstore.needs_refit(stored, corpus_size=total, growth=refit_growth):
        stored = refit(session, model_dir, corpus_limit=corpus_limit)
    row_of = {int(paper_id): row for row, paper_id in enumerate(stored.paper_ids)}
    known = [row_of.get(p.id) for p in candidates]
    missing = [i for i, row in enumerate(known) if row is None]
    fresh = stored.model.transform_documents([_document(candidates[i]) for i in missing])
    # Assemble the candidates' rows: stored vectors where the fit saw the paper,
    # freshly embedded ones (same vocabulary) where it did not.
    parts = scipy.sparse.vstack(
        [stored.vectors[[row for row in known if row is not None]], fresh], format="csr"
    )
    order = np.empty(len(candidates), dtype=np.int64)
    seen = [i for i, row in enumerate(known) if row is not None]
    order[seen] = np.arange(len(seen))
    order[missing] = len(seen) + np.arange(len(missing))
    return EditionModel(
        stored.model,
        scipy.sparse.csr_matrix(parts[order], dtype=np.float32),
        modelstore.text_cache(model_dir, stored.version),
    )
