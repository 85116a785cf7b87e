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


def test_upgrade_then_roll_back_to_the_previous_revision_and_up_again(fresh_engine, database_url, tmp_path):
    """The release procedure: on revision N, migrate to N+1, roll the schema back to N with
    `telepay db downgrade N` (run by the N+1 code), and N starts again; then N+1 once more."""
    import subprocess
    import sys

    from alembic.script import ScriptDirectory

    from telepay.models.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    newest = script.get_revision(migrate.head())
    previous = newest.down_revision
    migrate.upgrade(fresh_engine, previous)          # running on N
    migrate.upgrade(fresh_engine)                    # the new release migrates to N+1
    url = fresh_engine.url.render_as_string(hide_password=False)
    env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "TELEPAY_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "telepay", "db", "downgrade", previous], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert migrate.current(fresh_engine) == previous  # N again: the old release's schema
    migrate.upgrade(fresh_engine)
    assert migrate.current(fresh_engine) == migrate.head()


def test_a_schema_from_a_newer_release_gets_the_right_advice(fresh_engine):
    migrate.upgrade(fresh_engine)
    with fresh_engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    with pytest.raises(migrate.SchemaBehind, match="newer release") as raised:
        migrate.require_current(fresh_engine)
    assert "telepay db downgrade" in str(raised.value) and "db upgrade" not in str(raised.value)
