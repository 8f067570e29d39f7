"""Planning holds the hybrid's minimum against each pick's evidence (recommender.evidence)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import scipy.sparse

from newsletter.planning.issues import pick
from newsletter.planning.options import PlanOptions


def test_planning_drops_picks_without_evidence_and_keeps_rows_packed() -> None:
    """The hybrid's order is kept; a pick in the middle of a row that has too little
    evidence is dropped and the picks after it move up (newsletter.planning.issues)."""
    # One reader, four papers. TF-IDF: papers 0, 1 and 3 share the reader's term;
    # paper 2 shares nothing. Ranked by whitened vectors (dense), paper 2 comes second;
    # its raw cosine is 0, so its evidence is 0.
    profiles = scipy.sparse.csr_matrix(np.array([[1.0, 0.0]], dtype=np.float32))
    papers = scipy.sparse.csr_matrix(
        np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.5, 0.866]], dtype=np.float32)
    )
    dense_profiles = np.array([[1.0, 0.0]], dtype=np.float32)
    dense_papers = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.436], [0.0, 1.0]], dtype=np.float32)
    raw_papers = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    reader = SimpleNamespace(max_papers=None, always_send=False)
    options = PlanOptions(max_papers=4, diversity=1.0, semantic=True)

    def picks(raw: tuple[np.ndarray, np.ndarray] | None) -> list[int]:
        result = pick(
            profiles,
            papers,
            subscribers=[reader],  # type: ignore[list-item]
            exclude=scipy.sparse.csr_matrix((1, 4), dtype=np.float32),
            options=options,
            dense=(dense_profiles, dense_papers),
            raw=raw,
        )
        return [int(i) for i in result.indices[0] if i >= 0]

    ranked = picks(None)
    assert ranked[:2] == [0, 2]  # paper 2 second by the hybrid's own score
    kept = picks((dense_profiles, raw_papers))
    assert kept == [i for i in ranked if i != 2]  # dropped, the rest in order, packed
