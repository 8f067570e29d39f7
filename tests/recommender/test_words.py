"""The light word rules: the same stop words as the model's, without importing it."""

from __future__ import annotations

import subprocess
import sys

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from recommender import words
from recommender.model import fit_model


def test_the_stop_words_are_scikit_learns_read_from_its_source() -> None:
    read = words._read_stop_words()
    assert read is not None, "scikit-learn's stop word file was not found or not parsed"
    assert read == ENGLISH_STOP_WORDS
    assert words.stop_words() == ENGLISH_STOP_WORDS


def test_the_model_drops_exactly_these_stop_words() -> None:
    from recommender import Document

    docs = [
        Document("the models of learning", "about diffusion"),
        Document("graphs", "and their colourings"),
        Document("quantum codes", "for the surface"),
    ]
    model = fit_model(docs)
    assert model._vectorizer.get_stop_words() == words.stop_words()


def test_a_delivery_worker_does_not_import_scikit_learn() -> None:
    # Importing scikit-learn costs about 1.8 s of CPU in every worker process.
    code = (
        "import sys, newsletter.delivery.worker, newsletter.delivery.run\n"
        "from recommender.explanations import words_of\n"
        "assert words_of('The diffusion models') == {'diffusion', 'models'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


def test_the_package_names_its_homes_and_loads_them_when_asked() -> None:
    import recommender

    assert sorted(recommender.__all__) == sorted(recommender._HOMES)
    for name in recommender.__all__:
        assert getattr(recommender, name).__name__ == name
