"""How the TF-IDF model cuts text into words, for code that must not load the model.

The model (``recommender.model``) tokenises with ``WORD_PATTERN`` and drops
scikit-learn's English stop words. The why lines (``recommender.explanations``)
compare a reader's own words with the model's terms, so they cut text the same way;
they run in every delivery worker, which has no other use for scikit-learn, and
importing it costs about 1.8 s of CPU per process. So the stop words are read here
from scikit-learn's source file (a literal list) without importing the package, and
taken by importing it only if that file is not where it was.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

# Tokens are runs of two or more word characters that contain at least one
# letter: pure numbers ("2024", "100") carry no topic, and single letters are
# mostly maths variables ("$k$-means"). The look-behind drops LaTeX commands
# (\mathbb, \alpha) which say how a formula is typeset, not what it is about.
WORD_PATTERN = r"(?u)(?<!\\)\b(?=\w*[^\W\d_])\w\w+\b"

_STOP_WORDS_FILE = ("feature_extraction", "_stop_words.py")


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's ``ENGLISH_STOP_WORDS``, the list ``stop_words="english"`` drops."""
    found = _read_stop_words()
    if found is not None:
        return found
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def _read_stop_words() -> frozenset[str] | None:
    """The list as scikit-learn's source file spells it, or None if it is not there or
    not the one assignment of a literal list it has been in every release since 0.22."""
    spec = importlib.util.find_spec("sklearn")  # a top-level package: not imported
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*_STOP_WORDS_FILE)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["ENGLISH_STOP_WORDS"]
            and isinstance(node.value, ast.Call)
            and len(node.value.args) == 1
        ):
            try:
                words = ast.literal_eval(node.value.args[0])
            except ValueError:
                return None
            if isinstance(words, list | set | tuple) and all(isinstance(w, str) for w in words):
                return frozenset(words)
    return None
