"""Alembic environment: the same settings and metadata as the service.

``newsletter db upgrade`` hands over an open connection in
``config.attributes["connection"]``; the plain ``alembic`` command builds one from
the newsletter settings.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from alembic import context
from newsletter.db import make_engine
from newsletter.models import Base, UTCDateTime
from newsletter.settings import load_settings

config = context.config
target_metadata = Base.metadata

# Tables owned by other components (APScheduler's job store) are left alone.
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return not (type_ == "table" and name in FOREIGN_TABLES)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations stay plain SQLAlchemy: they must not change when the models
    # (newsletter/models/) do.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    settings = load_settings(allow_placeholder_secret=True)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            run_with(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_online()
