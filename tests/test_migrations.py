"""The schema is made only by migrations, and they agree with the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from newsletter.db import make_engine
from newsletter.migrations import current_revision, downgrade, head_revision, upgrade
from newsletter.models import Base
from tests.conftest import POSTGRES_URL

TABLES = {
    "subscribers",
    "topics",
    "interests",
    "papers",
    "feedback",
    "editions",
    "deliveries",
    "delivery_items",
    "operators",
    "suppressions",
    "bounces",
    "send_rate",
    "paper_embeddings",
    "source_state",
    "account_mail_failures",
    "relay_errors",
    "admin_actions",
    "library_imports",
    "library_seeds",
    "followed_authors",
    "plan_batches",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An empty database of each kind, for migrating up and down."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('mig') / 'm.db'}")
        yield engine
        engine.dispose()
        return
    schema = f"nl_mig_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(blank_engine: Engine) -> None:
    assert current_revision(blank_engine) is None
    upgrade(blank_engine)
    assert current_revision(blank_engine) == head_revision()
    assert _tables(blank_engine) == TABLES
    downgrade(blank_engine, "base")
    assert current_revision(blank_engine) is None
    assert _tables(blank_engine) == set()
    upgrade(blank_engine)
    assert _tables(blank_engine) == TABLES


def test_models_and_migrations_agree(blank_engine: Engine) -> None:
    upgrade(blank_engine)
    with blank_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_upgrade_is_idempotent(blank_engine: Engine) -> None:
    upgrade(blank_engine)
    upgrade(blank_engine)
    assert current_revision(blank_engine) == head_revision()


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
