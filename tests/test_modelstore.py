from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from newsletter.db import SessionFactory
from newsletter.models import Paper
from newsletter.papers.ingest import ingest_file
from newsletter.planning import modelstore
from newsletter.planning.corpus import model_for_edition, refit
from recommender import Document, fit_transform
from tests.conftest import DAILY

DOCS = [
    Document("Robot grasping with tactile sensing", "robots grasp objects using touch"),
    Document("Video diffusion models", "generating video frames with diffusion"),
    Document("Machine translation for low-resource languages", "translation of rare languages"),
    Document("Robot navigation in crowds", "robots move among people"),
]


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    ids = np.array([11, 12, 13, 14])
    saved = modelstore.save(tmp_path, model, paper_ids=ids, vectors=vectors)
    loaded = modelstore.load(tmp_path)
    assert loaded is not None
    assert loaded.version == saved.version
    assert loaded.paper_ids.tolist() == [11, 12, 13, 14]
    assert (loaded.vectors != vectors).nnz == 0
    assert loaded.model.feature_names.tolist() == model.feature_names.tolist()
    again = loaded.model.transform_documents(DOCS)
    assert np.allclose(again.toarray(), vectors.toarray())


def test_nothing_saved_yet(tmp_path: Path) -> None:
    assert modelstore.load(tmp_path / "empty") is None
    assert modelstore.needs_refit(None, corpus_size=10, growth=0.2)


def test_refit_when_the_corpus_grew(tmp_path: Path) -> None:
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    stored = modelstore.save(tmp_path, model, paper_ids=np.arange(4), vectors=vectors)
    assert not modelstore.needs_refit(stored, corpus_size=4, growth=0.2)
    assert not modelstore.needs_refit(stored, corpus_size=4, growth=0.25)
    assert modelstore.needs_refit(stored, corpus_size=5, growth=0.2)


def test_a_new_save_replaces_the_pointer_and_prunes_old_versions(tmp_path: Path) -> None:
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    versions = [
        modelstore.save(
            tmp_path,
            model,
            paper_ids=np.arange(4),
            vectors=vectors,
            now=datetime(2026, 5, day, tzinfo=UTC),
        ).version
        for day in (1, 2, 3, 4)
    ]
    loaded = modelstore.load(tmp_path)
    assert loaded is not None
    assert loaded.version == versions[-1]
    kept = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert kept == versions[-2:]


def test_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    saved = modelstore.save(tmp_path, model, paper_ids=np.arange(4), vectors=vectors)
    (tmp_path / saved.version / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(modelstore.ModelStoreError, match="cannot read the stored model"):
        modelstore.load(tmp_path)


def test_model_from_another_library_version_is_refitted_not_trusted(tmp_path: Path) -> None:
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    saved = modelstore.save(tmp_path, model, paper_ids=np.arange(4), vectors=vectors)
    manifest_path = tmp_path / saved.version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sklearn"] = "0.0.1"
    manifest_path.write_text(json.dumps(manifest))
    assert modelstore.load(tmp_path) is None


def test_edition_model_reuses_the_stored_fit_until_the_corpus_grows(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    with sessions.begin() as session:
        ingest_file(session, DAILY / "2026-05-26.jsonl", today=date(2026, 5, 26))
    store = tmp_path / "models"

    def edition_model(growth: float) -> tuple[modelstore.StoredModel, list[Paper], object]:
        with sessions() as session:
            candidates = session.scalars(
                select(Paper).order_by(Paper.listed_on.desc(), Paper.id).limit(40)
            ).all()
            fitted = model_for_edition(
                session,
                candidates,
                earliest=date(2026, 5, 20),
                corpus_limit=10_000,
                model_dir=store,
                refit_growth=growth,
            )
        model, vectors = fitted.model, fitted.vectors
        assert fitted.texts is not None
        stored = modelstore.load(store)
        assert stored is not None
        assert stored.model.feature_names.tolist() == model.feature_names.tolist()
        expected = model.transform_documents([Document(p.title, p.abstract) for p in candidates])
        assert np.allclose(vectors.toarray(), expected.toarray(), atol=1e-6)
        return stored, list(candidates), vectors

    first, _, _ = edition_model(0.2)
    with sessions() as session:
        assert first.n_papers == session.scalar(select(func.count(Paper.id)))
    with sessions.begin() as session:
        ingest_file(session, DAILY / "2026-05-27.jsonl", today=date(2026, 5, 27))
    # 617 -> 936 papers: within a 100% growth allowance the stored fit is reused and
    # the new papers (the candidates now) are embedded with its vocabulary ...
    reused, candidates, _ = edition_model(1.0)
    assert reused.version == first.version
    assert all(p.listed_on == date(2026, 5, 27) for p in candidates)
    # ... beyond 20% growth it is refitted on everything.
    refitted, _, _ = edition_model(0.2)
    assert refitted.version != first.version
    assert refitted.n_papers > first.n_papers


def test_refit_on_demand(sessions: SessionFactory, tmp_path: Path) -> None:
    with sessions.begin() as session:
        ingest_file(session, DAILY / "2026-05-27.jsonl", today=date(2026, 5, 27))
    with sessions() as session:
        stored = refit(session, tmp_path, corpus_limit=100)
    assert stored.n_papers == 100
    loaded = modelstore.load(tmp_path)
    assert loaded is not None
    assert loaded.version == stored.version


def test_text_cache_tokenises_each_text_once(tmp_path: Path) -> None:
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    saved = modelstore.save(tmp_path, model, paper_ids=np.arange(4), vectors=vectors)
    cache = modelstore.text_cache(tmp_path, saved.version)
    texts = ["robot grasping", "video diffusion", "robot grasping"]
    first = cache.embed(model, texts)
    assert len(cache) == 2
    assert np.allclose(first.toarray(), model.transform_texts(texts).toarray())
    # A new process (a new cache object) finds them on disk and adds only the new one.
    reopened = modelstore.text_cache(tmp_path, saved.version)
    assert len(reopened) == 2
    second = reopened.embed(model, ["translation", "video diffusion"])
    assert len(reopened) == 3
    assert np.allclose(
        second.toarray(), model.transform_texts(["translation", "video diffusion"]).toarray()
    )


def test_torn_text_cache_is_rebuilt(tmp_path: Path) -> None:
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    saved = modelstore.save(tmp_path, model, paper_ids=np.arange(4), vectors=vectors)
    cache = modelstore.text_cache(tmp_path, saved.version)
    cache.embed(model, ["robot grasping", "video diffusion"])
    stored = tmp_path / saved.version / "texts.npz"
    stored.write_bytes(stored.read_bytes()[:40])  # a torn zip: BadZipFile
    rebuilt = modelstore.text_cache(tmp_path, saved.version)
    assert len(rebuilt) == 0
    out = rebuilt.embed(model, ["video diffusion"])
    assert np.allclose(out.toarray(), model.transform_texts(["video diffusion"]).toarray())
    assert len(modelstore.text_cache(tmp_path, saved.version)) == 1


def test_planners_writing_one_text_cache_at_once_never_tear_it(tmp_path: Path) -> None:
    """Planner processes share a model's text cache: concurrent writers and readers
    (threads here) neither fail nor ever see one writer's texts with another's vectors."""
    model, vectors = fit_transform(DOCS, min_df=1, max_df=1.0)
    saved = modelstore.save(tmp_path, model, paper_ids=np.arange(4), vectors=vectors)
    words = ["robot", "video", "translation", "navigation", "diffusion", "grasping"]
    errors: list[BaseException] = []
    writing = threading.Event()

    def write(offset: int) -> None:
        cache = modelstore.text_cache(tmp_path, saved.version)
        try:
            for i in range(60):
                cache.embed(model, [f"{words[(i + offset) % 6]} {words[(i * 7 + offset) % 6]} {i}"])
                cache.flush()
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while writing.is_set():
                cache = modelstore.text_cache(tmp_path, saved.version)
                texts = list(cache._texts)
                if texts:
                    got = cache.embed(model, texts).toarray()
                    assert np.allclose(got, model.transform_texts(texts).toarray()), texts
        except BaseException as exc:
            errors.append(exc)

    writing.set()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writing.clear()
    reader.join()
    assert errors == []
    assert len(modelstore.text_cache(tmp_path, saved.version)) >= 60  # the last writer's
    assert [p.name for p in (tmp_path / saved.version).iterdir() if p.name.startswith(".")] == []
