"""Schema migrations through Alembic: the only way the schema is made or changed."""

from __future__ import annotations

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from alembic import command
from newsletter.errors import DatabaseUnavailable
from newsletter.resources import resource_path


def alembic_config() -> Config:
    """An Alembic configuration that points at the shipped migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(resource_path("alembic")))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops everything)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def require_current(engine: Engine) -> None:
    """Refuse to work on a database that is not migrated to the newest schema."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "has no schema yet" if current is None else f"is at revision {current}"
        raise DatabaseUnavailable(
            f"the database {state}, the code needs {head}; run: newsletter db upgrade"
        )
