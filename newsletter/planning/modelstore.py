"""The fitted recommender on disk: model, vocabulary and paper vectors, versioned.

Each fit is written to its own directory ``MODEL_DIR/<version>/`` (the model
pickled, the paper vectors as a sparse .npz, the paper ids and a manifest), then
``MODEL_DIR/current.json`` is replaced atomically to point at it. A reader sees
the old model or the new one, never half of either; a crash mid-write leaves
only an unreferenced directory behind. Older versions are pruned.

Pickle is used because the files are the service's own (written and read by the
same code, in a directory only it writes); never load a model from elsewhere.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse
import sklearn

from newsletter.errors import NewsletterError
from recommender import TfidfModel

FORMAT = 1
_POINTER = "current.json"
_KEEP = 2


class ModelStoreError(NewsletterError):
    """The stored model cannot be read (corrupt, or written by an incompatible version)."""


@dataclass(frozen=True)
class StoredModel:
    version: str
    created_at: datetime
    model: TfidfModel
    paper_ids: np.ndarray  # int64 database ids, row order of ``vectors``
    vectors: scipy.sparse.csr_matrix

    @property
    def n_papers(self) -> int:
        return int(self.paper_ids.shape[0])


def _version(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def save(
    directory: Path,
    model: TfidfModel,
    *,
    paper_ids: np.ndarray,
    vectors: scipy.sparse.csr_matrix,
    now: datetime | None = None,
) -> StoredModel:
    """Write a fitted model and make it the current one, atomically."""
    now = now or datetime.now(UTC)
    if vectors.shape[0] != len(paper_ids):
        raise ValueError("one paper id per vector row is required")
    directory.mkdir(parents=True, exist_ok=True)
    version = _version(now)
    staging = Path(tempfile.mkdtemp(prefix=".fit-", dir=directory))
    try:
        with (staging / "model.pkl").open("wb") as handle:
            pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
        scipy.sparse.save_npz(staging / "vectors.npz", scipy.sparse.csr_matrix(vectors))
        np.save(staging / "paper_ids.npy", np.asarray(paper_ids, dtype=np.int64))
        manifest = {
            "format": FORMAT,
            "version": version,
            "created_at": now.isoformat(),
            "n_papers": len(paper_ids),
            "n_features": model.n_features,
            "sklearn": sklearn.__version__,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _fsync_dir(staging)
        staging.rename(directory / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer = directory / f".{_POINTER}.tmp"
    pointer.write_text(json.dumps({"version": version}))
    os.replace(pointer, directory / _POINTER)
    _fsync_dir(directory)
    _prune(directory, keep=version)
    return StoredModel(version, now, model, np.asarray(paper_ids, dtype=np.int64), vectors)


def load(directory: Path) -> StoredModel | None:
    """The current model, or None if none was saved yet."""
    pointer = directory / _POINTER
    if not pointer.exists():
        return None
    try:
        version = json.loads(pointer.read_text())["version"]
        folder = directory / version
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or manifest.get("sklearn") != sklearn.__version__:
            return None  # written by another version: refit rather than trust it
        with (folder / "model.pkl").open("rb") as handle:
            model = pickle.load(handle)  # noqa: S301 - our own file, see module docstring
        vectors = scipy.sparse.load_npz(folder / "vectors.npz").tocsr()
        paper_ids = np.load(folder / "paper_ids.npy")
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise ModelStoreError(f"cannot read the stored model in {directory}: {exc}") from None
    if not isinstance(model, TfidfModel) or vectors.shape[0] != paper_ids.shape[0]:
        raise ModelStoreError(f"the stored model in {directory} is inconsistent")
    created = datetime.fromisoformat(manifest["created_at"])
    return StoredModel(version, created, model, paper_ids, vectors)


def needs_refit(stored: StoredModel | None, *, corpus_size: int, growth: float) -> bool:
    """Refit when there is no model or the corpus grew by ``growth`` (a fraction) since."""
    if stored is None or stored.n_papers == 0:
        return True
    return corpus_size >= stored.n_papers * (1.0 + growth)


def _prune(directory: Path, *, keep: str) -> None:
    versions = sorted(
        p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    for name in versions[: max(len(versions) - _KEEP, 0)]:
        if name != keep:
            shutil.rmtree(directory / name, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class TextCache:
    """Interest texts embedded with one stored model, kept beside it on disk.

    A topic description is shared by many subscribers and a keyword phrase rarely
    changes, so each distinct text is tokenised once per model version, not once
    per subscriber per edition.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._texts: list[str] = []
        self._vectors: scipy.sparse.csr_matrix | None = None
        index = folder / "texts.json"
        if index.exists():
            try:
                self._texts = json.loads(index.read_text(encoding="utf-8"))
                self._vectors = scipy.sparse.load_npz(folder / "texts.npz").tocsr()
            except (OSError, ValueError) as exc:
                raise ModelStoreError(f"cannot read the text cache in {folder}: {exc}") from None
            if self._vectors.shape[0] != len(self._texts):
                self._texts, self._vectors = [], None  # torn cache: rebuild it

    def __len__(self) -> int:
        return len(self._texts)

    def embed(self, model: TfidfModel, texts: list[str]) -> scipy.sparse.csr_matrix:
        """Vectors of ``texts`` (row order kept); only unseen texts are tokenised."""
        row_of = {text: row for row, text in enumerate(self._texts)}
        missing = list(dict.fromkeys(t for t in texts if t not in row_of))
        if missing:
            fresh = model.transform_texts(missing)
            known = self._vectors if self._vectors is not None else fresh[:0]
            self._vectors = scipy.sparse.vstack([known, fresh], format="csr")
            for text in missing:
                row_of[text] = len(self._texts)
                self._texts.append(text)
            self._write()
        if self._vectors is None:
            return scipy.sparse.csr_matrix((0, model.n_features), dtype=np.float32)
        return scipy.sparse.csr_matrix(self._vectors[[row_of[t] for t in texts]])

    def _write(self) -> None:
        # Vectors first, index last, each replaced atomically: a crash in between
        # leaves an index that disagrees with the vectors, which reads as empty.
        vectors = self._folder / ".texts.npz.tmp.npz"
        scipy.sparse.save_npz(vectors, self._vectors)
        os.replace(vectors, self._folder / "texts.npz")
        index = self._folder / ".texts.json.tmp"
        index.write_text(json.dumps(self._texts, ensure_ascii=False), encoding="utf-8")
        os.replace(index, self._folder / "texts.json")


def text_cache(directory: Path, version: str) -> TextCache:
    """The text cache of one stored model version."""
    return TextCache(directory / version)
