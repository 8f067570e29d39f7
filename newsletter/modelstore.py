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
