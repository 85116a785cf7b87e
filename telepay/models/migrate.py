"""Schema migrations: Alembic driven from code, so no alembic.ini has to sit beside the process."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaBehind(Exception):
    """The database is not at the code's migration head (behind it, or migrated by newer code)."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to `revision`. Run with the code that made them: only it knows how."""
    known(revision)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def known(revision: str) -> bool:
    """Whether this code's migrations include `revision` (raises ValueError if they do not)."""
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except Exception as error:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        raise ValueError(f"{revision!r} is not one of this code's migrations ({error})") from error
    return True


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (a developer's tool: `telepay db revision`)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


def require_current(engine: Engine) -> None:
    at, want = current(engine), head()
    if at == want:
        return
    if at is not None:
        try:
            known(at)
        except ValueError:
            # Newer code migrated it (a release rolled back without its schema): upgrading
            # cannot help, and only the newer code knows how to go down.
            raise SchemaBehind(
                f"The database schema is at {at}, which this code does not know: a newer release "
                f"migrated it. Run that release again, or roll the schema back with it first: "
                f"`telepay db downgrade {want}` (run by the newer release), then start this one."
            ) from None
    raise SchemaBehind(
        f"The database schema is at {at or 'nothing'} but this code needs {want}. "
        "Run `telepay db upgrade` first."
    )
