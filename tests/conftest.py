"""Shared fixtures: real databases (SQLite file and PostgreSQL), settings, data paths.

Every database test runs on both backends, but for a test marked ``sqlite_only`` (a web
test of HTTP behaviour, with no storage difference to find) unless it is also marked
``both_databases`` (it does exercise one: characters, ids, integers). Each backend is
migrated once per test session (through Alembic, as in production); PostgreSQL gets a schema of its
own per run so parallel runs and leftovers never collide; every test starts from
empty tables.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from newsletter.db import SessionFactory, make_engine, make_session_factory
from newsletter.migrations import upgrade
from newsletter.models import Base
from newsletter.papers.catalogue import CatalogueTopic, load_catalogue, sync_topics
from newsletter.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DAILY = SHARED_DATA / "arxiv-daily"
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
POSTGRES_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_") and key != "NEWSLETTER_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    # Semantic ranking (issue 8) would embed every paper the service ingests, which
    # costs minutes over the suite; tests/test_semantic*.py test that path for real.
    monkeypatch.setenv("NEWSLETTER_SEMANTIC", "false")


def child_environment(**settings: str) -> dict[str, str]:
    """The environment of a ``newsletter`` subprocess: this process's without any
    NEWSLETTER_* variable, semantic ranking off as in every other test (``_clean``: with
    it on, each ``ingest`` embeds its papers and each ``plan`` loads the model, ~10-25 s a
    command), then ``settings`` (``NEWSLETTER_SEMANTIC="true"`` turns it back on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SEMANTIC"] = "false"
    env.update(settings)
    return env


@pytest.fixture(scope="session", autouse=True)
def _clean_session_environment() -> Iterator[None]:
    """The same for module- and session-scoped fixtures, which run before a test's own."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _clean(monkeypatch)
        yield


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ambient NEWSLETTER_* variables must not change what a test sees."""
    _clean(monkeypatch)


def make_settings(database_url: str = "sqlite://", **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "secret_key": TEST_SECRET}
    values.update(overrides)
    return load_settings(overrides=values)


def _postgres_schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test run, dropped at the end."""
    schema = f"nl_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``sqlite_only``: run on SQLite only (``both_databases`` on the test overrides it).

    Done by parametrising ``database_url`` indirectly, which takes precedence over the
    fixture's own two params, so the SQLite database stays the session's shared one.
    """
    definition = metafunc.definition
    if (
        "database_url" in metafunc.fixturenames
        and definition.get_closest_marker("sqlite_only") is not None
        and definition.get_closest_marker("both_databases") is None
    ):
        definition.add_marker(pytest.mark.parametrize("database_url", ["sqlite"], indirect=True))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of each kind, shared by the session's tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    else:
        url = request.getfixturevalue("postgres_schema")
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


@functools.cache
def _catalogue() -> dict[str, CatalogueTopic]:
    """The shipped topic catalogue, parsed once per process (sync_topics only reads it)."""
    return load_catalogue()


def reset_database(engine: Engine) -> None:
    """Empty every table and load the topic catalogue: the state a test starts from.

    Runs before every database test. On PostgreSQL the DELETEs go in one round trip (one
    ';'-joined string; psycopg sends it as a simple query) instead of one per table.
    """
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            deletes = (str(t.delete().compile(dialect=engine.dialect)) for t in tables)
            connection.exec_driver_sql("; ".join(deletes))
        else:
            for table in tables:
                connection.execute(table.delete())
    with make_session_factory(engine).begin() as session:
        sync_topics(session, _catalogue())


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    reset_database(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def daily_file() -> Path:
    """One real arXiv listing day (a Wednesday, 411 records)."""
    return DAILY / "2026-05-27.jsonl"
