"""The dense half of ``newsletter recommend`` (the semantic extra): embeddings of the JSONL inputs.

Without a database nothing is stored: the papers to rank and the rated corpus papers
are embedded for the run (the rest of the corpus only fits TF-IDF), interest texts
once each.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from newsletter.planning.batch import RecommendInputs, interest_index
from recommender import Document, semantic
from recommender.linear import LinearOptions, personalise
from recommender.whitening import fit_whitening, whiten


def dense_inputs(
    inputs: RecommendInputs, *, row_of: dict[str, int]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(profiles, papers to rank) in embedding space, rows in input order."""
    encoder = semantic.load_encoder()
    records = (*inputs.papers, *inputs.corpus)
    n_papers = len(inputs.papers)
    rated = sorted(
        {row_of[i] for p in inputs.profiles for i in (*p.liked, *p.disliked)} - set(range(n_papers))
    )
    wanted = list(range(n_papers)) + rated
    vectors = encoder.encode_documents(
        [Document(records[i].title, records[i].abstract) for i in wanted]
    )
    # Whitened on the papers to rank, as planning does (recommender.whitening).
    whitening = fit_whitening(vectors[:n_papers])
    vectors = whiten(whitening, vectors)
    column = {row: i for i, row in enumerate(wanted)}
    texts, rows, cols = interest_index(inputs.profiles)
    ev_rows: list[int] = []
    ev_cols: list[int] = []
    ev_values: list[float] = []
    for row, profile in enumerate(inputs.profiles):
        for ids, value in ((profile.liked, 1.0), (profile.disliked, -1.0)):
            for paper_id in ids:
                ev_rows.append(row)
                ev_cols.append(column[row_of[paper_id]])
                ev_values.append(value)
    events = semantic.FeedbackEvents(
        rows=np.array(ev_rows, dtype=np.int64),
        cols=np.array(ev_cols, dtype=np.int64),
        values=np.array(ev_values, dtype=np.float64),
        ages_days=np.zeros(len(ev_rows)),
    )
    profiles = semantic.dense_profiles(
        whiten(whitening, encoder.encode_interests(texts)),
        rows=np.array(rows, dtype=np.int64),
        cols=np.array(cols, dtype=np.int64),
        weights=np.ones(len(rows), dtype=np.float32),
        n_profiles=len(inputs.profiles),
        paper_vectors=vectors,
        feedback=events,
    )
    if events.rows.size:
        # Readers with enough "more like this": a logistic regression against the papers
        # to rank (as background negatives), blended into the profile.
        profiles = personalise(
            profiles,
            events,
            event_weights=np.ones(len(events.rows)),
            rated_vectors=vectors,
            candidates=vectors[:n_papers],
            options=LinearOptions(),
        )
    return profiles, vectors[:n_papers]
