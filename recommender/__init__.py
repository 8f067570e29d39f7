"""Pure ranking library: TF-IDF embeddings, subscriber profiles, top-k picks, explanations.

No I/O and no dependency on the ``newsletter`` package: callers pass texts and
index arrays in and get sparse matrices and arrays back.
"""

from __future__ import annotations

from recommender.diversity import diversify
from recommender.explanations import explain
from recommender.feedback import FeedbackWeights, apply_feedback, decay
from recommender.model import Document, TfidfModel, fit_model, fit_transform
from recommender.profiles import build_profiles
from recommender.ranking import RankResult, rank

__all__ = [
    "Document",
    "FeedbackWeights",
    "RankResult",
    "TfidfModel",
    "apply_feedback",
    "build_profiles",
    "decay",
    "diversify",
    "explain",
    "fit_model",
    "fit_transform",
    "rank",
]
