"""Migrations and models agree, and the chain runs down and up again on a fresh database."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from telepay.models import migrate


@pytest.fixture
def fresh_engine(database_url):
    url = make_url(database_url)
    name = f"{url.database}_mig_{uuid.uuid4().hex[:6]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(url.set(database=name))
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_models_match_the_migrations(fresh_engine):
    migrate.upgrade(fresh_engine)
    config = migrate.alembic_config()
    with fresh_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises if autogenerate would find any difference


def test_downgrade_to_nothing_and_back(fresh_engine):
    migrate.upgrade(fresh_engine)
    config = migrate.alembic_config()
    with fresh_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert migrate.current(fresh_engine) is None
    migrate.upgrade(fresh_engine)
    assert migrate.current(fresh_engine) == migrate.head()
    with fresh_engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM payout_currencies")).scalar() >= 8


def test_require_current_names_the_command(fresh_engine):
    with pytest.raises(migrate.SchemaBehind, match="telepay db upgrade"):
        migrate.require_current(fresh_engine)
