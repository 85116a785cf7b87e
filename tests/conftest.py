"""Shared fixtures: a real PostgreSQL for every test that needs one.

`TELEPAY_TEST_DATABASE_URL` names a server to use (CI points it at the local one); without it
the embedded server from pgserver is started in a temporary directory. Either way the run gets
its own fresh database, migrated to head, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from telepay.models import Base
from telepay.models import migrate
from telepay.models.engine import embedded_url, make_session_factory, normalise_url

KEEP_TABLES = {"payout_currencies", "alembic_version"}


def _server_url(tmp_path_factory) -> str:
    url = os.environ.get("TELEPAY_TEST_DATABASE_URL")
    if url:
        return normalise_url(url)
    return embedded_url(tmp_path_factory.mktemp("embedded-pg"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    server = make_url(_server_url(tmp_path_factory))
    name = f"telepay_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url):
    engine = create_engine(database_url, pool_size=10, max_overflow=20)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine):
    yield make_session_factory(engine)
    tables = [t.name for t in Base.metadata.sorted_tables if t.name not in KEEP_TABLES]
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
