"""Shared fixtures: a real PostgreSQL for every test that needs one.

`TELEPAY_TEST_DATABASE_URL` names a server to use; without it (a fresh clone, `make test`) an
embedded server from pgserver is started for the run and stopped after it. Either way the run
gets its own fresh database, migrated to head, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine

from telepay.models.engine import make_session_factory
from telepay_sandbox.database import empty_tables, scratch_database


# Two shared cores: a property test's example can be slow for reasons that are not its own.
# Deadlines would make that a failure; the examples' count and content are what we test.
# In CI the examples are derandomized, so a landing never hinges on a lucky draw; locally they
# stay random and keep exploring.
hypothesis_settings.register_profile("telepay", deadline=None, derandomize=bool(os.environ.get("CI")))
hypothesis_settings.load_profile("telepay")


@pytest.fixture(scope="session")
def database_url() -> str:
    with scratch_database("telepay_test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url):
    engine = create_engine(database_url, pool_size=10, max_overflow=20)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine):
    yield make_session_factory(engine)
    empty_tables(engine)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
