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
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import scipy.sparse
import sklearn

from newsletter.errors import NewsletterError
from recommender import TfidfModel

FORMAT = 1
_POINTER = "current.json"
_TEXTS = "texts.npz"
_KEEP = 2
# Versions younger than this are never pruned (planners may be using them).
_GRACE = timedelta(hours=1)


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
    # A temporary name of its own: planners fitting at once must not share one.
    descriptor, pointer = tempfile.mkstemp(prefix=f".{_POINTER}-", dir=directory)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps({"version": version}))
    os.replace(pointer, directory / _POINTER)
    _fsync_dir(directory)
    _prune(directory, keep=version, now=now)
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


def _prune(directory: Path, *, keep: str, now: datetime) -> None:
    """Remove versions older than the newest ``_KEEP``, but none written in the last
    ``_GRACE``: a planner that loaded one moments ago (a peer's fit) still uses it."""
    versions = sorted(
        p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    recent = _version(now - _GRACE)
    for name in versions[: max(len(versions) - _KEEP, 0)]:
        if name != keep and name < recent:
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
    per subscriber per edition. Texts and vectors are one file, replaced atomically
    from a temporary file of its own: planner processes sharing a model may write it
    at once (the last one wins; the other's new texts are tokenised again next time),
    and a reader never pairs one writer's texts with another's vectors. It is a
    cache: a file that cannot be read is rebuilt, never an error.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._texts: list[str] = []
        self._vectors: scipy.sparse.csr_matrix | None = None
        self._unsaved = 0
        try:
            # Our own handle: np.load leaves its file open when the zip is torn.
            with (folder / _TEXTS).open("rb") as handle, np.load(handle) as stored:
                texts = json.loads(stored["texts"].tobytes().decode("utf-8"))
                vectors = scipy.sparse.csr_matrix(
                    (stored["data"], stored["indices"], stored["indptr"]),
                    shape=tuple(stored["shape"]),
                )
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return  # torn or foreign: rebuilt as texts are embedded
        if isinstance(texts, list) and vectors.shape[0] == len(texts):
            self._texts, self._vectors = texts, vectors

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
            self._unsaved += len(missing)
            # Written when it grew by a quarter (and by ``flush``): each batch's few
            # new keywords no longer rewrite the whole cache, and the writes add up
            # to a few times its size.
            if self._unsaved * 4 >= len(self._texts):
                self.flush()
        if self._vectors is None:
            return scipy.sparse.csr_matrix((0, model.n_features), dtype=np.float32)
        return scipy.sparse.csr_matrix(self._vectors[[row_of[t] for t in texts]])

    def flush(self) -> None:
        """Write the texts embedded since the last write (a no-op when none were)."""
        if not self._unsaved or self._vectors is None:
            return
        vectors = scipy.sparse.csr_matrix(self._vectors)
        try:
            descriptor, name = tempfile.mkstemp(prefix=".texts-", suffix=".tmp", dir=self._folder)
        except FileNotFoundError:
            return  # the version was pruned meanwhile (a newer fit): nothing to keep
        try:
            with os.fdopen(descriptor, "wb") as handle:
                np.savez(
                    handle,
                    texts=np.frombuffer(
                        json.dumps(self._texts, ensure_ascii=False).encode("utf-8"), np.uint8
                    ),
                    data=vectors.data,
                    indices=vectors.indices,
                    indptr=vectors.indptr,
                    shape=np.asarray(vectors.shape, dtype=np.int64),
                )
            os.replace(name, self._folder / _TEXTS)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        self._unsaved = 0


def text_cache(directory: Path, version: str) -> TextCache:
    """The text cache of one stored model version."""
    return TextCache(directory / version)
