"""Pure ranking library: TF-IDF embeddings, subscriber profiles, top-k picks, explanations.

No I/O (beyond reading scikit-learn's stop word list from its source, as importing it
would: ``recommender.words``) and no dependency on the ``newsletter`` package: callers
pass texts and index arrays in and get sparse matrices and arrays back.

The names below are loaded when first used (PEP 562), so a process that needs only a
light module (a delivery worker wording the why lines with ``recommender.explanations``)
does not import scikit-learn with the model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recommender.diversity import diversify
    from recommender.explanations import explain
    from recommender.feedback import FeedbackWeights, apply_feedback, decay
    from recommender.model import Document, TfidfModel, fit_model, fit_transform
    from recommender.profiles import build_profiles
    from recommender.ranking import RankResult, rank

_HOMES = {
    "diversify": "recommender.diversity",
    "explain": "recommender.explanations",
    "FeedbackWeights": "recommender.feedback",
    "apply_feedback": "recommender.feedback",
    "decay": "recommender.feedback",
    "Document": "recommender.model",
    "TfidfModel": "recommender.model",
    "fit_model": "recommender.model",
    "fit_transform": "recommender.model",
    "build_profiles": "recommender.profiles",
    "RankResult": "recommender.ranking",
    "rank": "recommender.ranking",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'recommender' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
